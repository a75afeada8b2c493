"""Curve summaries (replicate.glasses.curves) on curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from replicate.glasses import curves


@pytest.mark.parametrize("power", [-1.0, -2.0, 0.5])
def test_loglog_slope_of_a_power_law(power):
    ns = np.array([5, 10, 100, 1000])
    assert curves.loglog_slope(ns, 3.0 * ns**power) == pytest.approx(power, abs=1e-12)


def test_log_crossing_is_exact_on_a_power_law():
    ns = [10, 100, 1000, 10000]
    ys = [1.0 / n for n in ns]  # y = 1/n crosses 2^-7 at n = 128 exactly, between 100 and 1000
    assert curves.log_crossing(ns, ys) == pytest.approx(128.0, rel=1e-12)
    assert curves.log_crossing(ns, ys, level=0.05) == pytest.approx(20.0, rel=1e-12)
    assert curves.log_crossing(ns, ys, level=1.0) == 10.0  # already below at the first length
    assert curves.log_crossing(ns, ys, level=1e-6) is None  # never below


def test_lookups_and_formatting():
    ns, ys = [2, 5, 10], np.array([0.5, 0.2, 0.1])
    assert curves.value_at(ns, ys, 5) == 0.2 and curves.value_at(ns, ys, 7) is None
    assert curves.first_below(ns, ys, [0.1, 0.3, 0.3]) == 5
    assert curves.first_below(ns, ys, [0.0, 0.0, 0.0]) is None
    assert curves.geometric_mean([2.0, 8.0]) == pytest.approx(4.0) and curves.geometric_mean([]) is None
    assert curves.format_optional(None) == "n/a"
    assert curves.format_optional(0.012345) == "0.0123" and curves.format_optional(np.float64(2.5), ".2f") == "2.50"
    assert curves.format_optional(501) == "501"
