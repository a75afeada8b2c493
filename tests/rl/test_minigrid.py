"""MiniGrid adapter (xminigrid) against xminigrid's own observations, rewards and step counter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate.params import ParameterError
from replicate.rl import envs

pytest.importorskip("xminigrid")
from xminigrid.core.constants import NUM_COLORS, NUM_TILES  # noqa: E402


def _decode(obs, view=7):
    """Invert the one-hot encoding with NumPy: (view, view, 2) tile/colour ids and the direction."""
    o = np.asarray(obs)
    grid = o[:-4].reshape(view, view, NUM_TILES + NUM_COLORS)
    assert np.all(grid[..., :NUM_TILES].sum(-1) == 1) and np.all(grid[..., NUM_TILES:].sum(-1) == 1)
    ids = np.stack([grid[..., :NUM_TILES].argmax(-1), grid[..., NUM_TILES:].argmax(-1)], -1)
    assert o[-4:].sum() == 1
    return ids, int(o[-4:].argmax())


def test_observation_encodes_xminigrid_view_and_direction():
    env = envs.minigrid("MiniGrid-DoorKey-5x5")
    assert env.obs_dim == envs.minigrid_obs_dim() == 7 * 7 * (NUM_TILES + NUM_COLORS) + 4
    obs, ts = env.reset(jax.random.PRNGKey(3))
    ids, d = _decode(obs)
    np.testing.assert_array_equal(ids, np.asarray(ts.observation))
    assert d == int(ts.state.agent.direction)
    assert int(env.state_id(ts)) == int(ts.state.agent.position[0]) * 5 + int(ts.state.agent.position[1])


def test_random_walk_auto_resets_and_reports_success_with_reward():
    """Empty-5x5 under random actions: the goal is reached; at an episode end `obs` is the reset
    observation and `next_obs` the terminal one; rewards follow MiniGrid's 1 - 0.9 t / max_steps."""
    env = envs.minigrid("MiniGrid-Empty-5x5")
    step = jax.jit(env.step)
    key = jax.random.PRNGKey(0)
    obs, st = env.reset(key)
    t, successes = 0, 0
    for i in range(3000):
        key, ka, ks = jax.random.split(key, 3)
        a = jax.random.randint(ka, (), 0, 3)  # forward / turn right / turn left
        prev_steps = int(st.state.step_num)
        res = step(ks, st, a)
        t += 1
        assert int(res.next_state_id) in range(env.n_states)
        if bool(res.done):
            assert int(st.state.step_num) == prev_steps and int(res.env_state.state.step_num) == 0
            if bool(res.success):
                successes += 1
                assert float(res.reward) == pytest.approx(1.0 - 0.9 * t / env.max_episode_steps, rel=1e-5)
                assert int(res.next_state_id) == 3 * 5 + 3  # the goal cell (H-2, W-2)
            else:
                assert t == env.max_episode_steps and float(res.reward) == 0.0
            ids_reset, _ = _decode(res.obs)
            np.testing.assert_array_equal(ids_reset, np.asarray(res.env_state.observation))
            t = 0
        else:
            assert not bool(res.success) and float(res.reward) == 0.0
            np.testing.assert_array_equal(np.asarray(res.obs), np.asarray(res.next_obs))
        st = res.env_state
        if successes >= 2:
            break
    assert successes >= 2


def test_max_steps_truncates_and_validation():
    env = envs.minigrid("MiniGrid-FourRooms", max_steps=3)
    obs, st = env.reset(jax.random.PRNGKey(0))
    dones, step = [], jax.jit(env.step)
    for i in range(6):
        res = step(jax.random.PRNGKey(i), st, jnp.asarray(1))  # turning never reaches the goal
        dones.append(bool(res.done))
        st = res.env_state
    assert dones == [False, False, True, False, False, True]
    with pytest.raises(ParameterError, match="unknown"):
        envs.minigrid("MiniGrid-KeyCorridor")
    with pytest.raises(ParameterError, match="max_steps"):
        envs.minigrid("MiniGrid-FourRooms", max_steps=0)
