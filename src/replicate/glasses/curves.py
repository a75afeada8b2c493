"""Summaries of a curve measured over sequence lengths, shared by the glasses notebooks (20-23).

* :func:`loglog_slope`: least-squares slope of log y against log n (the decay law: -1 is Θ(1/n));
* :func:`log_crossing`: the first n at which a decreasing curve falls below a level (the bf16 line
  2⁻⁷ by default), log-log interpolated between the two swept lengths around it;
* :func:`value_at`, :func:`first_below`, :func:`geometric_mean`: lookups used in verdict text;
* :func:`format_optional`: a number, or ``"n/a"`` for ``None``, for verdict text;
* verdict rules against the values read off the paper's plots, judged at the paper's own lengths with the reading
  error :data:`READ_DEX` as tolerance: :func:`slope_match_row` (decay law), :func:`level_match_row` (values),
  :func:`crossing_match_row` (the length from which a curve stays below a level, e.g. 2⁻⁷ or bf16's rounding
  error), :func:`slope_threshold_row` with :func:`paper_slope_limit` (falls at least as fast as the paper's), and
  their pieces (:func:`log_curve`, :func:`slope_fit`, :func:`slope_reading_error`, :func:`first_below_range`).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from replicate import verdicts
from replicate.plotting import BF16_EPS


def loglog_slope(ns: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y against log n."""
    return float(np.polyfit(np.log(ns), np.log(ys), 1)[0])


def log_crossing(ns: Sequence[float], ys: Sequence[float], level: float = BF16_EPS) -> float | None:
    """First n (log-interpolated) where the curve falls below ``level``; None if it never does.

    When the first swept length is already below ``level``, that length is returned.
    """
    ns, ys = np.asarray(ns, float), np.asarray(ys, float)
    below = np.nonzero(ys < level)[0]
    if below.size == 0:
        return None
    j = below[0]
    if j == 0:
        return float(ns[0])
    t = (np.log(ys[j - 1]) - np.log(level)) / (np.log(ys[j - 1]) - np.log(ys[j]))
    return float(np.exp(np.log(ns[j - 1]) + t * (np.log(ns[j]) - np.log(ns[j - 1]))))


def value_at(ns: Sequence[int], ys: Sequence[float], n: int) -> float | None:
    """The curve's value at length ``n``, or None if ``n`` was not swept."""
    return float(ys[list(ns).index(n)]) if n in ns else None


def first_below(ns: Sequence[int], values: Sequence[float], floor: Sequence[float]) -> int | None:
    """First swept n at which ``values`` is smaller than ``floor`` (e.g. the float32 difference below the
    bf16 rounding error of the outputs); None if it never is."""
    idx = np.nonzero(np.asarray(values) < np.asarray(floor))[0]
    return int(ns[idx[0]]) if idx.size else None


def geometric_mean(ratios: Sequence[float]) -> float | None:
    """Geometric mean of positive ratios (e.g. ours/paper over lengths); None for an empty list."""
    return float(np.exp(np.mean(np.log(ratios)))) if ratios else None


def format_optional(value, spec: str = ".3g") -> str:
    """``"n/a"`` for None, a float formatted with ``spec``, anything else with ``str``."""
    if value is None:
        return "n/a"
    return format(value, spec) if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- rules against the paper's plots
#
# The glasses paper gives its numbers as plots; the research notes read them off (values marked ≈). Each rule below
# compares our curve with those readings at the paper's own lengths, with a tolerance made of (i) how precisely the
# paper's values can be read (READ_DEX per value, propagated to the statistic) and (ii) our own 95% interval (over
# seeds, or of a least-squares fit for one deterministic curve). Each builds its row with the shared verdict layer
# (``verdicts.match_row`` / ``verdicts.threshold_row``), so the row stores its evidence and can be recomputed.

#: Reading error of one value read off the paper's plots, in decades (log10 units): ±0.04 decade, i.e. ±10 %.
#: The research notes give the readings to about two significant digits; we take half a plot marker, about 4 % of a
#: decade on the paper's log axes, as the error of one reading. This is our assumption: the paper prints no numbers.
READ_DEX = 0.04


def _t_half(x: np.ndarray, level: float = verdicts.LEVEL) -> float:
    """Half-width of the Student-t interval of the mean of ``x`` (nan for fewer than 2 values)."""
    _, lo, hi = verdicts.mean_ci(x, level) if len(x) else (np.nan, np.nan, np.nan)
    return float((hi - lo) / 2)


def _log10(values) -> np.ndarray:
    """log10 of non-negative values; an exact 0 (a bit-identical pair) counts as the smallest positive double."""
    v = np.asarray(values, np.float64)
    if np.any(v < 0) or not np.all(np.isfinite(v)):
        raise ValueError(f"curve values must be finite and >= 0, got {v.tolist()}")
    return np.log10(np.maximum(v, np.finfo(np.float64).tiny))


def log_curve(values) -> tuple[np.ndarray, np.ndarray]:
    """Per length: the mean of log10(values) and the half-width of its 95% interval.

    ``values`` (S, k): one curve per seed; the mean is the geometric mean over seeds, the interval Student-t over
    seeds (nan with one seed: no interval). ``values`` (k,): one deterministic curve; half-width 0.
    """
    return _mean_half(_log10(values))


def _mean_half(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if v.ndim == 1:
        return v, np.zeros_like(v)
    if v.ndim != 2:
        raise ValueError(f"values must be (seeds, lengths) or (lengths,), got shape {v.shape}")
    return v.mean(0), np.array([_t_half(v[:, j]) for j in range(v.shape[1])])


def slope_fit(ns: Sequence[float], ys: Sequence[float], level: float = verdicts.LEVEL) -> tuple[float, float]:
    """Least-squares slope of log10 y on log10 n and the half-width of its 95% t-interval (k − 2 degrees of
    freedom; nan for 2 points)."""
    x, y = np.log10(np.asarray(ns, np.float64)), _log10(ys)
    if x.size < 2 or x.shape != y.shape:
        raise ValueError(f"slope_fit needs >= 2 lengths and one value per length; got {x.size} and {y.size}")
    sxx = float(((x - x.mean()) ** 2).sum())
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
    if x.size < 3:
        return slope, math.nan
    resid = y - (y.mean() + slope * (x - x.mean()))
    se = math.sqrt(float((resid**2).sum()) / (x.size - 2) / sxx)
    return slope, float(stats.t.ppf(0.5 + level / 2, x.size - 2) * se)


def slope_reading_error(ns: Sequence[float], read_dex: float = READ_DEX) -> float:
    """Error of a least-squares log-log slope fitted to values each read to ±``read_dex`` decades at lengths ``ns``:
    read_dex / sqrt(Σ (log10 n − mean)²). Two decades read at 3 lengths (100, 1000, 10⁴): ±0.028 for ±0.04."""
    x = np.log10(np.asarray(ns, np.float64))
    return float(read_dex / math.sqrt(((x - x.mean()) ** 2).sum()))


def our_slope(ns: Sequence[float], values) -> tuple[float, float]:
    """Our log-log slope and its 95% half-width: the mean of the per-seed slopes with a Student-t interval over
    seeds for ``values`` (S, k) (nan with one seed), or :func:`slope_fit` for one curve (k,)."""
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        return slope_fit(ns, v)
    slopes = per_seed_slopes(ns, v)
    return float(slopes.mean()), _t_half(slopes)


def per_seed_slopes(ns: Sequence[float], values) -> np.ndarray:
    """Log-log slope of each seed's curve (``values`` (S, k))."""
    v = np.asarray(values, np.float64)
    if v.ndim != 2:
        raise ValueError(f"per-seed values must be (seeds, lengths), got shape {v.shape}")
    return np.array([slope_fit(ns, row)[0] for row in v])


def paper_lengths(ns: Sequence[int], paper: Mapping[int, float], *, at_least: int = 2) -> tuple[list[int], list[int]]:
    """The swept lengths at which the paper reports a value, and their indices in ``ns``; raises ValueError when
    fewer than ``at_least`` of them were swept (the rule is judged at the paper's own lengths)."""
    common = [int(n) for n in ns if n in paper]
    if len(common) < at_least:
        raise ValueError(f"sweep at least {at_least} of the paper's lengths {sorted(paper)}; swept {list(ns)}")
    return common, [list(ns).index(n) for n in common]


def _columns(values, idx: list[int]) -> np.ndarray:
    return np.asarray(values, np.float64)[..., idx]


def _fmt_ns(ns: Sequence[int]) -> str:
    return ", ".join(str(n) for n in ns)


def slope_match_row(claim: str, paper_text: str, figure: str, ns: Sequence[int], ours, paper: Mapping[int, float], *,
                    metric: str = "log-log slope", read_dex: float = READ_DEX) -> dict:
    """"Our decay law is the paper's": our log-log slope against the slope fitted to the paper's read values, at the
    swept lengths the paper reports (``verdicts.match_row``, direction ``sign``).

    Tolerance: the paper slope's reading error (:func:`slope_reading_error`) plus our 95% half-width
    (:func:`our_slope`). Within it: reproduced; outside but with the paper's sign: partly; opposite sign (or no
    decay where the paper decays): not reproduced; no interval (one seed, or 2 lengths of one curve): inconclusive.
    """
    common, idx = paper_lengths(ns, paper)
    p_slope, _ = slope_fit(common, [paper[n] for n in common])
    p_tol = slope_reading_error(common, read_dex)
    o, h = our_slope(common, _columns(ours, idx))
    value = o if math.isfinite(h) else math.nan
    reason = (f"the paper's slope read to ±{p_tol:.2g} (±{read_dex:g} decade per value at n = {_fmt_ns(common)}) "
              f"plus our 95% interval ±{h:.2g}")
    return verdicts.match_row(claim, paper_text, figure, value, p_slope, p_tol + (h if math.isfinite(h) else 0.0),
                              metric=metric, reason=reason, direction="sign", digits=2,
                              ours_prefix=f"n = {_fmt_ns(common)}: ")


def level_match_row(claim: str, paper_text: str, figure: str, ns: Sequence[int], ours, paper: Mapping[int, float], *,
                    read_dex: float = READ_DEX) -> dict:
    """"Our values are the paper's": the mean over the paper's swept lengths of log10(ours / paper) against 0
    (``verdicts.match_row``, direction ``none``: a level has no direction, so partly is unreachable).

    Tolerance: one reading error ``read_dex`` (an error common to all readings, e.g. of the axis, does not average
    out) plus our 95% half-width over seeds (0 for one deterministic curve). Within: reproduced; outside: not
    reproduced; no interval (one seed): inconclusive.
    """
    common, idx = paper_lengths(ns, paper, at_least=1)
    rel = _log10(_columns(ours, idx)) - np.log10([paper[n] for n in common])
    if rel.ndim == 1:
        value, h = float(rel.mean()), 0.0
    else:
        per_seed = rel.mean(-1)
        value, h = float(per_seed.mean()), _t_half(per_seed)
    reason = f"±{read_dex:g} decade reading error of the paper's values plus our 95% interval ±{h:.2g}"
    ok = math.isfinite(h)
    return verdicts.match_row(claim, paper_text, figure, value if ok else math.nan, 0.0,
                              read_dex + (h if ok else 0.0), metric="mean log10(ours / paper)", reason=reason,
                              direction="none", digits=2,
                              ours_prefix=f"ours / paper ≈ ×{10 ** value:.3g} at n = {_fmt_ns(common)}; ")


def first_below_range(log_rel: Sequence[float], half: Sequence[float]) -> tuple[int, int]:
    """From which index a curve stays below its level, as the range the uncertainty allows.

    ``log_rel``: log10(value / level) per length, ``half``: its uncertainty (decades). ``lo`` treats values within
    ``half`` of the level as below, ``hi`` as above; each is the first index from which every later value is
    (possibly / surely) below; ``len(log_rel)`` means "not within these lengths".
    """
    r, h = np.asarray(log_rel, np.float64), np.asarray(half, np.float64)
    if r.shape != h.shape or r.ndim != 1 or not np.all(np.isfinite(h)) or np.any(h < 0):
        raise ValueError(f"log_rel and half must be 1-D of equal length, half finite and >= 0; got {r}, {h}")

    def first_persistent(mask: np.ndarray) -> int:
        i = mask.size
        while i > 0 and mask[i - 1]:
            i -= 1
        return i

    return first_persistent(r - h < 0), first_persistent(r + h < 0)


def crossing_match_row(claim: str, paper_text: str, figure: str, ns: Sequence[int], ours, ours_level,
                       paper: Mapping[int, float], *, paper_level: float = BF16_EPS, read_dex: float = READ_DEX,
                       what: str = "the difference") -> dict:
    """"Our curve falls below its level from the paper's length on": the first of the paper's swept lengths from
    which each curve stays below its level, compared on that ladder of lengths (``verdicts.match_row``, direction
    ``none``).

    ``ours`` (S, k) or (k,) and ``ours_level`` (a number, or per-seed/per-length values of the same shape, e.g. the
    bf16 rounding error) give our position, the paper's values read off its plot and ``paper_level`` (2⁻⁷) the
    paper's. Each position is a range (:func:`first_below_range`): for the paper, values within ``read_dex`` of its
    level could be on either side of it; for us, values within our 95% interval over seeds. Reproduced when the two
    ranges overlap (|mid − mid| <= half + half); otherwise not reproduced; no interval (one seed): inconclusive.
    The paper's x-axes show only these lengths (categorical ticks in Fig. 5), so a crossing is known to one step.
    """
    common, idx = paper_lengths(ns, paper, at_least=1)
    level = np.broadcast_to(np.asarray(ours_level, np.float64), np.asarray(ours, np.float64).shape)
    o_rel, o_half = _mean_half(_log10(_columns(ours, idx)) - _log10(_columns(level, idx)))  # per seed, then mean
    ok = bool(np.all(np.isfinite(o_half)))
    o_lo, o_hi = first_below_range(o_rel, o_half) if ok else (0, 0)
    p_rel = np.log10([paper[n] for n in common]) - math.log10(paper_level)
    p_lo, p_hi = first_below_range(p_rel, np.full(len(common), read_dex))
    k = len(common)

    def where(lo: int, hi: int) -> str:
        first = f"below from n = {common[lo]}" if lo < k else f"not below by n = {common[-1]}"
        if lo == hi:
            return first
        return first + " … " + (f"n = {common[hi]}" if hi < k else f"not below by n = {common[-1]}")

    value = (o_lo + o_hi) / 2 if ok else math.nan
    reason = (f"same step of the paper's lengths n = {_fmt_ns(common)}; the paper's values read to ±{read_dex:g} "
              "decade, ours with their 95% interval over seeds")
    tolerance = (p_hi - p_lo) / 2 + (o_hi - o_lo) / 2
    return verdicts.match_row(claim, paper_text, figure, value, (p_lo + p_hi) / 2, tolerance,
                              metric=f"index of the first length from which {what} stays below its level ({k}: never)",
                              reason=reason, direction="none", digits=3,
                              ours_prefix=f"ours {where(o_lo, o_hi) if ok else 'n/a'}; paper {where(p_lo, p_hi)}; ")


def slope_threshold_row(claim: str, paper_text: str, figure: str, ns: Sequence[int], ours, limit: float, *,
                        higher_is_better: bool = False, reason: str, metric: str = "log-log slope") -> dict:
    """"Our curve falls (or grows) at least this fast": our log-log slope against ``limit``
    (``verdicts.threshold_row``): the per-seed slopes with their t-interval for ``ours`` (S, k), or one curve's
    least-squares slope with its 95% half-width as the margin for ``ours`` (k,). Interval wholly beyond ``limit``:
    reproduced; estimate beyond, interval not: partly; estimate short: not reproduced; no interval: inconclusive.
    ``reason`` says where ``limit`` comes from."""
    v = np.asarray(ours, np.float64)
    if v.ndim == 2:
        values, margin, how = per_seed_slopes(ns, v).tolist(), 0.0, ""
    else:
        slope, h = slope_fit(ns, v)
        values, margin, how = [slope], (h if math.isfinite(h) else 0.0), "one curve, ± its least-squares 95% interval"
    side = "below" if not higher_is_better else "above"
    rule = (f"95% interval of our {metric} (n = {_fmt_ns(ns)}) wholly {side} {limit:.3g} ({reason}): reproduced; "
            "estimate beyond it, interval not: partly; estimate short: not reproduced; no interval: inconclusive")
    return verdicts.threshold_row(claim, paper_text, figure, values, limit, metric=metric,
                                  higher_is_better=higher_is_better, margin=margin, rule=rule, digits=2,
                                  ours_prefix=f"n = {_fmt_ns(ns)} ({how or 'per seed'}): ")


def paper_slope_limit(ns: Sequence[int], paper: Mapping[int, float], *, read_dex: float = READ_DEX,
                      falls: bool = True) -> tuple[float, float, float]:
    """The paper's log-log slope at its swept lengths, its reading error, and the least steep slope consistent
    with the reading (``slope + error`` for a falling curve, ``slope − error`` for a growing one): the limit of
    "at least as fast as the paper's" (:func:`slope_threshold_row`). Returns ``(slope, error, limit)``."""
    common, _ = paper_lengths(ns, paper)
    slope, _ = slope_fit(common, [paper[n] for n in common])
    err = slope_reading_error(common, read_dex)
    return slope, err, slope + err if falls else slope - err
