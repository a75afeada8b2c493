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

from replicate.recode import baselines, memory
from replicate.recode.streams import GridStream

_CHUNK = 1024  # calls per block of observation noise (noise is drawn per block: segment-independent)


@dataclasses.dataclass
class Stream:
    """Cell ids of every memory call and, per seed, noisy embeddings generated on demand (the whole
    (seeds, calls, actors, dim) array would not fit in memory at the ``full`` profile)."""

    gs: GridStream
    seeds: tuple[int, ...]
    cells: np.ndarray  # (T, A) cell ids, one row per memory call (all actors' current step)
    first: np.ndarray  # (T, A) bool: first step of an episode
    episode_of_call: np.ndarray  # (T,) episode index of each call

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.seeds), *self.cells.shape, self.gs.embed_dim)

    def obs(self, start: int, stop: int, seed_index: int | None = None) -> np.ndarray:
        """Noisy embeddings of calls [start, stop): (S, stop - start, A, d), or (stop - start, A, d)
        for one seed. Fixed features of the cells plus N(0, noise^2), drawn per block of calls."""
        feats = self.gs.cell_features()
        idx = range(len(self.seeds)) if seed_index is None else [seed_index]
        out = []
        for si in idx:
            parts = []
            for b in range(start // _CHUNK, -(-stop // _CHUNK)):
                lo, hi = b * _CHUNK, min((b + 1) * _CHUNK, self.cells.shape[0])
                rng = np.random.default_rng([self.gs.seed, 3, self.seeds[si], b])
                noise = rng.normal(size=(hi - lo, self.cells.shape[1], self.gs.embed_dim)).astype(np.float32)
                parts.append(noise[max(start, lo) - lo : min(stop, hi) - lo])
            out.append(feats[self.cells[start:stop]] + np.concatenate(parts) * np.float32(self.gs.noise))
        return out[0] if seed_index is not None else np.stack(out)


def build_stream(gs: GridStream, seeds: Sequence[int]) -> Stream:
    cells, _ = gs.trajectories()  # (E, L+1, A)
    E, L1, A = cells.shape
    first = np.zeros((E, L1, A), bool)
    first[:, 0] = True
    return Stream(
        gs,
        tuple(int(s) for s in seeds),
        cells.reshape(E * L1, A),
        first.reshape(E * L1, A),
        np.repeat(np.arange(E), L1),
    )


def true_counts(cells: np.ndarray, n_cells: int, gamma: float, checkpoints: Sequence[int],
                per: str = "embedding") -> np.ndarray:
    """(len(checkpoints), n_cells) counts after calls [0, c), discounted by gamma once per embedding (``per=
    "embedding"``, Algorithm 1's rule: the actors of a call in order, the newest undiscounted) or once per call
    (``per="call"``), matching :class:`~replicate.recode.memory.RecodeConfig`'s ``discount_per``."""
    if per not in ("embedding", "call"):
        raise ValueError(f"per={per!r}: use 'embedding' or 'call'")
    A = cells.shape[1]
    decay = gamma ** A if per == "embedding" else gamma
    w = gamma ** (A - 1 - np.arange(A)) if per == "embedding" else np.ones(A)
    out, counts, t = [], np.zeros(n_cells), 0
    for c in checkpoints:
        while t < c:
            counts *= decay
            np.add.at(counts, cells[t], w)
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


def run_recode(cfg: memory.RecodeConfig, stream: Stream, points: Sequence[int], key: jax.Array):
    """RECODE over the stream for every seed (vmap). Returns, at every point, each cell's pseudo-count
    N (Alg. 1 l.1; the count the reward uses) and the count of the cell's nearest atom, both
    (S, P, n_cells), and the final states."""
    S = stream.shape[0]
    feats = jnp.asarray(stream.gs.cell_features())
    state0 = memory.init(cfg, stream.shape[-1])
    keys = jax.random.split(key, S)

    @jax.jit
    def segment(states, xs, ks):
        return jax.vmap(lambda st, x, k: memory.run_stream(cfg, st, x, k)[0])(states, xs, ks)

    @jax.jit
    def query(states):
        def one(st):
            knn_d2, knn_idx, count = memory.query(cfg, st, feats)
            return count, st.counts[knn_idx[:, 0]]

        return jax.vmap(one)(states)

    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (S, *x.shape)), state0)
    counts, nearest, prev = [], [], 0
    for p in points:
        xs = jnp.asarray(stream.obs(prev, p))
        seg_keys = jax.vmap(lambda k: jax.random.fold_in(k, p))(keys)
        states = segment(states, xs, seg_keys)
        n, c = query(states)
        counts.append(np.asarray(n))
        nearest.append(np.asarray(c))
        prev = p
    return np.stack(counts, 1), np.stack(nearest, 1), states


def run_episodic(cfg: baselines.EpisodicConfig, stream: Stream, points: Sequence[int]):
    """NGU's episodic memory (the paper's EMM) per actor; at each point the kernel sums of all cells against actor 0's
    current episode memory. Returns (S, P, n_cells)."""
    S, T, A, d = stream.shape
    feats = jnp.asarray(stream.gs.cell_features())

    @jax.jit
    def segment(state, xs, resets):
        def body(s, inp):
            x, r = inp
            return baselines.episodic_step(cfg, s, x, r)[0], None

        return jax.lax.scan(body, state, (xs, resets))[0]

    out = []
    for s in range(S):
        state, prev, counts = baselines.init_episodic(cfg, A, d), 0, []
        for p in points:
            state = segment(state, jnp.asarray(stream.obs(prev, p, s)), jnp.asarray(stream.first[prev:p]))
            counts.append(np.asarray(baselines.episodic_query(cfg, state, 0, feats)))
            prev = p
        out.append(np.stack(counts))
    return np.stack(out)


def run_rnd_errors(cfg: baselines.RNDConfig, stream: Stream, points: Sequence[int], key: jax.Array):
    """RND trained on the stream (one Adam step per call). Returns, at every point, RND's prediction error at
    every cell, (S, P, n_cells), and the running mean and standard deviation of the errors of the training
    batches so far (NGU's ``mu_err``, ``sigma_err``), each (S, P)."""
    S, T, A, d = stream.shape
    feats = jnp.asarray(stream.gs.cell_features())
    errs, means, stds = [], [], []
    for s in range(S):
        state, prev = baselines.init_rnd(cfg, jax.random.fold_in(key, s), d), 0
        rms = baselines.RunningMeanStd.create()
        e_s, m_s, sd_s = [], [], []
        for p in points:
            state, rms = baselines.rnd_run_moments(cfg, state, rms, jnp.asarray(stream.obs(prev, p, s)))
            e_s.append(np.asarray(baselines.rnd_reward(cfg, state, feats)))
            m_s.append(float(rms.mean))
            sd_s.append(float(rms.std()))
            prev = p
        errs.append(np.stack(e_s))
        means.append(m_s)
        stds.append(sd_s)
    return np.stack(errs), np.array(means), np.array(stds)


def rnd_counts(errors: np.ndarray) -> np.ndarray:
    """RND's count proxy ``1 / error`` (the count r = 1/sqrt(N) implies with r = sqrt(error))."""
    return 1.0 / np.maximum(errors, 1e-12)


def run_rnd(cfg: baselines.RNDConfig, stream: Stream, points: Sequence[int], key: jax.Array):
    """RND trained on the stream; count proxy 1 / error at every cell. Returns (S, P, n_cells)."""
    return rnd_counts(run_rnd_errors(cfg, stream, points, key)[0])


def ngu_counts(ngu: baselines.NGUConfig, episodic: baselines.EpisodicConfig, kernel_sums: np.ndarray,
               errors: np.ndarray, err_mean: np.ndarray, err_std: np.ndarray) -> np.ndarray:
    """NGU's count proxy at every cell, ``1 / r^2`` of NGU's reward ``r = r_episodic * modulation``
    (:func:`replicate.recode.baselines.ngu_reward`) with ``r_episodic = 1 / (sqrt(kernel sum) + c)`` (the
    ``s_max`` cut-off is left out: it would make the count infinite). ``kernel_sums`` (S, P, C) from
    :func:`run_episodic`, ``errors`` (S, P, C) and ``err_mean``/``err_std`` (S, P) from :func:`run_rnd_errors`."""
    r_epi = 1.0 / (np.sqrt(kernel_sums) + episodic.c)
    r = np.asarray(baselines.ngu_reward(ngu, jnp.asarray(r_epi), jnp.asarray(errors),
                                        jnp.asarray(err_mean)[..., None], jnp.asarray(err_std)[..., None]))
    return 1.0 / np.asarray(r, np.float64) ** 2


def correlations(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(S, P) Spearman correlations of estimates (S, P, C) with the truth (P, C)."""
    return np.array([[rank_corr(est[s, p], truth[p]) for p in range(est.shape[1])] for s in range(est.shape[0])])
