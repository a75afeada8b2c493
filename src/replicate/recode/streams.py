"""Non-stationary streams with known ground truth for checking density estimators.

A grid world of ``size x size`` cells, 4 actions (up, down, left, right; walls at the border).
``A`` actors run episodes of ``episode_len`` steps from a fixed start cell. Their behaviour shifts
over ``n_phases`` phases: in phase ``p`` each step moves toward the phase's goal cell with
probability ``bias`` and uniformly at random otherwise, so the visitation distribution drifts
across the grid over thousands of episodes (the kind of non-stationarity an exploring agent
produces). Cells are observed through a fixed random embedding: random Fourier features of the
cell's coordinates (nearby cells have nearby embeddings) plus fresh Gaussian noise at every
observation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

MOVES = np.array([[0, 1], [0, -1], [-1, 0], [1, 0]])  # up, down, left, right


@dataclasses.dataclass(frozen=True)
class GridStream:
    size: int = 20
    n_actors: int = 16
    episode_len: int = 50
    n_episodes: int = 2000  # per actor
    n_phases: int = 4
    bias: float = 0.6
    embed_dim: int = 32
    length_scale: float = 1.5  # of the random Fourier features, in cells
    noise: float = 0.05  # std of the observation noise, relative to the embedding's scale
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 2 or self.n_actors < 1 or self.episode_len < 1 or self.n_episodes < 1 or self.n_phases < 1:
            raise ValueError(f"GridStream: sizes must be positive (size >= 2), got {self}")
        if not 0 <= self.bias <= 1:
            raise ValueError(f"GridStream: bias={self.bias} must be in [0, 1]")

    @property
    def n_cells(self) -> int:
        return self.size * self.size

    def goals(self) -> np.ndarray:
        """Goal cell (x, y) of each phase: around the grid, far from the start."""
        s = self.size - 1
        ring = np.array([[s, s], [s, 0], [0, s], [s // 2, s], [s, s // 2]])
        return ring[np.arange(self.n_phases) % len(ring)]

    def cell_features(self) -> np.ndarray:
        """(n_cells, embed_dim) noiseless embedding of every cell (fixed random Fourier features)."""
        rng = np.random.default_rng([self.seed, 1])
        w = rng.normal(size=(2, self.embed_dim)) / self.length_scale
        b = rng.uniform(0, 2 * np.pi, size=self.embed_dim)
        xy = np.stack(np.meshgrid(np.arange(self.size), np.arange(self.size), indexing="ij"), -1).reshape(-1, 2)
        return (np.sqrt(2.0) * np.cos(xy @ w + b)).astype(np.float32)

    def trajectories(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell ids (n_episodes, episode_len + 1, n_actors) and actions (n_episodes, episode_len, n_actors)."""
        rng = np.random.default_rng([self.seed, 2])
        E, L, A = self.n_episodes, self.episode_len, self.n_actors
        cells = np.zeros((E, L + 1, A), np.int32)
        acts = np.zeros((E, L, A), np.int32)
        goals = self.goals()
        start = np.zeros(2, int)
        for ep in range(E):
            goal = goals[min(ep * self.n_phases // E, self.n_phases - 1)]
            pos = np.tile(start, (A, 1))
            cells[ep, 0] = pos[:, 0] * self.size + pos[:, 1]
            for t in range(L):
                delta = goal[None] - pos
                # greedy move toward the goal along a random axis with a gap, else random
                axis = np.where(rng.random(A) < np.abs(delta[:, 0]) / np.maximum(np.abs(delta).sum(1), 1), 0, 1)
                greedy = np.where(axis == 0, np.where(delta[:, 0] > 0, 3, 2), np.where(delta[:, 1] > 0, 0, 1))
                at_goal = np.abs(delta).sum(1) == 0
                rand = rng.integers(0, 4, A)
                a = np.where((rng.random(A) < self.bias) & ~at_goal, greedy, rand)
                pos = np.clip(pos + MOVES[a], 0, self.size - 1)
                acts[ep, t] = a
                cells[ep, t + 1] = pos[:, 0] * self.size + pos[:, 1]
        return cells, acts

    def observe(self, cell_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy embeddings of cells: features + N(0, noise^2) per coordinate."""
        f = self.cell_features()[cell_ids]
        return (f + rng.normal(size=f.shape).astype(np.float32) * self.noise).astype(np.float32)


def discounted_counts(cell_ids: np.ndarray, n_cells: int, gamma: float, per: str = "call") -> np.ndarray:
    """Ground-truth counts after a (T, B) stream of cell ids, discounted like the memory.

    ``per="call"``: counts *= gamma once per row (batch), then + visits; ``"embedding"``: once per id.
    """
    counts = np.zeros(n_cells)
    for row in np.asarray(cell_ids):
        if per == "embedding":
            for c in row:
                counts *= gamma
                counts[c] += 1
        else:
            counts *= gamma
            np.add.at(counts, row, 1.0)
    return counts
