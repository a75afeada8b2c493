"""Summaries of PAC's runs and the verdict rules of notebooks 30-32 (labels from :mod:`replicate.verdicts`).

* notebook 30: :func:`pool_tier_returns` (mean return per task and tier over datasets) and :func:`tier_gap`
  (best tier minus random, per task);
* notebook 31: :func:`pac_minus_bc` (PAC - BC per dataset and per seed), :func:`pac_vs_bc_verdict` (the
  2-standard-error rule over >= 3 seeds), :func:`alpha_verdict` and :func:`running_mean` (training curves);
* notebook 32: :func:`scaling_verdict` (whether the sweep is large enough to fit exponents at all).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from replicate.verdicts import NOT_REPRODUCED, REPRODUCED

#: Seeds the PAC-vs-BC verdict needs (fewer: the row says "not assessed").
MIN_SEEDS = 3
#: Model sizes and FLOP budgets the scaling verdict needs before exponents are fitted for the record.
MIN_SIZES = MIN_BUDGETS = 3


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


def pac_minus_bc(res: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """PAC minus BC normalised return: per dataset (mean over seeds; a Series indexed by dataset, sorted)
    and per seed (mean over datasets; an array in seed order).

    ``res`` has one row per run with ``dataset``, ``method`` (``"BC"``/``"PAC"``), ``seed`` and
    ``normalised_mean``.
    """
    per_ds = res.groupby(["dataset", "method"]).normalised_mean.mean().unstack()
    per_seed = res.pivot_table(index="seed", columns="method", values="normalised_mean", aggfunc="mean")
    return per_ds["PAC"] - per_ds["BC"], (per_seed["PAC"] - per_seed["BC"]).to_numpy()


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error (``std(ddof=1) / sqrt(n)``; NaN for one value)."""
    d = np.asarray(list(values), dtype=float)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return mean, se


def pac_vs_bc_verdict(seed_diffs: Sequence[float]) -> tuple[str, str]:
    """Label of "PAC beats BC" from the per-seed differences PAC - BC, and why.

    Rule: with fewer than :data:`MIN_SEEDS` seeds, not assessed (not reproduced at this scale); else
    reproduced when the mean difference exceeds 2 standard errors, not reproduced when it is below -2
    standard errors (BC better) or within them (inconclusive).
    """
    n = len(seed_diffs)
    mean, se = mean_se(seed_diffs)
    if n < MIN_SEEDS:
        return NOT_REPRODUCED, f"not assessed ({n} seed(s); the verdict needs >= {MIN_SEEDS})"
    if mean > 2 * se:
        return REPRODUCED, "difference above 2 s.e."
    if mean < -2 * se:
        return NOT_REPRODUCED, "BC better (difference below -2 s.e.)"
    return NOT_REPRODUCED, "inconclusive (difference within 2 s.e.)"


def alpha_verdict(best_alpha: float) -> str:
    """Label of "some Q-based improvement (alpha < 1) beats alpha = 1": reproduced when the best alpha of the
    sweep is below 1."""
    return REPRODUCED if best_alpha < 1 else NOT_REPRODUCED


def running_mean(x: Sequence[float], window: int) -> np.ndarray:
    """Mean over each full window of ``window`` consecutive values (length ``len(x) - window + 1``)."""
    return np.convolve(np.asarray(x), np.ones(window) / window, mode="valid")


# ----------------------------------------------------------------------------- notebook 32


def scaling_verdict(num_sizes: int, num_budgets: int) -> tuple[str, str]:
    """Label of "offline AC follows power-law scaling like BC", and why.

    The rule never credits the claim at our scale: with fewer than :data:`MIN_SIZES` sizes or
    :data:`MIN_BUDGETS` budgets the sweep is too small to fit (not assessed); with enough, exponents are
    fitted at tiny scale (10^4-10^6 parameters) for the record, to compare with caution.
    """
    if num_sizes >= MIN_SIZES and num_budgets >= MIN_BUDGETS:
        return NOT_REPRODUCED, "fitted at tiny scale (10^4-10^6 params): compare exponents with caution"
    return NOT_REPRODUCED, "not assessed: too few sizes/budgets at this profile"


def fmt_exponent(fit: Mapping[str, float]) -> str:
    """``fit["a"]`` with two decimals, or ``"n/a"`` when no exponent was fitted."""
    return f"{fit['a']:.2f}" if "a" in fit else "n/a"
