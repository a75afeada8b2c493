"""RECODE's Algorithm 1 transcribed line by line in NumPy, one embedding at a time.

This is the readable reference the JAX memory (:mod:`replicate.recode.memory`) is tested against:
with a batch of one embedding and the same random draws (``u`` for the insertion test, Gumbel
noise ``g`` that turns the eviction weights into a sample) both give the same memory. It makes
the same choices where the paper is silent (see the memory module's docstring): empty slots are
not atoms and are evicted first, ``max(c, count_floor)`` in ``1/c^2``, ``d_m^2`` starts at the first
k-NN mean, an embedding that finds no atom is inserted, and (``free_fill``) the coin flip
is skipped while empty slots remain. Float64 throughout.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from replicate.recode.memory import RecodeConfig

# Score of empty slots in the eviction ranking: above every filled slot's score, lowest index first.
# Our own constant (the JAX memory has the same value; this file must not borrow what it checks).
EMPTY_SCORE = 1.0e7


@dataclasses.dataclass
class ReferenceMemory:
    """Plain mutable memory: ``atoms`` (M, d), ``counts`` (M,), ``filled`` (M,), ``dm2``."""

    cfg: RecodeConfig
    dim: int

    def __post_init__(self) -> None:
        m = self.cfg.memory_size
        self.atoms = np.zeros((m, self.dim))
        self.counts = np.zeros(m)
        self.filled = np.zeros(m, bool)
        self.dm2 = 0.0
        self.dm2_ready = False

    def pseudo_count(self, e: np.ndarray) -> float:
        """Alg. 1 l.1 with the kernel of Eq. (3): sum over all atoms in the d_m^2 ball."""
        cfg = self.cfg
        d2 = np.sum((self.atoms - e) ** 2, axis=1)
        inball = self.filled & (d2 < self.dm2)
        kernel = cfg.epsilon / (cfg.epsilon + d2[inball] / self.dm2)
        return float(np.sum((1.0 + self.counts[inball]) * kernel))

    def step(self, e: np.ndarray, u: float, g: np.ndarray) -> tuple[float, float, bool, int]:
        """One run of Algorithm 1 for embedding ``e``; returns (reward, pseudo-count, inserted, slot)."""
        cfg = self.cfg
        e = np.asarray(e, np.float64)
        # l.1-2: pseudo-count and reward, before any update
        count = self.pseudo_count(e)
        reward = 1.0 / (np.sqrt(count) + cfg.c)
        # l.3: k nearest atoms; l.4: d_m^2 running mean
        d2 = np.where(self.filled, np.sum((self.atoms - e) ** 2, axis=1), np.inf)
        order = np.argsort(d2, kind="stable")[: cfg.k]
        near = d2[order][np.isfinite(d2[order])]
        if near.size:
            mean = float(np.mean(near))
            self.dm2 = (1.0 - cfg.tau) * self.dm2 + cfg.tau * mean if self.dm2_ready else mean
            self.dm2_ready = True
        # l.5: discount every count
        self.counts *= cfg.gamma
        # l.6: nearest atom; l.7: u ~ U[0, 1]; l.8: insertion test
        if not self.filled.any():
            insert = True
        else:
            i = int(np.argmin(d2))
            # l.7-8; an empty slot evicts nothing, so with free_fill the coin flip is skipped
            coin = u < cfg.eta or (cfg.free_fill and not self.filled.all())
            insert = d2[i] > cfg.kappa * self.dm2 and coin
        if insert:
            # l.10: sample the atom to remove, P(j) ∝ 1/c_j^2 (Gumbel-max; empty slots first)
            j = int(np.argmax(self._scores(g)))
            if self.filled[j]:
                # l.11-12: hand its count to its nearest other atom
                dj = np.where(self.filled, np.sum((self.atoms - self.atoms[j]) ** 2, axis=1), np.inf)
                dj[j] = np.inf
                if np.isfinite(dj).any():
                    self.counts[int(np.argmin(dj))] += self.counts[j]
            # l.13: insert e with count 1
            self.atoms[j] = e
            self.counts[j] = 1.0
            self.filled[j] = True
            return reward, count, True, j
        # l.15-16: merge e into the nearest atom (running mean)
        c = self.counts[i]
        self.atoms[i] = c / (c + 1.0) * self.atoms[i] + 1.0 / (c + 1.0) * e
        self.counts[i] = c + 1.0
        return reward, count, False, i

    def _scores(self, g: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        cc = np.maximum(self.counts, cfg.count_floor)
        if cfg.eviction == "inverse_square":
            s = -2.0 * np.log(cc) + g
        elif cfg.eviction == "inverse":
            s = -np.log(cc) + g
        elif cfg.eviction == "uniform":
            s = np.asarray(g, np.float64).copy()
        else:
            s = -self.counts.copy()
        return np.where(self.filled, s, EMPTY_SCORE - np.arange(cfg.memory_size))
