"""Resumable Atari runs (atari_agent.train with a checkpoint_dir): killed midway and re-run = the uninterrupted run.

EnvPool's state cannot be saved: the resumed run rebuilds its environments by replaying the logged actions."""

import numpy as np
import pytest

from replicate.recode import atari_agent
from replicate.rl import atari

RUN = atari_agent.RunConfig(total_frames=4 * 2 * 8 * 3, num_envs=2, num_steps=8,
                            ppo=(("update_epochs", 1), ("num_minibatches", 2)), embed_dim=8, memory_size=50,
                            atari=atari.AtariConfig(game="pitfall"))
TIMINGS = {"wall_s", "compile_s", "collect_s", "update_s"}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a.keys() - TIMINGS:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            assert a[k].dtype == b[k].dtype, k
        else:
            assert a[k] == b[k], k


def test_a_run_killed_midway_resumes_by_replaying_its_actions_and_ends_the_same(tmp_path):
    assert RUN.ppo_config().num_updates == 3
    want = atari_agent.train("recode", RUN, 3)
    ckpt = tmp_path / "ckpt"

    def kill_during_second_update(done, total):  # update 1 is checkpointed (every_s=0), update 2 is lost
        if done == 2:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        atari_agent.train("recode", RUN, 3, checkpoint_dir=ckpt, every_s=0.0, on_update=kill_during_second_update)
    resumed = []
    got = atari_agent.train("recode", RUN, 3, checkpoint_dir=ckpt, every_s=0.0,
                            on_update=lambda done, total: resumed.append((done, total)))
    assert resumed == [(2, 3), (3, 3)]  # update 1 came from the checkpoint (its environments replayed)
    _same(got, want)
    assert want["r_int_raw"].shape == (3,) and np.all(want["r_int_raw"] > 0)  # RECODE's memory state was restored


def test_a_replay_that_does_not_reproduce_the_environments_fails_clearly():
    actions = np.zeros((3, RUN.num_steps, RUN.num_envs), np.uint8)
    ran = atari_agent.ReplayedEnvs(RUN, 3)
    for a in actions[0]:
        ran.obs, *_ = ran.vec.step(a)
    envs = atari_agent.ReplayedEnvs(RUN, 3)
    envs.seek(actions, 1, ran.fingerprint())  # the same seed and actions: the same environments
    np.testing.assert_array_equal(envs.obs, ran.obs)
    assert envs.at == 1 and envs.first.shape == (RUN.num_envs,)
    changed = ran.fingerprint()
    changed[1, 0] += 1  # one observation differs by one grey level
    with pytest.raises(RuntimeError, match="did not reproduce"):
        atari_agent.ReplayedEnvs(RUN, 3).seek(actions, 1, changed)
