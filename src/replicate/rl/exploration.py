"""Exploration metrics: first-success episode, distinct states visited over time, episode returns.

Two halves:

* an in-``jit`` :class:`Tracker` updated at every environment step of the agent (all ``E``
  parallel environments at once): which true states were ever reached, how many episodes ended,
  the running extrinsic return of each current episode, and the global index of the episode in
  which the goal was first reached;
* NumPy summaries across seeds: :func:`censored_summary` (median and quartiles of episodes to the
  first success, with runs that never succeeded counted at the budget and flagged).

Episode numbering: episodes are counted over all parallel environments in the order they end
(within one step, in environment order); an episode is successful if any of its transitions
reached the goal. ``first_success`` is the 1-based number of the first successful episode, so a random policy
on DeepSea of size ``N`` has
``E[first_success] = 2^N`` (geometric with ``p = 2^-N``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

NEVER = np.iinfo(np.int32).max  # first_success of a run that has not succeeded


class Tracker(NamedTuple):
    visited: jax.Array  # (n_states,) bool: true state reached at least once
    episodes: jax.Array  # () int32 episodes ended so far
    successes: jax.Array  # () int32 episodes that reached the goal
    first_success: jax.Array  # () int32 episode number of the first success (NEVER: none yet)
    ep_return: jax.Array  # (E,) float32 extrinsic return of each running episode
    ep_success: jax.Array  # (E,) bool: the running episode has reached the goal


class StepStats(NamedTuple):
    return_sum: jax.Array  # () sum of returns of the episodes that ended at this step
    ended: jax.Array  # () int32 number of episodes that ended at this step


def tracker_init(n_states: int | None, num_envs: int, initial_ids=None) -> Tracker:
    """Empty tracker; ``initial_ids`` (E,) marks the start states as visited."""
    visited = jnp.zeros((max(int(n_states or 1), 1),), bool)
    if n_states and initial_ids is not None:
        visited = visited.at[jnp.asarray(initial_ids, jnp.int32)].set(True)
    z = jnp.zeros((), jnp.int32)
    return Tracker(
        visited, z, z, jnp.asarray(NEVER, jnp.int32), jnp.zeros((num_envs,), jnp.float32), jnp.zeros((num_envs,), bool)
    )


def tracker_step(
    tr: Tracker, reward, done, success, next_state_id, track_states: bool = True
) -> tuple[Tracker, StepStats]:
    """Record one step of every environment: ``reward``, ``done``, ``success`` (E,), ``next_state_id`` (E,)."""
    done = jnp.asarray(done, bool)
    ep_success = tr.ep_success | jnp.asarray(success, bool)
    visited = tr.visited.at[next_state_id].set(True) if track_states else tr.visited
    ep_return = tr.ep_return + reward
    ended = done.astype(jnp.int32)
    number = tr.episodes + jnp.cumsum(ended)  # 1-based number of each episode ending now, env order
    first = jnp.minimum(tr.first_success, jnp.min(jnp.where(done & ep_success, number, NEVER)))
    stats = StepStats(jnp.sum(jnp.where(done, ep_return, 0.0)), jnp.sum(ended))
    tr = Tracker(
        visited,
        tr.episodes + jnp.sum(ended),
        tr.successes + jnp.sum(done & ep_success),
        first,
        jnp.where(done, 0.0, ep_return),
        ep_success & ~done,
    )
    return tr, stats


class EpisodeCoverage(NamedTuple):
    """Per-episode coverage: the cells each running episode has visited, out of the cells its layout has.

    For tasks whose layout is re-drawn at every reset (MiniGrid), the cells visited over the whole run saturate
    at the union of all layouts; the share of *its own* layout's cells each episode visits does not."""

    visited: jax.Array  # (E, n_states) bool: cells visited by each running episode (its start cell included)
    reach: jax.Array  # (E,) float32: cells of each running episode's layout the agent can stand on


def episode_coverage_init(n_states: int, ids, reach) -> EpisodeCoverage:
    """Coverage of episodes starting in cells ``ids`` (E,) of layouts with ``reach`` (E,) cells each."""
    ids = jnp.asarray(ids, jnp.int32)
    visited = jax.nn.one_hot(ids, int(n_states), dtype=jnp.bool_)
    return EpisodeCoverage(visited, jnp.asarray(reach, jnp.float32))


def episode_coverage_step(cov: EpisodeCoverage, next_id, done, reset_id, reset_reach):
    """Record one step of every environment: the cell reached (``next_id``, (E,)), whether the episode ended
    (``done``), and for an ended one the next episode's start cell and layout size (``reset_id``,
    ``reset_reach``). Returns ``(cov, coverage_sum)``: the summed coverage ``visited cells / reach`` (at most 1)
    of the episodes that ended at this step."""
    done = jnp.asarray(done, bool)
    n = cov.visited.shape[1]
    visited = cov.visited | jax.nn.one_hot(jnp.asarray(next_id, jnp.int32), n, dtype=jnp.bool_)
    frac = jnp.minimum(jnp.sum(visited, axis=1) / jnp.maximum(cov.reach, 1.0), 1.0)
    coverage_sum = jnp.sum(jnp.where(done, frac, 0.0))
    fresh = jax.nn.one_hot(jnp.asarray(reset_id, jnp.int32), n, dtype=jnp.bool_)
    visited = jnp.where(done[:, None], fresh, visited)
    reach = jnp.where(done, jnp.asarray(reset_reach, jnp.float32), cov.reach)
    return EpisodeCoverage(visited, reach), coverage_sum


# ----------------------------------------------------------------------------------------------
# NumPy summaries


def censored_summary(first_success, budget: float) -> dict[str, float]:
    """Median and quartiles of episodes-to-first-success over seeds; failures count as ``budget``.

    Returns ``median``, ``q25``, ``q75``, ``solved`` (fraction of seeds that succeeded) and
    ``censored`` (True when the median itself is a failure, i.e. a lower bound).
    """
    x = np.asarray(first_success, dtype=np.float64).reshape(-1)
    solved = x < NEVER
    y = np.where(solved, x, float(budget))
    med = float(np.median(y))
    return {
        "median": med,
        "q25": float(np.percentile(y, 25)),
        "q75": float(np.percentile(y, 75)),
        "solved": float(np.mean(solved)),
        "censored": bool(np.mean(solved) < 0.5),
    }


def first_success_numpy(done: np.ndarray, success: np.ndarray) -> int:
    """Reference: the number of the first successful episode from (T, E) arrays, by a plain loop."""
    episodes = 0
    ep_success = np.zeros(done.shape[1], bool)
    for t in range(done.shape[0]):
        for e in range(done.shape[1]):
            ep_success[e] |= bool(success[t, e])
            if done[t, e]:
                episodes += 1
                if ep_success[e]:
                    return episodes
                ep_success[e] = False
    return int(NEVER)


def trailing_mean(x, window: int) -> tuple[np.ndarray, slice]:
    """Trailing moving average over the last axis, NaN treated as 0 (no episode ended in that update).

    Returns ``(y, sl)`` where ``y[..., j]`` is the mean of ``x[..., j : j + window]`` and ``sl`` selects
    the matching x positions (the window's *last* point), so curves carry no edge artefact from padding.
    """
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
    window = int(max(1, min(window, x.shape[-1])))
    c = np.cumsum(np.concatenate([np.zeros(x.shape[:-1] + (1,)), x], axis=-1), axis=-1)
    return (c[..., window:] - c[..., :-window]) / window, slice(window - 1, None)
