"""Resumable offline training (train.train_in_chunks, used by experiment.run and offline_peers.run): the chunk and
evaluation schedule, checkpointed = uninterrupted, killed midway and re-run = same, for a toy loop and both real
runs (BC/PAC and a peer)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate.pac import experiment, offline_peers, train
from replicate.pac.losses import PACConfig
from replicate.pac.perceiver import make_config
from replicate.params import ParameterError


@pytest.mark.parametrize(
    "steps, chunk, every, sizes, evals",
    [
        (10, 3, 0, [3, 3, 3, 1], [False, False, False, True]),  # the last chunk shorter, one final evaluation
        (10, 3, 5, [3, 3, 3, 1], [False, True, False, True]),  # every 5 updates rounded up to whole chunks (6)
        (9, 3, 3, [3, 3, 3], [True, True, True]),
        (10, 0, 4, [10], [True]),  # chunk 0: one chunk
        (4, 10, 0, [4], [True]),  # a chunk longer than the run is the run
    ],
)
def test_chunk_schedule(steps, chunk, every, sizes, evals):
    assert train.chunk_schedule(steps, chunk, every) == (sizes, evals)


def test_chunk_schedule_without_evaluations():
    assert train.chunk_schedule(7, 3, 2, evaluate=False) == ([3, 3, 1], [False, False, False])


def test_chunk_schedule_rejects_an_empty_run():
    with pytest.raises(ParameterError, match="steps=0"):
        train.chunk_schedule(0, 3, 0)


def _toy_chunk(n):
    """n updates of a scalar state: state += key-driven noise; metrics: the running state after each update."""

    @jax.jit
    def fn(state, key):
        def one(s, k):
            s = s + jax.random.normal(k)
            return s, {"x": s, "k": jax.random.uniform(k)}

        return jax.lax.scan(one, state, jax.random.split(key, n))

    return fn


def _toy_run(checkpoint_dir=None, evaluate=None):
    calls = []

    def ev(st):
        calls.append(float(st))
        if evaluate is not None:
            evaluate(len(calls))
        return {"a": {"return": float(st), "normalised": float(st) / 3}, "b": {"return": 1.0, "normalised": -float(st)}}

    out = train.train_in_chunks(jnp.float32(0.0), _toy_chunk, jax.random.PRNGKey(0), 10, chunk=3, evaluate=ev,
                                tasks=["a", "b"], eval_every=3, checkpoint_dir=checkpoint_dir, every_s=0.0)
    return out, calls


def _same(a, b):
    (sa, ma, _, ca), (sb, mb, _, cb) = a, b
    assert float(sa) == float(sb) and ca == cb and ma.keys() == mb.keys()
    for k in ma:
        np.testing.assert_array_equal(ma[k], mb[k])


def test_toy_loop_metrics_curve_and_keys_are_those_of_the_chunks():
    (state, metrics, seconds, curve), calls = _toy_run()
    key = jax.random.PRNGKey(0)
    expect, s = [], jnp.float32(0.0)
    for done, n in zip([0, 3, 6, 9], [3, 3, 3, 1]):  # each chunk keyed by fold_in(key, updates done)
        s, m = _toy_chunk(n)(s, jax.random.fold_in(key, done))
        expect.append(np.asarray(m["x"]))
    np.testing.assert_array_equal(metrics["x"], np.concatenate(expect))
    assert float(state) == float(s) and metrics["k"].shape == (10,) and seconds >= 0
    assert [n for n, _ in curve] == [3, 6, 9, 10] and len(calls) == 4
    assert curve[-1][1]["a"] == {"return": float(s), "normalised": float(s) / 3}
    assert list(curve[0][1]) == ["a", "b"]


def test_toy_loop_checkpointed_equals_uninterrupted_and_resumes_after_a_kill(tmp_path):
    plain, _ = _toy_run()
    _same(_toy_run(tmp_path / "a")[0], plain)

    def kill_at_third_evaluation(i):  # chunks 1-2 are checkpointed (every_s=0); chunk 3 is lost
        if i == 3:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        _toy_run(tmp_path / "b", evaluate=kill_at_third_evaluation)
    resumed, calls = _toy_run(tmp_path / "b")
    assert len(calls) == 2  # only chunks 3 and 4 ran (and evaluated) again
    _same(resumed, plain)


def _tiny_mix(n=48):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    return {"obs": obs, "next_obs": np.roll(obs, -1, 0), "obs_mask": np.ones((n, 3), bool),
            "action": np.clip(obs[:, :2], -1, 1), "action_mask": np.ones((n, 2), bool),
            "reward": rng.uniform(size=n).astype(np.float32), "discount": np.ones(n, np.float32),
            "task": (np.arange(n) % 2).astype(np.int32), "obs_dim": np.array([3, 3]), "action_dim": np.array([2, 2])}


def _assert_rows_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k != "train_seconds":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_perceiver_run_checkpointed_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    # PAC (critic on, target and sampled-action passes): the loop is the same for BC.
    merged = _tiny_mix()
    net = make_config("tiny", obs_dim=3, action_dim=2, num_tasks=2, num_action_bins=5, num_value_bins=11, v_max=10.0)
    pac = PACConfig(num_policy_samples=2, target_update_period=3)
    tc = train.TrainConfig(batch_size=8)

    def run(ckpt=None):
        return experiment.run(merged, [], net, pac, tc, 6, 0, 0.5, 1.0, eval_episodes=0, action_repeat=1,
                              chunk=3, checkpoint_dir=ckpt, every_s=0.0)

    plain = run()
    assert plain["steps"] == 6 and plain["curve_bc_nll"].shape == (6,) and plain["finite"]
    _assert_rows_equal(run(tmp_path / "a"), plain)

    real = train.make_train_fn
    calls = []

    def dying(model, pac_cfg, train_cfg, n, *a, **kw):  # calls: shapes, chunk 1 (checkpointed), chunk 2 (killed)
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(model, pac_cfg, train_cfg, n, *a, **kw)

    monkeypatch.setattr(train, "make_train_fn", dying)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.setattr(train, "make_train_fn", real)
    _assert_rows_equal(run(tmp_path / "b"), plain)


def test_peer_run_checkpointed_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    merged = _tiny_mix()
    cfg = offline_peers.TD3BCConfig(hidden=(16,), batch_size=8, num_updates=6)

    def run(ckpt=None):
        return offline_peers.run(cfg, merged, [], seed=0, eval_episodes=0, action_repeat=1, chunk=3,
                                 checkpoint_dir=ckpt, every_s=0.0)

    plain = run()
    _assert_rows_equal(run(tmp_path / "a"), plain)
    real = offline_peers.make_update_chunk_cached
    calls = []

    def dying(c, n):  # calls: shapes, chunk 1 (checkpointed), chunk 2 (killed)
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(c, n)

    monkeypatch.setattr(offline_peers, "make_update_chunk_cached", dying)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.setattr(offline_peers, "make_update_chunk_cached", real)
    _assert_rows_equal(run(tmp_path / "b"), plain)
