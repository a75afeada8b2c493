"""Resumable PPO (ppo.train_seeds with a checkpoint_dir): chunked = uninterrupted; killed midway and re-run = same."""

import numpy as np
import pytest

from replicate import rng
from replicate.params import ParameterError
from replicate.rl import envs, ppo

CFG = ppo.PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 6, hidden=(16,), update_epochs=1,
                    num_minibatches=2)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def reference():
    env = envs.deep_sea(5)
    _, m = ppo.train_seeds(CFG, env, None, rng.seed_keys([0, 1]))
    return env, m


def test_chunk_lengths_cover_the_run_with_at_most_two_lengths():
    for total, chunk in [(6, 0), (6, 4), (100, 7), (1, 5), (10, 10)]:
        lengths = ppo.chunk_lengths(total, chunk)
        assert sum(lengths) == total and len(set(lengths)) <= 2 and min(lengths) >= 1
    assert ppo.chunk_lengths(100) == [10] * 10
    with pytest.raises(ParameterError, match="chunk_updates"):
        ppo.train_seeds(CFG, envs.deep_sea(5), None, rng.seed_keys([0]), checkpoint_dir="x", chunk_updates=-1)


def test_chunked_run_with_checkpoints_equals_the_uninterrupted_run(reference, tmp_path):
    env, want = reference
    seen = []
    _, got = ppo.train_seeds(CFG, env, None, rng.seed_keys([0, 1]), checkpoint_dir=tmp_path / "ckpt",
                             chunk_updates=4, every_s=0.0, on_chunk=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 6), (6, 6)]
    _same(got, want)


def test_a_run_killed_midway_resumes_from_its_checkpoint_and_ends_the_same(reference, tmp_path):
    env, want = reference
    ckpt = tmp_path / "ckpt"

    def kill_during_second_chunk(done, total):  # the first chunk (2 updates) is checkpointed, the second is lost
        if done == 4:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        ppo.train_seeds(CFG, env, None, rng.seed_keys([0, 1]), checkpoint_dir=ckpt, chunk_updates=2, every_s=0.0,
                        on_chunk=kill_during_second_chunk)
    resumed = []
    _, got = ppo.train_seeds(CFG, env, None, rng.seed_keys([0, 1]), checkpoint_dir=ckpt, chunk_updates=2,
                             every_s=0.0, on_chunk=lambda done, total: resumed.append(done))
    assert resumed == [4, 6]  # the first chunk came from the checkpoint; the lost one ran again
    _same(got, want)
