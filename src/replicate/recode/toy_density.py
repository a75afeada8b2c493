"""RECODE's Fig. 1 toy: density estimation of a growing square by the clustering memory.

The paper's Fig. 1 (Saade et al. 2023) illustrates what the discount gamma does: over 101 rounds, in
round ``t`` (0-based) 64 points are drawn uniformly from the square ``[0, 1 + sqrt(t)]^2`` and fed to the
memory; with a small gamma the atoms' counts describe only the recent, large square; with a large gamma
they keep the history, whose mass is concentrated near the origin (every round's square contains it).

The round count (101), the 64 points per round and the square of side ``1 + sqrt(t)`` are the setting of
Fig. 1 of the ICLR-2023 version (Saade et al., "Robust Exploration via Clustering-based Online Density
Estimation"), as read for our notes. That the square's corner is at the origin is our reading of the figure.
The paper gives no gamma, memory size, kappa or eta for it: those are OUR CHOICE, passed in by the caller
(notebook 10 states them).
The memory is updated by Algorithm 1 as written (``discount_per="embedding"``).

The claim checked in notebook 10 (:func:`verdict_row`): the count-weighted mean of the atoms moves towards the final
square's centre as gamma falls (for a short horizon it approaches the final centre, 5.5); the positive control
(:func:`history_control`): for gamma = 1 it is the mean of all points ever seen, ~3.85 per coordinate for the
defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from replicate import verdicts
from replicate.params import ParameterError
from replicate.recode import memory


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """The Fig. 1 stream: ``rounds`` rounds of ``points`` uniform points in ``[0, 1 + sqrt(t)]^2``."""

    rounds: int = 101
    points: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ParameterError(f"ToyConfig.rounds={self.rounds!r} must be an int >= 1 (the paper: 101)")
        if not isinstance(self.points, int) or self.points < 1:
            raise ParameterError(f"ToyConfig.points={self.points!r} must be an int >= 1 (the paper: 64)")


def square_side(t: jax.Array | int) -> jax.Array:
    """Side of round ``t``'s square: ``1 + sqrt(t)``."""
    return 1.0 + jnp.sqrt(jnp.asarray(t, jnp.float32))


def stream(cfg: ToyConfig, key: jax.Array) -> jax.Array:
    """The ``(rounds, points, 2)`` float32 stream: round ``t`` uniform on ``[0, 1 + sqrt(t)]^2``."""
    u = jax.random.uniform(key, (cfg.rounds, cfg.points, 2), jnp.float32)
    return u * square_side(jnp.arange(cfg.rounds))[:, None, None]


def run(toy: ToyConfig, mem: memory.RecodeConfig, key: jax.Array) -> dict[str, np.ndarray]:
    """Feed the stream through a fresh memory (one call per round); return atoms, counts and summaries.

    Returns ``atoms`` (filled atoms, ``(n, 2)``), ``counts`` (their discounted counts), ``weighted_mean``
    (the count-weighted mean atom, ``(2,)``) and ``final_centre`` (centre of the last round's square).
    """
    if mem.discount_per != "embedding":
        raise ParameterError("the Fig. 1 toy follows Algorithm 1: use RecodeConfig(discount_per='embedding')")
    k_stream, k_mem = jax.random.split(key)
    xs = stream(toy, k_stream)
    state, _ = memory.run_stream(mem, memory.init(mem, 2), xs, k_mem)
    filled = np.asarray(state.filled)
    atoms = np.asarray(state.atoms)[filled]
    counts = np.asarray(state.counts)[filled]
    return {
        "atoms": atoms,
        "counts": counts,
        "weighted_mean": weighted_mean(atoms, counts),
        "final_centre": np.full(2, float(square_side(toy.rounds - 1)) / 2.0),
    }


def weighted_mean(atoms: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Count-weighted mean of the atoms, ``sum_i c_i f_i / sum_i c_i``."""
    atoms = np.asarray(atoms, np.float64)
    counts = np.asarray(counts, np.float64)
    if atoms.ndim != 2 or counts.shape != atoms.shape[:1]:
        raise ValueError(f"atoms {atoms.shape} and counts {counts.shape}: expected (n, d) and (n,)")
    if counts.sum() <= 0:
        raise ValueError("counts sum to 0: no mass to average")
    return (counts[:, None] * atoms).sum(0) / counts.sum()


def history_mean(toy: ToyConfig) -> float:
    """Expected per-coordinate mean of all points ever drawn: the gamma = 1 limit, ``mean_t (1 + sqrt t) / 2``."""
    t = np.arange(toy.rounds)
    return float(np.mean((1.0 + np.sqrt(t)) / 2.0))


def history_control(no_discount: Sequence[float], history: float, rel_tol: float = 0.15) -> dict[str, Any]:
    """Positive control of the Fig. 1 row: without discount (gamma = 1) the memory recovers the known density,
    its count-weighted mean coordinate (seed mean of ``no_discount``) within ``rel_tol`` (relative; our choice) of
    the mean of every point drawn (:func:`history_mean`). ``value``: the relative error; ``threshold``: ``rel_tol``."""
    x = np.asarray(no_discount, np.float64)
    if x.ndim != 1 or x.size < 1 or not np.all(np.isfinite(x)) or not history > 0:
        raise ValueError(f"history_control needs finite per-seed means and history > 0; got {x.tolist()}, {history}")
    err = abs(float(x.mean()) - history) / history
    return verdicts.control(f"γ = 1 recovers the history's mean coordinate ({history:.2f}) within {rel_tol:.0%}",
                            err <= rel_tol, err, rel_tol)


def verdict_row(means: Mapping[float, Sequence[float]], history: float, figure: str,
                rel_tol: float = 0.15) -> dict[str, Any]:
    """The Fig. 1 row: the smallest gamma's count-weighted mean coordinate beats (is larger than: nearer the recent,
    large square) every larger gamma's, by the shared seed-paired rule (:func:`replicate.verdicts.comparison_row`;
    ``means`` maps each gamma to one value per seed, the same streams for every gamma), with
    :func:`history_control` (gamma = 1 must be among the settings) as its positive control."""
    if len(means) < 2 or 1.0 not in means:
        raise ValueError(f"the Fig. 1 row compares at least two gammas, 1.0 among them; got {sorted(means)}")
    gammas = sorted(means)
    arms = {f"γ={g:g}": means[g] for g in gammas}
    names = list(arms)
    return verdicts.comparison_row(
        "Fig. 1 toy: a smaller γ moves the count-weighted mean of the atoms towards the recent (large) square",
        "ICLR'23 Fig. 1 (qualitative: atoms drawn with size ∝ count for three discounts; no γ or number given)",
        figure, arms, names[0], names[1:], metric="count-weighted mean coordinate of the atoms",
        controls=[history_control(means[1.0], history, rel_tol)])
