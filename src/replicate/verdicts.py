"""Verdicts as data: the rows every paper notebook writes to ``metrics["verdicts"]``, and the rules behind them.

A verdict row compares one claim of a paper with what we measured::

    {"claim": "...", "paper": "the paper's number or statement", "ours": "our number",
     "verdict": "reproduced" | "partly" | "not reproduced at this scale" | "inconclusive",
     "figure": "figures/....png",
     # optional, so anyone can recompute the verdict:
     "evidence": {...}, "controls": [{"name", "passed", "value", "threshold"}],
     "rule": "the rule, its tolerance and why"}

The four labels: **reproduced**; **partly** (the evidence points the claim's way but not all of it holds, or not
beyond the interval); **not reproduced at this scale** (the set-up could have shown the effect and did not);
**inconclusive** (a positive control failed, or the set-up cannot separate the arms: too few seeds, no interval).

Each notebook states its verdict *rule* in narration before the results cell and computes the label with the
rules below (never by hand). ``python -m replicate.verdicts readme`` regenerates the README's results table and
verdict counts from the committed metrics files (``tests/test_verdicts.py`` fails when the README is stale, and
recomputes every committed row that carries evidence); ``dvc metrics show`` lists every verdict.

The rules, one implementation each:

* :func:`paired_interval` / :func:`beats`: "A is better than B" on a pre-registered per-seed score, by the
  seed-paired Student-t interval of the differences (above 0: A beats B; ties and intervals containing 0 beat
  nobody; one seed gives no interval). :func:`compare` labels "A beats every rival" from it and the positive
  controls, and returns the evidence to store (:func:`comparison_row` builds the whole row);
* :func:`threshold` (:func:`threshold_row`): a value (per seed, or one value with a stated margin) against a
  threshold;
* :func:`match` (:func:`match_row`): our number against the paper's, within the paper's reading error, with the
  paper's direction of effect;
* :func:`iqm_ci` and :func:`probability_of_improvement`: aggregates over tasks or sizes with rliable's
  estimators (Agarwal et al. 2021) and a stratified bootstrap;
* :func:`mean_ci`: mean and a Student-t confidence interval over seeds.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced at this scale"
INCONCLUSIVE = "inconclusive"
LABELS: tuple[str, ...] = (REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE)
FIELDS: tuple[str, ...] = ("claim", "paper", "ours", "verdict", "figure")
OPTIONAL: tuple[str, ...] = ("evidence", "controls", "rule")
# The paper column of a row whose task the paper did not run (DeepSea, MiniGrid, ...).
NO_PAPER_RESULT = "no result on this task in the paper"
LEVEL = 0.95  # the one confidence level of every rule


def check_label(verdict: str) -> str:
    """Return ``verdict`` if it is one of :data:`LABELS`, else raise ``ValueError`` naming them."""
    if verdict not in LABELS:
        raise ValueError(f"verdict {verdict!r} is not allowed; use one of {list(LABELS)} (replicate.verdicts)")
    return verdict


def control(name: str, passed: bool, value: float, threshold: float) -> dict[str, Any]:
    """A positive control's record: the set-up *can* show an effect of this kind (``passed``), with the measured
    ``value`` and the ``threshold`` it had to clear."""
    return {"name": str(name), "passed": bool(passed), "value": _num(value), "threshold": _num(threshold)}


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None  # JSON has no NaN


def row(claim: str, paper: str, ours: str, verdict: str, figure: str = "", *,
        evidence: Mapping[str, Any] | None = None, controls: Sequence[Mapping[str, Any]] | None = None,
        rule: str | None = None) -> dict[str, Any]:
    """One verdict row; ``figure`` is the figure the claim is read from (``""`` when none).

    ``evidence`` (from :func:`compare`, :func:`threshold` or :func:`match`) and ``controls``
    (:func:`control`) let anyone recompute the verdict; ``rule`` states the rule, its tolerance and why.
    """
    out: dict[str, Any] = {"claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "figure": figure}
    if evidence is not None:
        out["evidence"] = dict(evidence)
    if controls is not None:
        out["controls"] = [dict(c) for c in controls]
    if rule is not None:
        out["rule"] = rule
    return check_rows([out])[0]


def check_rows(rows: Any) -> list[dict[str, Any]]:
    """Validate a list of verdict rows (the fields of :data:`FIELDS`, optionally :data:`OPTIONAL`, non-empty
    text, allowed labels, well-formed evidence and controls); return it.

    A row whose positive control failed must say "inconclusive". An empty list is allowed: a notebook that
    only builds data or measures the setup judges no claim.
    """
    if not isinstance(rows, (list, tuple)):
        raise ValueError("verdicts must be a list of rows {claim, paper, ours, verdict, figure}")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or not set(FIELDS) <= set(r) or not set(r) <= set(FIELDS + OPTIONAL):
            got = sorted(r) if isinstance(r, Mapping) else type(r).__name__
            raise ValueError(f"verdict row {i} has fields {got}; expected {list(FIELDS)} and optionally "
                             f"{list(OPTIONAL)}")
        for f in FIELDS:
            if not isinstance(r[f], str):
                raise ValueError(f"verdict row {i}: field {f!r} must be a string, got {type(r[f]).__name__}")
            if f != "figure" and not r[f].strip():
                raise ValueError(f"verdict row {i}: field {f!r} is empty; say what the paper/our run shows")
        check_label(r["verdict"])
        if "evidence" in r:
            _check_evidence(i, r["evidence"])
        controls = r.get("controls", [])
        if not isinstance(controls, (list, tuple)) or any(
                not isinstance(c, Mapping) or set(c) != {"name", "passed", "value", "threshold"} for c in controls):
            raise ValueError(f"verdict row {i}: controls must be a list of {{name, passed, value, threshold}} "
                             "(replicate.verdicts.control)")
        if any(not c["passed"] for c in controls) and r["verdict"] != INCONCLUSIVE:
            raise ValueError(f"verdict row {i}: a positive control failed, so the verdict must be {INCONCLUSIVE!r}, "
                             f"not {r['verdict']!r}")
        if "rule" in r and (not isinstance(r["rule"], str) or not r["rule"].strip()):
            raise ValueError(f"verdict row {i}: rule must be a non-empty string")
        out.append({f: r[f] for f in FIELDS + OPTIONAL if f in r})
    return out


_EVIDENCE_KEYS = {
    "comparison": {"kind", "metric", "higher_is_better", "better", "than", "arms", "level"},
    "threshold": {"kind", "metric", "higher_is_better", "values", "margin", "threshold", "level"},
    "match": {"kind", "metric", "ours", "paper", "tolerance", "direction"},
}


def _check_evidence(i: int, ev: Any) -> None:
    kind = ev.get("kind") if isinstance(ev, Mapping) else None
    if kind not in _EVIDENCE_KEYS:
        raise ValueError(f"verdict row {i}: evidence must be a mapping with kind in {sorted(_EVIDENCE_KEYS)}")
    if set(ev) != _EVIDENCE_KEYS[kind]:
        raise ValueError(f"verdict row {i}: {kind} evidence has keys {sorted(ev)}; expected "
                         f"{sorted(_EVIDENCE_KEYS[kind])}")
    if kind == "comparison":
        arms = ev["arms"]
        names = [ev["better"], *ev["than"]]
        if not isinstance(arms, Mapping) or any(n not in arms for n in names):
            raise ValueError(f"verdict row {i}: comparison evidence must hold per-seed values for {names}")
        if len({len(arms[n]) for n in names}) != 1:
            raise ValueError(f"verdict row {i}: arms must hold the same seeds, in the same order (equal lengths)")


def recompute(r: Mapping[str, Any]) -> str | None:
    """The verdict a row's stored ``evidence`` and ``controls`` give under the shared rules (None: no evidence)."""
    ev = r.get("evidence")
    if ev is None:
        return None
    controls = r.get("controls", [])
    if ev["kind"] == "comparison":
        return compare(ev["arms"], ev["better"], ev["than"], metric=ev["metric"],
                       higher_is_better=ev["higher_is_better"], controls=controls, level=ev["level"])[0]
    if ev["kind"] == "threshold":
        values = [math.nan if v is None else v for v in ev["values"]]
        return threshold(values, ev["threshold"], metric=ev["metric"], higher_is_better=ev["higher_is_better"],
                         margin=ev["margin"], controls=controls, level=ev["level"])[0]
    return match(ev["ours"], ev["paper"], ev["tolerance"], metric=ev["metric"], direction=ev["direction"],
                 controls=controls)[0]


def table(rows: Sequence[Mapping[str, Any]]):
    """The rows as a pandas DataFrame, for display in the notebook (the rule and whether the controls passed
    beside each verdict; the evidence itself stays in the metrics file)."""
    import pandas as pd

    rows = check_rows(list(rows))
    out = pd.DataFrame(rows, columns=list(FIELDS))
    out["controls"] = [", ".join(f"{c['name']}: {'passed' if c['passed'] else 'FAILED'}" for c in r.get("controls", []))
                       for r in rows]
    out["rule"] = [r.get("rule", "") for r in rows]
    return out


# ----------------------------------------------------------------------------- rules


def from_wins(wins: int, rivals: int) -> str:
    """Label of "beats every rival": all ``rivals`` beaten: reproduced; some: partly; none: not reproduced."""
    if rivals < 1 or not 0 <= wins <= rivals:
        raise ValueError(f"need 0 <= wins <= rivals and rivals >= 1; got wins={wins}, rivals={rivals}")
    return REPRODUCED if wins == rivals else PARTLY if wins > 0 else NOT_REPRODUCED


def explores_better(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Does summary ``a`` explore better than ``b``? (the censored rule of notebooks 11 and 12).

    Each summary holds ``solved`` (fraction of seeds that succeeded within the budget), ``median``
    (median steps or episodes to the first success, censored at the budget), ``censored`` (whether
    that median is the budget) and optionally ``final_success`` (success rate at the end). ``a`` is
    better when it solved at least as many seeds and either reached success sooner (smaller median)
    or, both medians being censored, ends with a higher success rate.
    """
    if a["solved"] < b["solved"]:
        return False
    if a["median"] < b["median"]:
        return True
    both_censored = bool(a.get("censored")) and bool(b.get("censored"))
    return both_censored and a.get("final_success", 0.0) > b.get("final_success", 0.0)


def explores_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same seeds solved, same median and same final success rate: a tie under :func:`explores_better`."""
    return (a["solved"] == b["solved"] and a["median"] == b["median"]
            and a.get("final_success", 0.0) == b.get("final_success", 0.0))


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval ``(mean, lo, hi)`` of independent values (seeds).

    With one value the interval is ``(nan, nan)``: one seed gives no interval.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"mean_ci needs at least one finite value, got {x.tolist()}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def paired_interval(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True,
                    level: float = LEVEL) -> tuple[float, float, float]:
    """Mean advantage of ``a`` over ``b`` and its seed-paired Student-t interval ``(mean, lo, hi)``.

    ``a`` and ``b`` hold one pre-registered score per seed, in the same seed order; the advantage is
    ``a - b`` (``b - a`` when lower is better). One seed: ``(diff, nan, nan)``.
    """
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 1:
        raise ValueError(f"paired scores need equal-length, non-empty 1-D per-seed values; got {x.shape} and {y.shape}")
    d = x - y if higher_is_better else y - x
    return mean_ci(d, level)


def beats(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True, level: float = LEVEL) -> bool:
    """Does ``a`` beat ``b``? The seed-paired interval of the advantage lies above 0 (:func:`paired_interval`).
    Ties and intervals that contain 0 beat nobody; so does one seed (no interval)."""
    _, lo, _ = paired_interval(a, b, higher_is_better=higher_is_better, level=level)
    return bool(np.isfinite(lo) and lo > 0)


def controls_passed(controls: Sequence[Mapping[str, Any]]) -> bool:
    """Every positive control passed (True when there is none)."""
    return all(bool(c["passed"]) for c in controls)


def compare(arms: Mapping[str, Sequence[float]], better: str, than: Sequence[str], *, metric: str,
            higher_is_better: bool = True, controls: Sequence[Mapping[str, Any]] = (), min_seeds: int = 2,
            level: float = LEVEL) -> tuple[str, dict[str, Any]]:
    """The verdict of "``better`` beats every arm in ``than``" on a per-seed score, and the evidence to store.

    ``arms`` maps each name to its per-seed scores (same seeds, same order). Inconclusive when a positive
    control failed or there are fewer than ``min_seeds`` seeds (no interval: the set-up cannot separate the
    arms); otherwise from the arms beaten (:func:`beats`): all: reproduced; some: partly; none: not
    reproduced. Returns ``(label, evidence)`` with ``evidence = {"kind": "comparison", "metric",
    "higher_is_better", "better", "than", "arms", "level"}``.
    """
    than = list(than)
    if not than or better in than:
        raise ValueError(f"compare needs at least one rival other than {better!r}; got {than}")
    missing = [n for n in [better, *than] if n not in arms]
    if missing:
        raise ValueError(f"compare: no per-seed scores for {missing}; arms has {sorted(arms)}")
    vals = {n: [float(v) for v in arms[n]] for n in [better, *than]}
    if len({len(v) for v in vals.values()}) != 1:
        raise ValueError(f"compare: arms must hold the same seeds in the same order; lengths "
                         f"{ {n: len(v) for n, v in vals.items()} }")
    evidence = {"kind": "comparison", "metric": metric, "higher_is_better": bool(higher_is_better),
                "better": better, "than": than, "arms": vals, "level": float(level)}
    if not controls_passed(controls) or len(vals[better]) < min_seeds:
        return INCONCLUSIVE, evidence
    wins = sum(beats(vals[better], vals[n], higher_is_better=higher_is_better, level=level) for n in than)
    return from_wins(wins, len(than)), evidence


def fmt_comparison(evidence: Mapping[str, Any], digits: int = 2) -> str:
    """Our side of a comparison row: each arm's mean [CI] and the paired advantage of ``better`` over each rival."""
    arms, better = evidence["arms"], evidence["better"]
    means = "; ".join(f"{n} {fmt_ci(*mean_ci(v, evidence['level']), digits=digits)}" for n, v in arms.items())
    diffs = "; ".join(
        f"{better} - {n} = " + fmt_ci(*paired_interval(arms[better], arms[n], higher_is_better=True,
                                                         level=evidence["level"]), digits=digits)
        for n in evidence["than"])
    n = len(arms[better])
    return f"{evidence['metric']} ({n} seeds): {means}; paired: {diffs}"


def comparison_row(claim: str, paper: str, figure: str, arms: Mapping[str, Sequence[float]], better: str,
                   than: Sequence[str], *, metric: str, higher_is_better: bool = True,
                   controls: Sequence[Mapping[str, Any]] = (), rule: str | None = None, digits: int = 2,
                   ours_prefix: str = "") -> dict[str, Any]:
    """A verdict row for "``better`` beats ``than``" (:func:`compare`), with its evidence and controls."""
    label, ev = compare(arms, better, than, metric=metric, higher_is_better=higher_is_better, controls=controls)
    ours = ours_prefix + fmt_comparison(ev, digits)
    rule = rule or (f"{better} beats a rival when the seed-paired 95% t-interval of the {metric} difference lies "
                    f"{'above' if higher_is_better else 'below'} 0; all rivals: reproduced, some: partly, none: "
                    "not reproduced; a failed control or < 2 seeds: inconclusive")
    return row(claim, paper, ours, label, figure, evidence=ev, controls=list(controls), rule=rule)


def threshold(values: Sequence[float], limit: float, *, metric: str, higher_is_better: bool = True,
              margin: float = 0.0, controls: Sequence[Mapping[str, Any]] = (),
              level: float = LEVEL) -> tuple[str, dict[str, Any]]:
    """A value against a threshold (``limit``): per-seed ``values`` (Student-t interval) or one value with an
    uncertainty ``margin`` (interval ``value +- margin``; with several seeds the margin widens the t-interval).

    Inconclusive when a control failed or there is no interval (one value and no margin); reproduced when the
    whole interval clears the threshold; partly when the interval contains it but the estimate clears it;
    otherwise (the estimate falls short) not reproduced. Returns ``(label, evidence)``.
    """
    x = np.asarray(values, np.float64)
    if x.ndim != 1 or x.size < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"threshold needs finite 1-D values; got {x.tolist()}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    evidence = {"kind": "threshold", "metric": metric, "higher_is_better": bool(higher_is_better),
                "values": [float(v) for v in x], "margin": float(margin), "threshold": float(limit),
                "level": float(level)}
    m, lo, hi = mean_ci(x, level)
    if x.size < 2:
        lo = hi = m
    if not controls_passed(controls) or (x.size < 2 and margin == 0):
        return INCONCLUSIVE, evidence
    lo, hi = lo - margin, hi + margin
    sign = 1.0 if higher_is_better else -1.0
    worst = lo if higher_is_better else hi
    if sign * (worst - limit) > 0:
        return REPRODUCED, evidence
    return (PARTLY if sign * (m - limit) > 0 else NOT_REPRODUCED), evidence


def threshold_row(claim: str, paper: str, figure: str, values: Sequence[float], limit: float, *, metric: str,
                  higher_is_better: bool = True, margin: float = 0.0, controls: Sequence[Mapping[str, Any]] = (),
                  rule: str | None = None, digits: int = 2, ours_prefix: str = "") -> dict[str, Any]:
    """A verdict row for a value against a threshold (:func:`threshold`), with its evidence and controls."""
    label, ev = threshold(values, limit, metric=metric, higher_is_better=higher_is_better, margin=margin,
                          controls=controls)
    m, lo, hi = mean_ci(values)
    spread = f" +- {margin:.{digits}g}" if margin else ""
    ours = (f"{ours_prefix}{metric} {fmt_ci(m, lo, hi, digits)}{spread} ({len(ev['values'])} "
            f"{'seed' if len(ev['values']) == 1 else 'seeds'}) vs threshold {limit:.{digits}f}")
    rule = rule or (f"interval of the {metric} entirely {'above' if higher_is_better else 'below'} "
                    f"{limit:g}: reproduced; estimate beyond it, interval not: partly; estimate short: not "
                    "reproduced; failed control or no interval: inconclusive")
    return row(claim, paper, ours, label, figure, evidence=ev, controls=list(controls), rule=rule)


def match(ours: float, paper: float, tolerance: float, *, metric: str, direction: str = "sign",
          controls: Sequence[Mapping[str, Any]] = ()) -> tuple[str, dict[str, Any]]:
    """Our number against the paper's, read off its figure or text to within ``tolerance`` (the reading error).

    Reproduced when ``|ours - paper| <= tolerance``; partly when outside it but in the paper's direction;
    not reproduced when the direction is contradicted; inconclusive when a control failed or ours is not
    finite. ``direction``: ``"sign"`` (same sign as the paper's number: a trend, a slope, a difference),
    ``"above1"`` / ``"below1"`` (a ratio that the paper has above/below 1), or ``"none"`` (no direction: outside
    the tolerance is not reproduced, so partly is unreachable).
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if direction not in ("sign", "above1", "below1", "none"):
        raise ValueError(f"direction must be 'sign', 'above1', 'below1' or 'none', got {direction!r}")
    evidence = {"kind": "match", "metric": metric, "ours": _num(ours), "paper": float(paper),
                "tolerance": float(tolerance), "direction": direction}
    if ours is None or not math.isfinite(float(ours)) or not controls_passed(controls):
        return INCONCLUSIVE, evidence
    ours = float(ours)
    if abs(ours - paper) <= tolerance:
        return REPRODUCED, evidence
    same = {"sign": np.sign(ours) == np.sign(paper) and ours != 0, "above1": ours > 1, "below1": ours < 1,
            "none": False}[direction]
    return (PARTLY if same else NOT_REPRODUCED), evidence


def match_row(claim: str, paper: str, figure: str, ours_value: float, paper_value: float, tolerance: float, *,
              metric: str, reason: str, direction: str = "sign", controls: Sequence[Mapping[str, Any]] = (),
              digits: int = 3, ours_prefix: str = "") -> dict[str, Any]:
    """A verdict row for our number against the paper's (:func:`match`); ``reason`` says where the tolerance
    comes from (how precisely the paper's number can be read)."""
    label, ev = match(ours_value, paper_value, tolerance, metric=metric, direction=direction, controls=controls)
    ours = f"{ours_prefix}{metric} {ours_value:.{digits}g} (paper {paper_value:.{digits}g} +- {tolerance:.{digits}g})"
    dir_text = {"sign": "the paper's sign", "above1": "above 1 like the paper's", "below1": "below 1 like the paper's",
                "none": ""}[direction]
    rule = (f"|ours - paper| <= {tolerance:.{digits}g} ({reason}): reproduced"
            + (f"; outside but {dir_text}: partly" if direction != "none" else "")
            + "; otherwise not reproduced; failed control or no value: inconclusive")
    return row(claim, paper, ours, label, figure, evidence=ev, controls=list(controls), rule=rule)


# ----------------------------------------------------------------------------- aggregates over tasks (rliable)


def stratified_bootstrap(scores: np.ndarray, statistic: Callable[[np.ndarray], float], *, reps: int = 2000,
                         level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """``statistic`` of a ``(runs, tasks)`` score matrix and its stratified-bootstrap percentile interval.

    Runs are resampled with replacement within each task, independently across tasks (rliable's stratified
    bootstrap, Agarwal et al. 2021, Sec. 4). rliable 1.2's own bootstrap (``rliable.library``) needs ``arch<8``,
    whose 7.x releases do not import under pandas 3, so the resampling is done here and the estimators come
    from ``rliable.metrics``. Returns ``(estimate, lo, hi)``.
    """
    x = np.asarray(scores, np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"scores must be a finite (runs, tasks) matrix, got shape {x.shape}")
    rng = np.random.default_rng(seed)
    n, t = x.shape
    idx = rng.integers(0, n, size=(reps, n, t))
    boot = np.array([statistic(np.take_along_axis(x, idx[r], axis=0)) for r in range(reps)])
    alpha = (1 - level) / 2
    return float(statistic(x)), float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def iqm_ci(scores: np.ndarray, **kwargs) -> tuple[float, float, float]:
    """Interquartile mean of a ``(runs, tasks)`` score matrix (``rliable.metrics.aggregate_iqm``) and its
    stratified-bootstrap interval (:func:`stratified_bootstrap`)."""
    from rliable import metrics

    return stratified_bootstrap(scores, metrics.aggregate_iqm, **kwargs)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, *, reps: int = 2000, level: float = LEVEL,
                               seed: int = 0) -> tuple[float, float, float]:
    """P(X > Y) averaged over tasks (``rliable.metrics.probability_of_improvement``; ``(runs, tasks)`` each)
    with a stratified-bootstrap interval (each method's runs resampled within each task)."""
    from rliable import metrics

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (runs, tasks) with the same tasks; got {x.shape} and {y.shape}")
    rng = np.random.default_rng(seed)
    est = float(metrics.probability_of_improvement(x, y))
    boot = []
    for _ in range(reps):
        xi = np.take_along_axis(x, rng.integers(0, x.shape[0], size=x.shape), axis=0)
        yi = np.take_along_axis(y, rng.integers(0, y.shape[0], size=y.shape), axis=0)
        boot.append(metrics.probability_of_improvement(xi, yi))
    alpha = (1 - level) / 2
    return est, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


# ----------------------------------------------------------------------------- formatting


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    """``"0.42 [0.30, 0.55]"``; ``"0.42"`` when the interval is undefined (one seed)."""
    if math.isnan(lo) or math.isnan(hi):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_median(summary: Mapping[str, Any]) -> str:
    """``"median [q25, q75]"`` of a censored summary, with ``" (censored)"`` when the median is the budget."""
    s = summary
    return f"{s['median']:.0f} [{s['q25']:.0f}, {s['q75']:.0f}]" + (" (censored)" if s.get("censored") else "")


# ----------------------------------------------------------------------------- README counts, claims table

BEGIN = "<!-- verdicts:begin (generated by `python -m replicate.verdicts readme`; do not edit) -->"
END = "<!-- verdicts:end -->"
CLAIMS = Path("docs") / "claims.md"
# Paper of each notebook series (the first digit of its stem).
PAPERS: dict[str, str] = {"1": "RECODE", "2": "Transformers need glasses!", "3": "PAC"}


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("|", "\\|")).strip()


def _load(metrics_dir: Path, stem: str) -> tuple[dict, list | None]:
    path = metrics_dir / f"{stem}.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    try:
        return data, check_rows(data.get("metrics", {}).get("verdicts"))
    except ValueError:
        return data, None


STALE_NOTE = "results predate changes to the stage's code or parameters: re-run pending (`dvc repro`)"


def stale_stages(root: Path) -> set[str]:
    """Stages whose code, parameters or command changed since their committed run (``dvc status``: modified or
    new deps, a changed command). Missing DVC-cached data (a fresh clone without the cache) does not count."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        status = repo.status()
    stale = set()
    for name, entries in status.items():
        for e in entries:
            if isinstance(e, str) and e in ("changed command", "always changed"):
                stale.add(name)
            elif isinstance(e, Mapping) and any(v != "deleted" for v in e.get("changed deps", {}).values()):
                stale.add(name)
    return stale


def readme_table(metrics_dir: Path, notebooks: Sequence[str], link_prefix: str = "",
                 stale: Iterable[str] = ()) -> str:
    """Markdown table of every verdict row in ``metrics_dir/<stem>.json`` for each paper notebook stem.

    A notebook whose metrics file has no valid verdict rows (not yet re-run since they changed) gets one
    row that says so, instead of a verdict; the rows of a ``stale`` stage (:func:`stale_stages`) are marked.
    ``link_prefix`` is the path from the table's file to the repo root.
    """
    stale = set(stale)
    lines = ["| notebook | claim | paper | ours | verdict | rule | profile |", "|---|---|---|---|---|---|---|"]
    for stem in notebooks:
        data, rows = _load(metrics_dir, stem)
        link = f"[`{stem}`]({link_prefix}reports/{stem}.ipynb)"
        profile = data.get("run", {}).get("profile", "—")
        if stem in stale:
            profile += f" (*{STALE_NOTE}*)"
        if rows is None:
            reason = ("no metrics yet" if not data
                      else "metrics predate the verdict rows: re-run the stage (`dvc repro`)")
            lines.append(f"| {link} | — | — | — | *{reason}* | — | {profile} |")
            continue
        if not rows:
            note = "*judges no paper claim (builds data / measures the setup)*"
            lines.append(f"| {link} | {note} | — | — | — | — | {profile} |")
        for r in rows:
            fig = f" ([figure]({link_prefix}{r['figure']}))" if r["figure"] else ""
            failed = [c["name"] for c in r.get("controls", []) if not c["passed"]]
            verdict = f"**{r['verdict']}**" + (f" (control failed: {', '.join(failed)})" if failed else "")
            lines.append(f"| {link} | {_cell(r['claim'])}{fig} | {_cell(r['paper'])} | {_cell(r['ours'])} | "
                         f"{verdict} | {_cell(r.get('rule', ''))} | {profile} |")
    return "\n".join(lines)


PENDING = "awaiting re-run"


def verdict_counts(metrics_dir: Path, notebooks: Sequence[str], stale: Iterable[str] = ()) -> dict[str, dict[str, int]]:
    """Per paper (:data:`PAPERS`): how many committed rows carry each label (:data:`LABELS`); the rows of
    ``stale`` stages count under :data:`PENDING` instead of their (out-of-date) label."""
    stale = set(stale)
    counts: dict[str, dict[str, int]] = {}
    for stem in notebooks:
        paper = PAPERS.get(stem[:1], stem)
        c = counts.setdefault(paper, dict.fromkeys((*LABELS, PENDING), 0))
        _, rows = _load(metrics_dir, stem)
        for r in rows or []:
            c[PENDING if stem in stale else r["verdict"]] += 1
    return counts


def counts_table(metrics_dir: Path, notebooks: Sequence[str], stale: Iterable[str] = ()) -> str:
    """Markdown table of :func:`verdict_counts`, one row per paper, linking the full claims table."""
    heads = (*LABELS, PENDING)
    lines = ["| paper | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for paper, c in verdict_counts(metrics_dir, notebooks, stale).items():
        lines.append(f"| {paper} | " + " | ".join(str(c[label]) for label in heads) + " |")
    link = f"[{CLAIMS}]({CLAIMS})"
    return "\n".join(lines) + f"\n\nEvery claim, with the paper's number, ours, the rule and the figure: {link}."


def claims_page(metrics_dir: Path, notebooks: Sequence[str], stale: Iterable[str] = ()) -> str:
    """The whole generated ``docs/claims.md``: every verdict row of every paper notebook."""
    return (
        "# Claims and verdicts\n\n"
        "Generated by `python -m replicate.verdicts readme` from `data/metrics/<stem>.json` "
        "(`metrics[\"verdicts\"]`); never edit by hand (`tests/test_verdicts.py` fails when it is stale).\n"
        "Labels: **reproduced**; **partly**; **not reproduced at this scale** (the set-up could have shown the effect "
        "and did not); **inconclusive** (a positive control failed, or the set-up cannot separate the arms). Rows that "
        "compare methods store each arm's per-seed scores (`evidence`) and the positive controls (`controls`), so "
        "`replicate.verdicts.recompute(row)` gives the verdict again.\n\n"
        + readme_table(metrics_dir, notebooks, link_prefix="../", stale=stale) + "\n"
    )


def paper_notebooks(root: Path) -> list[str]:
    """Stems of the paper notebooks (every ``notebooks/NN_*.ipynb`` except ``00_*``), in order."""
    return sorted(p.stem for p in (root / "notebooks").glob("[1-9][0-9]_*.ipynb"))


def render_readme(readme: str, table_md: str) -> str:
    """``readme`` with the text between :data:`BEGIN` and :data:`END` replaced by ``table_md``."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md lacks the markers {BEGIN!r} ... {END!r}; add them where the table goes")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table_md}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from replicate import io
    from replicate.params import repo_root

    parser = argparse.ArgumentParser(prog="python -m replicate.verdicts")
    parser.add_argument("command", choices=["readme", "check"],
                        help="readme: rewrite README.md's verdict counts and docs/claims.md; check: exit 1 if stale")
    args = parser.parse_args(argv)
    root = repo_root()
    metrics_dir, stems = root / "data" / "metrics", paper_notebooks(root)
    stale = stale_stages(root)
    readme_path, claims_path = root / "README.md", root / CLAIMS
    old = readme_path.read_text(encoding="utf-8")
    new = render_readme(old, counts_table(metrics_dir, stems, stale))
    old_claims = claims_path.read_text(encoding="utf-8") if claims_path.exists() else ""
    new_claims = claims_page(metrics_dir, stems, stale)
    if args.command == "check":
        if new != old or new_claims != old_claims:
            print("README.md's verdict counts or docs/claims.md are stale: run `python -m replicate.verdicts readme`",
                  file=sys.stderr)
            return 1
        return 0
    if new != old:
        io.write_text(readme_path, new)
        print("README.md: verdict counts regenerated")
    if new_claims != old_claims:
        io.write_text(claims_path, new_claims)
        print(f"{CLAIMS}: claims table regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
