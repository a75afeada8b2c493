"""Count-tracking experiments of notebook 10: RECODE vs ground truth on a drifting grid-world stream.

Everything here is a thin driver over :mod:`memory`, :mod:`baselines` and :mod:`streams`: it
builds the stream, runs the estimators with ``lax.scan`` (``vmap`` over seeds), and, at evaluation
points, queries every estimator's count for every cell (its noiseless embedding) and compares it
with the true counts by Spearman rank correlation.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import spearmanr

from replicate.recode import baselines as bl
from replicate.recode import memory as rm
from replicate.recode.streams import GridStream


@dataclasses.dataclass
class Stream:
    gs: GridStream
    cells: np.ndarray  # (T, A) cell ids, one row per memory call (all actors' current step)
    first: np.ndarray  # (T, A) bool: first step of an episode
    obs: np.ndarray  # (S, T, A, d) noisy embeddings, one stream per seed
    episode_of_call: np.ndarray  # (T,) episode index of each call


def build_stream(gs: GridStream, seeds: Sequence[int]) -> Stream:
    cells, _ = gs.trajectories()  # (E, L+1, A)
    E, L1, A = cells.shape
    flat = cells.reshape(E * L1, A)
    first = np.zeros((E, L1, A), bool)
    first[:, 0] = True
    obs = np.stack([gs.observe(flat, np.random.default_rng([gs.seed, 3, s])) for s in seeds])
    return Stream(gs, flat, first.reshape(E * L1, A), obs, np.repeat(np.arange(E), L1))


def true_counts(cells: np.ndarray, n_cells: int, gamma: float, checkpoints: Sequence[int]) -> np.ndarray:
    """(len(checkpoints), n_cells) counts after calls [0, c), discounted by gamma once per call."""
    out, counts, t = [], np.zeros(n_cells), 0
    for c in checkpoints:
        while t < c:
            counts *= gamma
            np.add.at(counts, cells[t], 1.0)
            t += 1
        out.append(counts.copy())
    return np.array(out)


def rank_corr(est: np.ndarray, true: np.ndarray) -> float:
    """Spearman correlation over the cells (0 when either side is constant)."""
    if np.ptp(est) == 0 or np.ptp(true) == 0:
        return 0.0
    return float(spearmanr(est, true).statistic)


def checkpoints(n_calls: int, n_points: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(n_calls / n_points, n_calls, n_points)})


def run_recode(cfg: rm.RecodeConfig, stream: Stream, points: Sequence[int], key: jax.Array):
    """RECODE over the stream for every seed (vmap). Returns, at every point, each cell's pseudo-count
    N (Alg. 1 l.1; the count the reward uses) and the count of the cell's nearest atom, both
    (S, P, n_cells), and the final states."""
    S = stream.obs.shape[0]
    feats = jnp.asarray(stream.gs.cell_features())
    state0 = rm.init(cfg, stream.obs.shape[-1])
    keys = jax.random.split(key, S)

    @jax.jit
    def segment(states, xs, ks):
        return jax.vmap(lambda st, x, k: rm._run_stream_jit(cfg, st, x, k)[0])(states, xs, ks)

    @jax.jit
    def query(states):
        def one(st):
            knn_d2, knn_idx, count = rm._query(cfg, st, feats)
            return count, st.counts[knn_idx[:, 0]]

        return jax.vmap(one)(states)

    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (S, *x.shape)), state0)
    counts, nearest, prev = [], [], 0
    for p in points:
        xs = jnp.asarray(stream.obs[:, prev:p])
        seg_keys = jax.vmap(lambda k: jax.random.fold_in(k, p))(keys)
        states = segment(states, xs, seg_keys)
        n, c = query(states)
        counts.append(np.asarray(n))
        nearest.append(np.asarray(c))
        prev = p
    return np.stack(counts, 1), np.stack(nearest, 1), states


def run_episodic(cfg: bl.EpisodicConfig, stream: Stream, points: Sequence[int]):
    """NGU episodic memory per actor; at each point the kernel sums of all cells against actor 0's
    current episode memory. Returns (S, P, n_cells)."""
    S, T, A, d = stream.obs.shape
    feats = jnp.asarray(stream.gs.cell_features())

    @jax.jit
    def segment(state, xs, resets):
        def body(s, inp):
            x, r = inp
            return bl._episodic_step_jit(cfg, s, x, r)[0], None

        return jax.lax.scan(body, state, (xs, resets))[0]

    out = []
    for s in range(S):
        state, prev, counts = bl.init_episodic(cfg, A, d), 0, []
        for p in points:
            state = segment(state, jnp.asarray(stream.obs[s, prev:p]), jnp.asarray(stream.first[prev:p]))
            counts.append(np.asarray(bl.episodic_query(cfg, state, 0, feats)))
            prev = p
        out.append(np.stack(counts))
    return np.stack(out)


def run_rnd(cfg: bl.RNDConfig, stream: Stream, points: Sequence[int], key: jax.Array):
    """RND trained on the stream; count proxy 1 / error at every cell. Returns (S, P, n_cells)."""
    S, T, A, d = stream.obs.shape
    feats = jnp.asarray(stream.gs.cell_features())
    out = []
    for s in range(S):
        state, prev, counts = bl.init_rnd(cfg, jax.random.fold_in(key, s), d), 0, []
        for p in points:
            state = bl.rnd_run(cfg, state, jnp.asarray(stream.obs[s, prev:p]))
            counts.append(1.0 / np.maximum(np.asarray(bl.rnd_reward(cfg, state, feats)), 1e-12))
            prev = p
        out.append(np.stack(counts))
    return np.stack(out)


def correlations(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(S, P) Spearman correlations of estimates (S, P, C) with the truth (P, C)."""
    return np.array([[rank_corr(est[s, p], truth[p]) for p in range(est.shape[1])] for s in range(est.shape[0])])
