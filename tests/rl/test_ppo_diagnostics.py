"""PPO's per-update diagnostics (intrinsic-reward statistics, policy entropy) and the per-episode coverage tracker,
against NumPy loops."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate.rl import envs, exploration, ppo
from replicate.rl.normalisation import RunningMeanStd


def test_intrinsic_stats_match_numpy():
    rng = np.random.default_rng(0)
    T, E, g = 6, 3, 0.9
    r = rng.exponential(size=(T, E)).astype(np.float32)
    r[0, 0] = 1000.0  # a spike
    before = ppo.IntNormState(jnp.asarray(rng.normal(size=E), jnp.float32), RunningMeanStd.create())
    after, r_int = ppo.normalise_intrinsic(before, jnp.asarray(r), g)
    st = {k: float(v) for k, v in ppo.intrinsic_stats(before, after, jnp.asarray(r), r_int, g).items()}
    filt, rets = np.asarray(before.filt, np.float64), np.zeros((T, E))
    for t in range(T):
        filt = g * filt + r[t]
        rets[t] = filt
    assert st["r_int_raw_max"] == pytest.approx(1000.0) and st["r_int_raw_std"] == pytest.approx(r.std(), rel=1e-5)
    assert st["int_return_mean"] == pytest.approx(rets.mean(), rel=1e-5)
    assert st["int_return_std"] == pytest.approx(rets.std(), rel=1e-5)
    assert st["int_norm_scale"] == pytest.approx(float(np.sqrt(after.moments.var)), rel=1e-5)
    assert st["r_int_max"] == pytest.approx(1000.0 / st["int_norm_scale"], rel=1e-5)
    assert st["r_int_std"] == pytest.approx(float(np.std(np.asarray(r_int))), rel=1e-5)


def _coverage_numpy(ids, done, reset_ids, reach, start_ids, start_reach, n):
    """Plain loop: the coverage of every ended episode (its cells, start included, over its layout's cells)."""
    E = ids.shape[1]
    visited = [{int(start_ids[e])} for e in range(E)]
    cur = np.asarray(start_reach, np.float64).copy()
    sums = []
    for t in range(ids.shape[0]):
        total = 0.0
        for e in range(E):
            visited[e].add(int(ids[t, e]))
            if done[t, e]:
                total += min(len(visited[e]) / cur[e], 1.0)
                visited[e] = {int(reset_ids[t, e])}
                cur[e] = reach[t, e]
        sums.append(total)
    return np.array(sums)


def test_episode_coverage_matches_a_loop():
    rng = np.random.default_rng(1)
    T, E, n = 50, 4, 9
    ids = rng.integers(0, n, (T, E))
    done = rng.random((T, E)) < 0.2
    reset_ids = rng.integers(0, n, (T, E))
    reach = rng.integers(3, 8, (T, E)).astype(np.float32)
    start, start_reach = rng.integers(0, n, E), np.full(E, 5.0)
    cov = exploration.episode_coverage_init(n, start, start_reach)
    got = []
    step = jax.jit(exploration.episode_coverage_step)
    for t in range(T):
        cov, s = step(cov, ids[t], done[t], reset_ids[t], reach[t])
        got.append(float(s))
    np.testing.assert_allclose(got, _coverage_numpy(ids, done, reset_ids, reach, start, start_reach, n), rtol=1e-6)


def test_minigrid_reachable_counts_the_non_wall_cells_of_the_layout():
    env = envs.minigrid("MiniGrid-DoorKey-8x8")
    _, ts = jax.jit(env.reset)(jax.random.PRNGKey(0))
    grid = np.asarray(ts.state.grid[..., 0])
    from xminigrid.core.constants import Tiles

    n = int(jax.jit(env.reachable)(ts))
    assert n == int(np.sum(grid != Tiles.WALL))
    assert n == 6 * 6 - 6 + 1  # 6x6 inside the outer wall, minus a wall column, plus its door
    assert envs.deep_sea(4).reachable is None


def test_ppo_logs_entropy_intrinsic_stats_and_per_episode_coverage():
    """A short run logs the diagnostics per update: entropy in [0, log A], finite reward statistics; per-episode
    coverage where the env has a `reachable` count (0 without one). A DeepSea-4 episode visits its start cell and 4
    more, so with `reachable` = 5 every ended episode covers exactly 1."""
    from replicate.recode import bonus

    cfg = ppo.PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, num_minibatches=2, update_epochs=1)
    env = envs.deep_sea(4)
    counted = dataclasses.replace(env, reachable=lambda s: jnp.asarray(5, jnp.int32))
    _, m = ppo.train_seeds(cfg, counted, bonus.counts_bonus(env.n_states, c=1.0),
                           jax.random.split(jax.random.PRNGKey(0), 1))
    assert m["policy_entropy"].shape == (1, 3)
    assert np.all(m["policy_entropy"] > 0) and np.all(m["policy_entropy"] <= np.log(env.n_actions) + 1e-5)
    for k in ("r_int_raw_std", "r_int_raw_max", "r_int_std", "r_int_max", "int_norm_scale", "int_return_mean",
              "int_return_std"):
        assert np.all(np.isfinite(m[k])), k
    assert m["r_int_raw_max"][0, 0] == pytest.approx(1.0)  # a first visit: 1 / (sqrt(0) + 1)
    np.testing.assert_allclose(m["episode_coverage_sum"], m["episodes_ended"], rtol=1e-6)
    _, m = ppo.train_seeds(cfg, env, None, jax.random.split(jax.random.PRNGKey(0), 1))
    assert np.all(m["episode_coverage_sum"] == 0) and np.all(m["int_norm_scale"] == pytest.approx(1.0))
