"""Environments behind one thin, jittable interface for the exploration agents (RECODE II).

An :class:`Adapter` wraps a functional environment (gymnax's bsuite DeepSea, xminigrid's MiniGrid tasks;
ale-py's Atari games, which cannot run inside ``jit``, have their own driver in :mod:`replicate.rl.atari`)
as pure functions that can run inside ``jit``/``lax.scan``:

* ``reset(key) -> (obs, env_state)`` with ``obs`` a flat float32 vector of size ``obs_dim``;
* ``step(key, env_state, action) -> StepResult``: the transition with **auto-reset**, and both
  the observation the policy sees next (``obs``: the reset observation when the episode ended)
  and the true next observation ``next_obs`` of the transition (the terminal one when it ended),
  so that intrinsic rewards are computed on the state actually reached, not on the reset state;
* ``state_id(env_state) -> int32``: the true discrete state (for tabular counts and the
  "distinct states visited" metric); ``n_states`` is its range (``None``: not available);
* ``success``: whether the transition reached the environment's goal (for first-success metrics);
* ``reachable(env_state) -> int32`` (optional): how many cells of the current episode's layout the agent can
  stand on, for tasks whose layout changes at every reset (the per-episode coverage of
  :class:`replicate.rl.exploration.EpisodeCoverage`); ``None`` where the layout is fixed.

DeepSea (Osband et al. 2020, bsuite): an ``N x N`` grid, start top-left, every step moves one
row down and one column left or right; the reward ``1`` is only at the bottom-right corner,
reached by choosing "right" at every one of the ``N`` steps, and every "right" costs
``0.01 / N``. A uniformly random policy finds the treasure with probability ``2^-N`` per
episode, so it needs ``2^N`` episodes on average. Which action index means "right" is drawn
independently for every cell (bsuite's ``mapping_seed``), so that no fixed action solves it.

**gymnax pitfall.** gymnax's ``DeepSea-bsuite`` (0.0.9) uses an all-ones action map whenever
``deterministic=True`` (its default), so "always press 1" solves every size; and asking for a
random map (``deterministic=False``) also turns on stochastic transitions. :class:`FixedMapDeepSea`
keeps gymnax's deterministic dynamics and installs a fixed Bernoulli(1/2) per-cell action map
drawn from ``map_seed`` (bsuite's behaviour); ``tests/rl/test_envs.py`` checks that the map is
not constant, that following it earns the treasure and that "always 1" does not.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from replicate.params import ParameterError


class StepResult(NamedTuple):
    obs: jax.Array  # (obs_dim,) observation for the policy's next step (reset obs if done)
    env_state: Any  # state after auto-reset
    reward: jax.Array  # () float32 extrinsic reward
    done: jax.Array  # () bool: the episode ended with this transition
    next_obs: jax.Array  # (obs_dim,) true next observation of this transition
    next_state_id: jax.Array  # () int32 true next state (0 if unavailable)
    success: jax.Array  # () bool: the transition reached the goal


@dataclasses.dataclass(frozen=True)
class Adapter:
    """A functional environment with flat float observations and discrete actions."""

    name: str
    obs_dim: int
    n_actions: int
    reset: Callable[[jax.Array], tuple[jax.Array, Any]]
    step: Callable[[jax.Array, Any, jax.Array], StepResult]
    state_id: Callable[[Any], jax.Array]
    n_states: int | None = None
    max_episode_steps: int | None = None
    reachable: Callable[[Any], jax.Array] | None = None


def gymnax_adapter(
    env, params=None, *, name: str | None = None, state_id=None, n_states=None, success=None, max_episode_steps=None
) -> Adapter:
    """Wrap a gymnax environment. ``state_id(env_state)`` and ``success(reward, env_state)`` are optional."""
    params = env.default_params if params is None else params
    obs_shape = env.observation_space(params).shape
    obs_dim = int(np.prod(obs_shape))
    state_id_fn = state_id if state_id is not None else (lambda s: jnp.zeros((), jnp.int32))
    success_fn = success if success is not None else (lambda r, s: r > 0)

    def reset(key):
        obs, st = env.reset_env(key, params)
        return jnp.asarray(obs, jnp.float32).reshape(obs_dim), st

    def step(key, st, action):
        k_step, k_reset = jax.random.split(key)
        obs_st, st_st, reward, done, _ = env.step_env(k_step, st, action, params)
        obs_re, st_re = env.reset_env(k_reset, params)
        done = jnp.asarray(done, bool)
        next_obs = jnp.asarray(obs_st, jnp.float32).reshape(obs_dim)
        new_st = jax.tree.map(lambda a, b: jax.lax.select(done, a, b), st_re, st_st)
        obs = jnp.where(done, jnp.asarray(obs_re, jnp.float32).reshape(obs_dim), next_obs)
        reward = jnp.asarray(reward, jnp.float32)
        return StepResult(
            obs,
            new_st,
            reward,
            done,
            next_obs,
            jnp.asarray(state_id_fn(st_st), jnp.int32),
            jnp.asarray(success_fn(reward, st_st), bool),
        )

    n_actions = int(env.action_space(params).n)
    return Adapter(
        name or env.name,
        obs_dim,
        n_actions,
        reset,
        step,
        lambda s: jnp.asarray(state_id_fn(s), jnp.int32),
        n_states,
        max_episode_steps,
    )


# ----------------------------------------------------------------------------------------------
# DeepSea with a fixed random action map


def deep_sea_action_map(size: int, map_seed: int) -> np.ndarray:
    """bsuite's per-cell action map: ``map[row, col]`` is the action index that moves right."""
    return np.random.default_rng(map_seed).binomial(1, 0.5, (size, size)).astype(np.int32)


def _fixed_map_deep_sea_cls():
    from gymnax.environments.bsuite.deep_sea import DeepSea

    class FixedMapDeepSea(DeepSea):
        """gymnax DeepSea with deterministic dynamics and a fixed per-cell action map (see module doc)."""

        def __init__(self, size: int, action_map: np.ndarray):
            super().__init__(size)
            self.action_mapping = jnp.asarray(action_map, jnp.int32)

        def reset_env(self, key, params):
            obs, state = super().reset_env(key, params)
            return obs, state.replace(action_mapping=self.action_mapping)

    return FixedMapDeepSea


def deep_sea(size: int, *, map_seed: int = 0, move_cost: float = 0.01) -> Adapter:
    """DeepSea of side ``size`` with a fixed random action map (``map_seed``), deterministic dynamics.

    Observation: the one-hot ``size x size`` position (all zeros after the last row), flattened.
    ``state_id = row * size + column`` with ``row = size`` for the terminal row (``n_states = size*(size+1)``).
    ``success``: the treasure (reward 1 at the bottom-right) was collected.
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 2:
        raise ParameterError(f"DeepSea size={size!r} must be an int >= 2")
    if move_cost < 0:
        raise ParameterError(f"DeepSea move_cost={move_cost} must be >= 0")
    size = int(size)
    cls = _fixed_map_deep_sea_cls()
    env = cls(size, deep_sea_action_map(size, map_seed))
    params = env.default_params.replace(deterministic=True, sample_action_map=False, unscaled_move_cost=move_cost)

    def state_id(s):
        return s.row * size + s.column

    def success(reward, s):
        return jnp.logical_and(s.row == size, reward > 0.5)

    return gymnax_adapter(
        env,
        params,
        name=f"DeepSea-{size}",
        state_id=state_id,
        n_states=size * (size + 1),
        success=success,
        max_episode_steps=size,
    )


def gymnax_env(name: str, **kwargs) -> Adapter:
    """Any gymnax environment by id (e.g. ``"CartPole-v1"``), without state ids."""
    import gymnax

    env, params = gymnax.make(name, **kwargs)
    return gymnax_adapter(env, params, name=name)


def random_policy_success_episodes(size: int) -> float:
    """Expected episodes to the first treasure for the uniform random policy: ``2^size`` (geometric, p = 2^-size)."""
    return float(2**size)


# ----------------------------------------------------------------------------------------------
# MiniGrid via xminigrid (Nikulin et al. 2024, XLand-MiniGrid): the MiniGrid tasks rewritten in JAX

MINIGRID_TASKS = (
    "MiniGrid-DoorKey-5x5",
    "MiniGrid-DoorKey-6x6",
    "MiniGrid-DoorKey-8x8",
    "MiniGrid-DoorKey-16x16",
    "MiniGrid-FourRooms",
    "MiniGrid-Unlock",
    "MiniGrid-UnlockPickUp",
    "MiniGrid-BlockedUnlockPickUp",
    "MiniGrid-LockedRoom",
    "MiniGrid-Empty-8x8",
    "MiniGrid-Empty-16x16",
)


def minigrid_obs_dim(view_size: int = 7) -> int:
    """Size of :func:`minigrid`'s flat observation: one-hot tile and colour per view cell, one-hot direction."""
    from xminigrid.core.constants import NUM_COLORS, NUM_TILES

    return view_size * view_size * (NUM_TILES + NUM_COLORS) + 4


def minigrid(name: str, *, max_steps: int | None = None, view_size: int = 7) -> Adapter:
    """A MiniGrid task from ``xminigrid`` (e.g. ``"MiniGrid-DoorKey-8x8"``, ``"MiniGrid-FourRooms"``).

    Observation: MiniGrid's partial, egocentric ``view_size x view_size`` symbolic view (tile and colour
    ids per cell, xminigrid's layout) one-hot encoded per cell, followed by the one-hot direction the
    agent faces (MiniGrid's ``direction`` field), flattened: :func:`minigrid_obs_dim` floats.
    Actions: xminigrid's 6 (forward, turn right, turn left, pick up, put down, toggle).
    Reward: MiniGrid's ``1 - 0.9 * steps / max_steps`` on reaching the goal, else 0; an episode ends
    at the goal or after ``max_steps`` (MiniGrid's default when ``None``: e.g. ``10 * H * W`` for DoorKey).
    Truncation is treated as an episode end like termination (no bootstrap past it; the PureJaxRL and
    xminigrid-baselines simplification). Layouts (key, door, agent; FourRooms' doors and goal) are
    re-drawn at every reset, as in MiniGrid.
    ``state_id``: the agent's cell ``row * W + col`` (``n_states = H * W``; "distinct cells visited").
    ``success``: the goal was reached (reward > 0). ``reachable``: the cells of the episode's layout that are not
    walls (floor, key, door, goal: the agent can stand on each once it has picked up the key and opened the door).
    """
    try:
        import xminigrid
        from xminigrid.core.constants import NUM_COLORS, NUM_TILES, Tiles
    except ImportError as e:  # pragma: no cover - the rl extra installs it
        raise ParameterError("MiniGrid needs the 'xminigrid' package: pip install -e '.[rl]'") from e
    if name not in xminigrid.registered_environments() or not name.startswith("MiniGrid-"):
        raise ParameterError(
            f"MiniGrid task {name!r} is unknown; choose one of "
            f"{[n for n in xminigrid.registered_environments() if n.startswith('MiniGrid-')]}"
        )
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ParameterError(f"MiniGrid max_steps={max_steps!r} must be a positive int or None (task default)")
    env, params = xminigrid.make(name)
    params = params.replace(view_size=int(view_size))
    if max_steps is not None:
        params = params.replace(max_steps=int(max_steps))
    height, width = int(params.height), int(params.width)
    obs_dim = minigrid_obs_dim(view_size)

    def encode(ts):
        o = ts.observation.astype(jnp.int32)
        tiles = jax.nn.one_hot(o[..., 0], NUM_TILES, dtype=jnp.float32)
        colours = jax.nn.one_hot(o[..., 1], NUM_COLORS, dtype=jnp.float32)
        direction = jax.nn.one_hot(ts.state.agent.direction, 4, dtype=jnp.float32)
        return jnp.concatenate([jnp.concatenate([tiles, colours], -1).reshape(-1), direction])

    def cell(ts):
        pos = ts.state.agent.position
        return (pos[0] * width + pos[1]).astype(jnp.int32)

    def reachable(ts):
        return jnp.sum(ts.state.grid[..., 0] != Tiles.WALL).astype(jnp.int32)

    def reset(key):
        ts = env.reset(params, key)
        return encode(ts), ts

    def step(key, ts, action):
        nxt = env.step(params, ts, action)
        done = nxt.last()
        re = env.reset(params, key)
        new_ts = jax.tree.map(lambda a, b: jax.lax.select(done, a, b), re, nxt)
        next_obs = encode(nxt)
        obs = jnp.where(done, encode(re), next_obs)
        reward = jnp.asarray(nxt.reward, jnp.float32)
        return StepResult(obs, new_ts, reward, done, next_obs, cell(nxt), reward > 0)

    return Adapter(
        name, obs_dim, int(env.num_actions(params)), reset, step, cell, height * width, int(params.max_steps),
        reachable,
    )
