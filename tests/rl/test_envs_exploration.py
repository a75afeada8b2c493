"""DeepSea adapter (fixed random action map), the in-jit exploration tracker vs a plain loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate.params import ParameterError
from replicate.rl import envs, exploration


def _play(env, actions_fn, size):
    obs, st = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    total, succ = 0.0, False
    for t in range(size):
        a = actions_fn(st)
        res = step(jax.random.PRNGKey(t + 1), st, jnp.asarray(a, jnp.int32))
        total += float(res.reward)
        succ |= bool(res.success)
        st = res.env_state
        if bool(res.done):
            return total, succ, res, t + 1
    return total, succ, res, size


def test_deep_sea_map_is_random_and_following_it_finds_the_treasure():
    size = 6
    amap = envs.deep_sea_action_map(size, 0)
    assert 0 < amap.mean() < 1  # not the all-ones map of gymnax's deterministic default
    env = envs.deep_sea(size, map_seed=0)
    assert env.n_states == size * (size + 1) and env.obs_dim == size * size and env.n_actions == 2

    total, succ, res, steps = _play(env, lambda s: amap[int(s.row), int(s.column)], size)
    assert steps == size and bool(res.done) and succ and total > 0.9
    assert int(res.next_state_id) == size * size + size - 1  # bottom-right, terminal row
    assert int(np.argmax(np.asarray(res.obs))) == 0 and float(res.obs.sum()) == 1.0

    for const in (0, 1):
        total, succ, _, _ = _play(env, lambda s: const, size)
        assert not succ and total <= 0.0


def test_deep_sea_validation():
    with pytest.raises(ParameterError):
        envs.deep_sea(1)
    assert envs.random_policy_success_episodes(10) == 1024


def test_tracker_first_success_matches_loop():
    rng = np.random.default_rng(0)
    T, E = 40, 5
    for trial in range(5):
        done = rng.random((T, E)) < 0.25
        success = rng.random((T, E)) < 0.04
        tr = exploration.tracker_init(4, E, jnp.zeros(E, jnp.int32))
        ids = rng.integers(0, 4, (T, E))
        ret_sum = 0.0
        for t in range(T):
            tr, stats = exploration.tracker_step(
                tr, jnp.ones(E), jnp.asarray(done[t]), jnp.asarray(success[t]), jnp.asarray(ids[t])
            )
            ret_sum += float(stats.return_sum)
        assert int(tr.first_success) == exploration.first_success_numpy(done, success)
        assert int(tr.episodes) == done.sum()
        assert bool(tr.visited[np.unique(ids)].all())
        # every step pays 1: the returns of ended episodes sum to the steps inside ended episodes
        steps_in_ended = sum(int(np.nonzero(done[:, e])[0].max()) + 1 if done[:, e].any() else 0 for e in range(E))
        assert ret_sum == pytest.approx(steps_in_ended)


def test_censored_summary():
    s = exploration.censored_summary([10, 20, exploration.NEVER], budget=100)
    assert s["median"] == 20 and s["solved"] == pytest.approx(2 / 3) and not s["censored"]
    s = exploration.censored_summary([exploration.NEVER, exploration.NEVER, 5], budget=100)
    assert s["median"] == 100 and s["censored"]


def test_trailing_mean_matches_loop():
    rng = np.random.default_rng(0)
    x = rng.random((2, 11))
    x[0, 3] = np.nan
    y, sl = exploration.trailing_mean(x, 4)
    xz = np.nan_to_num(x)
    ref = np.array([[xz[i, j : j + 4].mean() for j in range(11 - 3)] for i in range(2)])
    np.testing.assert_allclose(y, ref)
    assert np.arange(11)[sl].tolist() == list(range(3, 11))  # each value sits at its window's last update
    y1, _ = exploration.trailing_mean(x, 50)  # window capped at the length
    np.testing.assert_allclose(y1[:, 0], xz.mean(1))
