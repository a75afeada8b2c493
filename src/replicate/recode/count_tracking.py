"""Analysis of notebook 10's count-tracking runs: RECODE's counts vs the truth, memory ablations, verdict rules.

* :func:`final_mean` / :func:`final_std` / :func:`fmt_final`: the seed mean / spread of the final rank
  correlation of an ``(S, P)`` correlation array (:func:`replicate.recode.experiments.correlations`);
* :func:`ablation_grid` and :func:`ablation_sweep`: the memory ablations (one hyper-parameter of the
  configuration changed at a time), summarised by :func:`ablation_means`, :func:`ablation_spread`,
  :func:`ablation_summary`, :func:`ablation_table` and labelled by :func:`ablation_label`;
* the verdict rules :func:`tracking_verdict`, :func:`forgetting_verdict`, :func:`ordering_verdict`,
  :func:`eviction_verdict` and :func:`rivals_verdict` (paired by seed, :func:`paired_better`), returning the
  labels of :mod:`replicate.verdicts`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import numpy as np

from replicate import verdicts
from replicate.recode import experiments


def final_mean(rho: np.ndarray) -> float:
    """Mean over seeds of the last evaluation point of an ``(S, P)`` correlation array."""
    return float(np.mean(rho[:, -1]))


def final_std(rho: np.ndarray) -> float:
    """Spread (population std) over seeds of the last evaluation point of an ``(S, P)`` array."""
    return float(np.std(rho[:, -1]))


def fmt_final(rho: np.ndarray) -> str:
    """``"mean ± std"`` over seeds of the final correlation, 3 decimals."""
    return f"{rho[:, -1].mean():.3f} ± {rho[:, -1].std():.3f}"


def ablation_grid(cfg, *, evictions: Sequence[str], gammas: Sequence[float], memory_sizes: Sequence[int],
                  etas: Sequence[float], updates: Sequence[str] = ()) -> dict[str, list]:
    """The values each ablation runs: the removal rules as given; for ``gamma``, ``memory_size`` and
    ``eta`` the configuration's own value plus the extra ones, sorted and without duplicates; with ``updates``
    (batch update rules, :data:`replicate.recode.memory.UPDATE_RULES`), an ``update`` ablation: the
    configuration's own rule first, then the others."""
    grid = {"eviction": list(evictions),
            "gamma": sorted(set([cfg.gamma] + list(gammas))),
            "memory_size": sorted(set([cfg.memory_size] + list(memory_sizes))),
            "eta": sorted(set([cfg.eta] + list(etas)))}
    if updates:
        grid["update"] = [cfg.update] + [u for u in dict.fromkeys(updates) if u != cfg.update]
    return grid


def ablation_sweep(cfg, grid: Mapping[str, Sequence], stream: experiments.Stream, points: Sequence[int], key,
                   truth_cum: np.ndarray, known: Mapping[Any, tuple[np.ndarray, np.ndarray]] | None = None,
                   units=None) -> list[dict]:
    """Run RECODE once per ablated configuration (``cfg`` with one field of ``grid`` changed) to the
    last evaluation point and rank-correlate its counts with the truth.

    ``known`` maps configurations already run to their final ``(N, nearest atom)`` counts, each
    ``(S, 1, n_cells)`` (the main run), which are reused instead of re-running them; configurations
    that repeat within the grid run once. Returns one row per value: ``ablation``, ``value`` and the
    ``(S,)`` final Spearman correlations ``rho_atom`` and ``rho_N`` (vs the truth discounted by the
    configuration's own gamma, per embedding or per call as its ``discount_per``)
    and ``rho_atom_cum`` (nearest atom vs ``truth_cum[-1:]``, the final
    cumulative counts). ``units`` (a :class:`replicate.resumable.Units`): each configuration's run is a unit
    of work (reused after an interruption).
    """
    runs = dict(known or {})
    truths: dict[tuple, np.ndarray] = {}
    last = list(points)[-1:]
    rows = []
    for name, values in grid.items():
        for v in values:
            c = dataclasses.replace(cfg, **{name: v})
            if c not in runs:
                if units is None:
                    n_count, atom, _ = experiments.run_recode(c, stream, last, key)
                else:
                    inputs = {"cfg": c, "stream": stream.gs, "seeds": stream.seeds, "points": last,
                              "key": np.asarray(key)}
                    n_count, atom = units.run(f"ablation-{name}-{v}", inputs,
                                              functools.partial(_final_counts, c, stream, last, key))
                runs[c] = (n_count, atom)
            n_count, atom = runs[c]
            if (c.gamma, c.discount_per) not in truths:
                truths[(c.gamma, c.discount_per)] = experiments.true_counts(stream.cells, stream.gs.n_cells, c.gamma,
                                                                            last, per=c.discount_per)
            truth = truths[(c.gamma, c.discount_per)]
            rows.append({"ablation": name, "value": v,
                         "rho_atom": experiments.correlations(atom, truth)[:, -1],
                         "rho_N": experiments.correlations(n_count, truth)[:, -1],
                         "rho_atom_cum": experiments.correlations(atom, truth_cum[-1:])[:, -1]})
    return rows


def _final_counts(cfg, stream, points, key):
    n_count, atom, _ = experiments.run_recode(cfg, stream, points, key)
    return n_count, atom


def ablation_means(rows: Sequence[Mapping], ablation: str, column: str = "rho_atom") -> dict:
    """``{value: seed mean of column}`` for the rows of one ablation, in row order."""
    return {r["value"]: float(r[column].mean()) for r in rows if r["ablation"] == ablation}


def ablation_spread(rows: Sequence[Mapping], ablation: str, column: str = "rho_atom") -> float:
    """Largest seed std of ``column`` over the rows of one ablation (0 when there are none)."""
    return max((float(r[column].std()) for r in rows if r["ablation"] == ablation), default=0.0)


def update_rule_gap(rows: Sequence[Mapping], base: str) -> dict[str, float]:
    """``{rule: largest |difference|}`` of the seed-mean final correlations (nearest atom and ``N``) between each
    batch update rule of the ``update`` ablation and the ``base`` rule; ``{}`` when the ablation did not run."""
    means = {c: ablation_means(rows, "update", c) for c in ("rho_atom", "rho_N")}
    if base not in means["rho_atom"]:
        return {}
    return {rule: max(abs(means[c][rule] - means[c][base]) for c in means)
            for rule in means["rho_atom"] if rule != base}


def ablation_summary(rows: Sequence[Mapping], column: str = "rho_atom") -> dict[str, float]:
    """``{"ablation=value": seed mean of column}`` over every row (the metrics' legacy key)."""
    return {f"{r['ablation']}={r['value']}": float(r[column].mean()) for r in rows}


def ablation_table(rows: Sequence[Mapping]):
    """The ablation rows as a display DataFrame (mean [min, max] over seeds)."""
    import pandas as pd

    return pd.DataFrame([{"ablation": r["ablation"], "value": r["value"],
                          "ρ nearest atom (vs own discounted truth)":
                              f"{r['rho_atom'].mean():.3f} [{r['rho_atom'].min():.3f}, {r['rho_atom'].max():.3f}]",
                          "ρ N": f"{r['rho_N'].mean():.3f}",
                          "ρ nearest atom vs cumulative": f"{r['rho_atom_cum'].mean():.3f}"}
                         for r in rows])


def ablation_label(value) -> str:
    """Tick label of an ablation value: the removal rules as the paper writes them (1/c², 1/c)."""
    return str(value).replace("inverse_square", "1/c²").replace("inverse", "1/c")


def tracking_verdict(rho_n: float, rho_atom: float, threshold: float = 0.8) -> str:
    """Count tracking: reproduced when ``N`` reaches ``threshold``, partly when only the nearest atom does."""
    if rho_n >= threshold:
        return verdicts.REPRODUCED
    return verdicts.PARTLY if rho_atom >= threshold else verdicts.NOT_REPRODUCED


def forgetting_verdict(rho_episodic: float, rho_long_term: float, gap: float = 0.2) -> str:
    """The episodic memory forgets: its correlation is at least ``gap`` below the long-term one."""
    return verdicts.REPRODUCED if rho_episodic < rho_long_term - gap else verdicts.NOT_REPRODUCED


def ordering_verdict(pairs: Sequence[tuple[float, float]], spreads: Sequence[float]) -> str:
    """An ordering between settings: each pair is ``(expected higher, expected lower)``.

    Reproduced when every difference exceeds its seed spread, partly when every pair only points the
    right way, otherwise not reproduced.
    """
    if len(pairs) != len(spreads) or not pairs:
        raise ValueError(f"need one spread per pair and at least one pair, got {len(pairs)} and {len(spreads)}")
    if all(hi - lo > s for (hi, lo), s in zip(pairs, spreads)):
        return verdicts.REPRODUCED
    return verdicts.PARTLY if all(hi > lo for hi, lo in pairs) else verdicts.NOT_REPRODUCED


def eviction_verdict(scores: Mapping[str, float], spread: float, rule: str = "inverse_square") -> str:
    """Is removal ``rule`` the best? ``scores`` maps each rule to its seed-mean correlation.

    Reproduced when ``rule`` is the best by more than ``spread`` (the seed std); partly when it is
    within ``spread`` of the best; otherwise (or with fewer than two rules to rank) not reproduced.
    """
    if len(scores) < 2:
        return verdicts.NOT_REPRODUCED
    best = max(scores, key=scores.get)
    if best == rule and scores[rule] - sorted(scores.values())[-2] > spread:
        return verdicts.REPRODUCED
    return verdicts.PARTLY if scores.get(rule, -1) >= max(scores.values()) - spread else verdicts.NOT_REPRODUCED


def paired_better(ours: np.ndarray, rival: np.ndarray, level: float = 0.95) -> bool:
    """Is ``ours`` better than ``rival`` over the same seeds? The Student-t interval of the per-seed
    differences lies above 0 (one seed: the difference is positive)."""
    m, lo, _ = verdicts.mean_ci(np.asarray(ours, np.float64) - np.asarray(rival, np.float64), level)
    return bool(lo > 0) if np.isfinite(lo) else bool(m > 0)


def rivals_verdict(ours: np.ndarray, rivals: Mapping[str, np.ndarray]) -> tuple[str, list[str]]:
    """``ours`` against every rival (``{name: (S,) values}``, paired by seed, :func:`paired_better`): the label
    (all beaten: reproduced; some: partly; none: not reproduced) and the names beaten."""
    beaten = [name for name, v in rivals.items() if paired_better(ours, v)]
    return verdicts.from_wins(len(beaten), len(rivals)), beaten
