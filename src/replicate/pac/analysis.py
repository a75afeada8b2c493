"""Summaries of PAC's runs and the verdict rules of notebooks 30-32 (labels from :mod:`replicate.verdicts`).

* notebook 30: :func:`pool_tier_returns` (mean return per task and tier over datasets) and :func:`tier_gap`
  (best tier minus random, per task);
* notebook 31: :func:`anchor_competence` (is every method near-expert on the expert-only anchor: the gate of
  every other verdict), :func:`minus_bc` (a method minus BC, per dataset and per seed), :func:`compare` (the
  95 % confidence-interval rule on per-seed differences), the three readings :func:`data_shows_effect_verdict`
  (does any offline-RL peer beat BC here), :func:`pac_vs_bc_verdict` (does PAC beat BC) and
  :func:`pac_among_peers_verdict` (where PAC stands), :func:`alpha_verdict` and :func:`running_mean`;
* notebook 32: :func:`scaling_verdict` (whether the sweep is large enough to fit exponents at all).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from replicate.verdicts import NOT_REPRODUCED, REPRODUCED, mean_ci

#: Seeds the notebook-31 verdicts need (fewer: the row says "not assessed").
MIN_SEEDS = 5
#: Normalised return (expert 1, random 0) a method must reach on every task of the expert-only anchor to be
#: called competent (issue 12 item 8; our threshold).
COMPETENT = 0.9
#: The offline-RL peers of notebook 31 (replicate.pac.offline_peers.method_name).
PEERS = ("TD3+BC", "IQL")
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


def minus_bc(res: pd.DataFrame, method: str, baseline: str = "BC") -> tuple[pd.Series, pd.Series]:
    """``method`` minus ``baseline`` normalised return: per dataset (mean over seeds; a Series indexed by dataset,
    sorted) and per seed (mean over datasets, paired by seed; a Series indexed by seed).

    ``res`` has one row per run with ``dataset``, ``method``, ``seed`` and ``normalised_mean``.
    """
    per_ds = res.groupby(["dataset", "method"]).normalised_mean.mean().unstack()
    per_seed = res.pivot_table(index="seed", columns="method", values="normalised_mean", aggfunc="mean")
    return per_ds[method] - per_ds[baseline], (per_seed[method] - per_seed[baseline]).dropna()


def compare(seed_diffs: Sequence[float]) -> str:
    """``"better"`` when the 95 % confidence interval (:func:`replicate.verdicts.mean_ci`) of the per-seed
    differences lies above 0, ``"worse"`` when below 0, ``"tie"`` when it contains 0; ``"n/a"`` with fewer than
    :data:`MIN_SEEDS` seeds."""
    if len(seed_diffs) < MIN_SEEDS:
        return "n/a"
    _, lo, hi = mean_ci(seed_diffs)
    return "better" if lo > 0 else "worse" if hi < 0 else "tie"


def data_shows_effect_verdict(peer_vs_bc: Mapping[str, str], bc_competent: bool) -> tuple[str, str]:
    """Reading 1, "value-based offline RL beats BC on these data" (can the data show the effect at all), from
    :func:`compare` of each peer minus BC: reproduced when some peer is ``"better"`` and the BC anchor is
    competent; not reproduced otherwise, with the reason."""
    if not bc_competent:
        return NOT_REPRODUCED, "not assessed: BC is not competent on the expert-only anchor"
    if "n/a" in peer_vs_bc.values():
        return NOT_REPRODUCED, f"not assessed (fewer than {MIN_SEEDS} seeds)"
    better = [m for m, c in peer_vs_bc.items() if c == "better"]
    if better:
        return REPRODUCED, f"{' and '.join(better)} beat BC (95 % CI above 0): the data can show the effect"
    return NOT_REPRODUCED, "no offline-RL peer beats BC: these data cannot show an advantage over BC"


def pac_vs_bc_verdict(pac_vs_bc: str, bc_competent: bool, data_shows_effect: bool) -> tuple[str, str]:
    """Reading 2, "PAC beats BC", from :func:`compare` of PAC minus BC: judged only when BC is competent on the
    expert-only anchor; reproduced when ``"better"``; otherwise not reproduced, and the reason says whether the
    data could have shown the effect (reading 1)."""
    if not bc_competent:
        return NOT_REPRODUCED, "not assessed: BC is not competent on the expert-only anchor"
    if pac_vs_bc == "n/a":
        return NOT_REPRODUCED, f"not assessed (fewer than {MIN_SEEDS} seeds)"
    if pac_vs_bc == "better":
        return REPRODUCED, "PAC - BC: 95 % CI above 0"
    what = "BC better (CI below 0)" if pac_vs_bc == "worse" else "inconclusive (CI contains 0)"
    context = ("although a peer does beat BC on these data" if data_shows_effect
               else "and no peer beats BC either: these data may not show the effect")
    return NOT_REPRODUCED, f"{what}, {context}"


def pac_among_peers_verdict(pac_vs_peer: Mapping[str, str], bc_competent: bool) -> tuple[str, str]:
    """Reading 3, "PAC is at least as good as the offline-RL peers", from :func:`compare` of PAC minus each peer:
    reproduced when no peer is better than PAC (no comparison ``"worse"``) and BC is competent on the anchor."""
    if not bc_competent:
        return NOT_REPRODUCED, "not assessed: BC is not competent on the expert-only anchor"
    if "n/a" in pac_vs_peer.values():
        return NOT_REPRODUCED, f"not assessed (fewer than {MIN_SEEDS} seeds)"
    worse = [m for m, c in pac_vs_peer.items() if c == "worse"]
    better = [m for m, c in pac_vs_peer.items() if c == "better"]
    if worse:
        return NOT_REPRODUCED, f"{' and '.join(worse)} beat(s) PAC (95 % CI)"
    return REPRODUCED, (f"PAC beats {' and '.join(better)}" if better else "PAC ties with the peers (95 % CI)")


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


def ranking(res: pd.DataFrame) -> list[tuple[str, float]]:
    """Methods by mean normalised return over datasets and seeds, best first: ``[(method, mean), ...]``."""
    means = res.groupby("method").normalised_mean.mean().sort_values(ascending=False)
    return [(str(m), float(v)) for m, v in means.items()]


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error (``std(ddof=1) / sqrt(n)``; NaN for one value)."""
    d = np.asarray(list(values), dtype=float)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return mean, se


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
