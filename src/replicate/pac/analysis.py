"""Summaries of PAC's runs and the verdict rules of notebooks 30-32 (labels and rules from :mod:`replicate.verdicts`).

* notebook 30: :func:`pool_tier_returns` (mean return per task and tier over datasets) and :func:`tier_gap`
  (best tier minus random, per task);
* notebook 31: :func:`mix_returns` (what all episodes and the best ones offer to imitate), :func:`anchor_competence`
  (is a method near-expert on expert-only data), the per-seed scores (:func:`score_matrix`, :func:`seed_scores`)
  that :func:`replicate.verdicts.comparison_row` judges, the controls (:func:`filtered_bc_control`: filtered BC beats
  BC; :func:`competence_control`; :func:`convergence_control`), the rliable aggregates over tasks
  (:func:`aggregate_table`), :func:`ci_table` and :func:`sweep_table`;
* notebook 32: :func:`uniform_nll` and :func:`mark_trained` (which points are trained) and :func:`scaling_row` (the
  exponents of BC and PAC against a tolerance, with its controls).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from replicate.pac import offline_data
from replicate.verdicts import (
    INCONCLUSIVE,
    control,
    iqm_ci,
    mean_ci,
    paired_interval,
    probability_of_improvement,
    row,
    threshold_row,
)

#: Normalised return (expert 1, random 0) a method must reach on every task of the expert-only anchor to be
#: called competent (issue 12 item 8; our threshold).
COMPETENT = 0.9
#: The offline-RL peers of notebook 31 (replicate.pac.offline_peers.method_name).
PEERS = ("TD3+BC", "IQL")


# ----------------------------------------------------------------------------- notebook 30


def pool_tier_returns(tiers: pd.DataFrame) -> pd.DataFrame:
    """Mean return of each (task, tier), pooled over datasets, weighted by episodes.

    ``tiers`` has one row per (dataset, task, tier) with ``return_mean`` and ``episodes`` (the rows of
    :func:`replicate.pac.offline_data.tier_summary`). Returns columns ``task, tier, return, episodes`` in
    order of first appearance.
    """
    out = []
    for (task, tier), g in tiers.groupby(["task", "tier"], sort=False):
        out.append({"task": task, "tier": tier, "return": np.average(g.return_mean, weights=g.episodes),
                    "episodes": g.episodes.sum()})
    return pd.DataFrame(out, columns=["task", "tier", "return", "episodes"])


def tier_gap(pooled: pd.DataFrame, tasks: Sequence[str], best: str, worst: str = "random") -> dict[str, float]:
    """Per task: pooled return of tier ``best`` minus that of tier ``worst`` (from :func:`pool_tier_returns`)."""

    def ret(task: str, tier: str) -> float:
        return pooled[(pooled.task == task) & (pooled.tier == tier)]["return"].iloc[0]

    return {task: float(ret(task, best) - ret(task, worst)) for task in tasks}


# ----------------------------------------------------------------------------- notebook 31


def anchor_competence(anchor: pd.DataFrame, threshold: float = COMPETENT) -> pd.DataFrame:
    """Per method, the mean over seeds of the normalised return of every task on the expert-only anchor, its
    minimum over tasks, and ``competent`` (that minimum >= ``threshold``).

    ``anchor`` has one row per run with ``method``, ``seed`` and ``norm/<task>`` columns. Returns one row per
    method (index ``method``): the ``norm/<task>`` means, ``worst_task`` (its name), ``worst`` and ``competent``.
    """
    cols = [c for c in anchor.columns if c.startswith("norm/")]
    out = anchor.groupby("method", sort=False)[cols].mean()
    out["worst_task"] = out[cols].idxmin(axis=1).str.removeprefix("norm/")
    out["worst"] = out[cols].min(axis=1)
    out["competent"] = out["worst"] >= threshold
    return out


def ci_table(res: pd.DataFrame, by: Sequence[str] = ("dataset", "method"), value: str = "normalised_mean",
             order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and 95 % confidence interval over seeds (:func:`replicate.verdicts.mean_ci`) of ``value`` per group
    of ``by``: columns ``*by, mean, lo, hi, seeds`` (``lo``/``hi`` NaN for one seed). With ``order`` the rows
    of the last grouping column follow it."""
    rows = []
    for keys, g in res.groupby(list(by), sort=True):
        mean, lo, hi = mean_ci(g[value])
        rows.append({**dict(zip(by, keys)), "mean": mean, "lo": lo, "hi": hi, "seeds": int(g.seed.nunique())})
    out = pd.DataFrame(rows)
    if order is not None:
        rank = {m: i for i, m in enumerate(order)}
        out = out.sort_values(list(by[:-1]) + [by[-1]], key=lambda c: c.map(rank) if c.name == by[-1] else c)
    return out.reset_index(drop=True)



def mix_returns(per_task: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, Any]]],
                fraction: float) -> pd.DataFrame:
    """What the data offer to imitate, per task: the mean normalised return (expert tier 1, random 0) of *all* its
    episodes (what BC on all data reproduces at best: it imitates the data's average behaviour) and of the
    ``fraction`` of episodes with the highest return (filtered BC's data), and the expert share of the mix.

    ``per_task`` is :func:`replicate.pac.offline_data.read_datasets`' list. Columns ``task, episodes,
    expert_share, all_episodes, top_episodes``."""
    rows = []
    for arrays, meta in per_task:
        rets = np.asarray(arrays["episode_returns"], np.float64)
        norm = offline_data.normalised_return(rets, meta["expert_return"], meta["random_return"])
        k = max(1, int(round(fraction * len(rets))))
        best = len(meta["quality_names"]) - 1
        rows.append({"task": meta["task"], "episodes": len(rets),
                     "expert_share": float(np.mean(np.asarray(arrays["episode_quality"]) == best)),
                     "all_episodes": float(norm.mean()), "top_episodes": float(np.sort(norm)[::-1][:k].mean())})
    return pd.DataFrame(rows)


def score_matrix(res: pd.DataFrame, method: str, tasks: Sequence[str], seeds: Sequence[int]) -> np.ndarray:
    """``(seeds, tasks)`` normalised returns of ``method``'s runs (``norm/<task>`` columns), rows in ``seeds`` order
    (rliable's score matrix; a missing run raises)."""
    sub = res[res.method == method].set_index("seed")
    missing = sorted(set(seeds) - set(sub.index))
    if missing:
        raise ValueError(f"{method}: no run for seeds {missing}")
    return sub.loc[list(seeds), [f"norm/{t}" for t in tasks]].to_numpy(np.float64)


def seed_scores(res: pd.DataFrame, methods: Sequence[str], tasks: Sequence[str],
                seeds: Sequence[int]) -> dict[str, list[float]]:
    """The pre-registered per-seed score of notebook 31: final normalised return, mean over ``tasks``, per seed in
    ``seeds`` order, for every method (the ``arms`` of :func:`replicate.verdicts.comparison_row`)."""
    return {m: score_matrix(res, m, tasks, seeds).mean(axis=1).tolist() for m in methods}


def filtered_bc_control(arms: Mapping[str, Sequence[float]], filtered: str = "filtered BC",
                        bc: str = "BC") -> dict[str, Any]:
    """Notebook 31's positive control: BC on the best episodes beats BC on all of them, i.e. the seed-paired 95 %
    interval of ``filtered - bc`` lies above 0 (:func:`replicate.verdicts.paired_interval`). Value: the interval's
    lower end (NaN with one seed: no interval, the control fails); threshold 0."""
    _, lo, _ = paired_interval(arms[filtered], arms[bc])
    return control(f"{filtered} beats {bc} on all data (seed-paired 95% interval above 0)",
                   bool(np.isfinite(lo) and lo > 0), lo, 0.0)


def competence_control(competence: pd.DataFrame, method: str, threshold: float = COMPETENT) -> dict[str, Any]:
    """``method`` learns a near-expert policy from expert-only data: its worst task's normalised return on the anchor
    (:func:`anchor_competence`) is at least ``threshold``."""
    worst = float(competence.loc[method, "worst"])
    return control(f"{method} competent on expert-only data (worst task >= {threshold})", worst >= threshold,
                   worst, threshold)


def convergence_control(flat: Mapping[str, bool]) -> dict[str, Any]:
    """Every method's learning curve on the mixed data flattened before the cap (:mod:`replicate.pac.convergence`);
    value: how many did, threshold: all of them."""
    n = sum(bool(v) for v in flat.values())
    names = ", ".join(m for m, v in flat.items() if not v)
    return control("learning curves flattened before the cap" + (f" (not: {names})" if names else ""),
                   n == len(flat), n, len(flat))


def aggregate_table(res: pd.DataFrame, methods: Sequence[str], tasks: Sequence[str], seeds: Sequence[int],
                    baseline: str = "BC", reps: int = 2000) -> pd.DataFrame:
    """Aggregates over tasks with rliable's estimators (:func:`replicate.verdicts.iqm_ci`,
    :func:`replicate.verdicts.probability_of_improvement`; stratified bootstrap, 95 %): per method the interquartile
    mean of the ``(seeds, tasks)`` normalised returns and P(method > ``baseline``), each with its interval."""
    base = score_matrix(res, baseline, tasks, seeds)
    rows = []
    for m in methods:
        x = score_matrix(res, m, tasks, seeds)
        iqm, lo, hi = iqm_ci(x, reps=reps)
        row = {"method": m, "iqm": iqm, "iqm_lo": lo, "iqm_hi": hi}
        if m != baseline:
            p, plo, phi = probability_of_improvement(x, base, reps=reps)
            row.update({f"p_beats_{baseline}": p, "p_lo": plo, "p_hi": phi})
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_table(arms: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Mean and 95 % t-interval over seeds of each arm (:func:`replicate.verdicts.mean_ci`): ``arm, mean, lo, hi,
    seeds``."""
    rows = []
    for name, v in arms.items():
        mean, lo, hi = mean_ci(v)
        rows.append({"arm": name, "mean": mean, "lo": lo, "hi": hi, "seeds": len(v)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- notebook 32

#: A point of the isoFLOP sweep counts as trained when its held-out loss is at least this fraction below the
#: uniform policy's (our threshold); untrained points are dropped from the fits and reported.
TRAINED_BELOW = 0.1
#: Budgets whose compute-optimal size must lie inside the size grid (per method and seed) for the scaling row.
MIN_INTERIOR = 2
#: "Similar scaling": |a_PAC - a_BC| of the exponents of N_opt ~ C^a below this (our tolerance; Chinchilla's and
#: Kaplan's exponents for language models, 0.50 and 0.73, differ by about this much).
EXPONENT_TOL = 0.25


def uniform_nll(action_mask: np.ndarray, num_bins: int) -> float:
    """Held-out BC NLL of the uniform policy over ``num_bins`` bins per real action dimension: mean over rows of
    ``(real dims) x log(num_bins)`` (nats per transition, the unit of :func:`replicate.pac.losses.bc_loss`)."""
    return float(np.mean(np.asarray(action_mask).sum(axis=1)) * np.log(num_bins))


def mark_trained(res: pd.DataFrame, loss: str, uniform: float, below: float = TRAINED_BELOW) -> pd.Series:
    """Whether each run's ``loss`` is at least ``below`` x ``uniform`` under the uniform policy's loss."""
    return res[loss] <= (1.0 - below) * uniform


def scaling_row(claim: str, paper: str, figure: str, exponents: Mapping[str, Sequence[float]],
                interior: Mapping[str, Sequence[int]], num_budgets: int, dropped: int, points: int,
                tol: float = EXPONENT_TOL, min_interior: int = MIN_INTERIOR) -> dict[str, Any]:
    """The verdict row of notebook 32's scaling claim ("offline AC follows similar scaling laws as BC").

    ``exponents[m]``: per seed (same order for ``"BC"`` and ``"PAC"``), the exponent ``a`` of ``N_opt ~ C^a`` fitted
    to that seed's compute-optimal sizes inside the grid (NaN when fewer than 2 were); ``interior[m]``: per seed,
    how many of the ``num_budgets`` budgets had their optimum inside the size grid. Rule: the per-seed
    ``|a_PAC - a_BC|`` against ``tol`` (:func:`replicate.verdicts.threshold_row`, lower is better): interval wholly
    below: reproduced; estimate below: partly; estimate above: not reproduced. Controls (inconclusive when one
    fails): every seed of each method has its optimum inside the grid at >= ``min_interior`` budgets; BC's optimal
    size grows with compute (``a_BC > 0`` in every seed: the set-up can show a scaling law for supervised learning);
    fewer than half of the ``points`` were dropped as untrained (``dropped``)."""
    controls = [control(f"{m}: compute-optimal size inside the size grid at >= {min_interior} of {num_budgets} "
                        "budgets (every seed)", min(interior[m]) >= min_interior, min(interior[m]), min_interior)
                for m in ("BC", "PAC")]
    a_bc = np.asarray(exponents["BC"], np.float64)
    a_pac = np.asarray(exponents["PAC"], np.float64)
    grows = bool(np.all(np.isfinite(a_bc)) and np.all(a_bc > 0))
    controls.append(control("BC's compute-optimal size grows with compute (a_BC > 0 in every seed)", grows,
                            float(np.nanmin(a_bc)) if np.isfinite(a_bc).any() else float("nan"), 0.0))
    controls.append(control("trained points: fewer than half dropped (held-out loss not clearly below uniform)",
                            dropped < points / 2, dropped, points / 2))
    rule = (f"|a_PAC - a_BC| per seed (a: exponent of N_opt ~ C^a, from the isoFLOP optima inside the grid) against "
            f"{tol}: interval wholly below: reproduced; estimate below: partly; above: not reproduced; a failed "
            "control or no interval: inconclusive")
    fmt = f"a_BC per seed {np.round(a_bc, 2).tolist()}, a_PAC per seed {np.round(a_pac, 2).tolist()}; "
    diff = np.abs(a_pac - a_bc)
    if not np.all(np.isfinite(diff)):
        return row(claim, paper, fmt + "an exponent could not be fitted", INCONCLUSIVE, figure, controls=controls,
                   rule=rule)
    return threshold_row(claim, paper, figure, diff.tolist(), tol, metric="|a_PAC - a_BC|", higher_is_better=False,
                         controls=controls, rule=rule, ours_prefix=fmt)
