"""Summaries of a curve measured over sequence lengths, shared by the glasses notebooks (20-23).

* :func:`loglog_slope`: least-squares slope of log y against log n (the decay law: -1 is Θ(1/n));
* :func:`log_crossing`: the first n at which a decreasing curve falls below a level (the bf16 line
  2⁻⁷ by default), log-log interpolated between the two swept lengths around it;
* :func:`value_at`, :func:`first_below`, :func:`geometric_mean`: lookups used in verdict text;
* :func:`format_optional`: a number, or ``"n/a"`` for ``None``, for verdict text.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

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
