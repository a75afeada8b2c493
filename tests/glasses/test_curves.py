"""Curve summaries (replicate.glasses.curves) on curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from replicate import verdicts
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


# ----------------------------------------------------------------------------- rules against the paper's plots

NS = [10, 100, 1000, 10000]
PAPER = {n: 2.0 * n**-0.5 for n in NS}  # a paper curve with slope -0.5
R, P, NOT, INC = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED, verdicts.INCONCLUSIVE


def seeds_of(power, scale=2.0, spread=0.02, seeds=5, ns=NS):
    """Per-seed curves scale * n**power, each value off by a random factor of about 10**spread (seed noise)."""
    g = np.random.default_rng(0)
    ns = np.asarray(ns, float)
    return np.array([scale * ns**power * 10 ** g.normal(0, spread, ns.size) for _ in range(seeds)])


def test_slope_fit_matches_scipy_and_the_reading_error_formula():
    g = np.random.default_rng(1)
    ns = np.array([1, 2, 6, 11, 51, 101, 501, 1001, 2001])
    ys = 3.0 * ns**-0.7 * 10 ** g.normal(0, 0.1, ns.size)
    slope, half = curves.slope_fit(ns, ys)
    ref = stats.linregress(np.log10(ns), np.log10(ys))
    assert slope == pytest.approx(ref.slope, rel=1e-12)
    assert half == pytest.approx(stats.t.ppf(0.975, ns.size - 2) * ref.stderr, rel=1e-10)
    assert np.isnan(curves.slope_fit([1, 10], [1.0, 0.1])[1])  # 2 points: no interval
    # +-0.04 decade per value over 100, 1000, 10^4: 0.04 / sqrt(2)
    assert curves.slope_reading_error([100, 1000, 10000]) == pytest.approx(0.04 / np.sqrt(2))
    # Monte Carlo: the slope's spread when each value is read with sd 0.04 decade
    x = np.log10([100, 1000, 10000])
    sims = [np.polyfit(x, -0.5 * x + g.normal(0, 0.04, 3), 1)[0] for _ in range(4000)]
    assert np.std(sims) == pytest.approx(curves.slope_reading_error([100, 1000, 10000]), rel=0.05)


def test_log_curve_geometric_mean_and_interval():
    v = np.array([[1.0, 10.0], [100.0, 10.0]])
    mean, half = curves.log_curve(v)
    np.testing.assert_allclose(mean, [1.0, 1.0])
    assert half[1] == 0 and half[0] == pytest.approx(stats.t.ppf(0.975, 1) * 1.0)  # log10 values 0, 2: sd sqrt(2)
    mean, half = curves.log_curve([1.0, 0.1])
    np.testing.assert_allclose(mean, [0.0, -1.0])
    np.testing.assert_array_equal(half, 0)
    assert np.isnan(curves.log_curve([[1.0, 0.1]])[1]).all()  # one seed: no interval
    assert np.isfinite(curves.log_curve([0.0, 1.0])[0]).all()  # an exact 0 (bit-identical pair) is finite
    with pytest.raises(ValueError, match=">= 0"):
        curves.log_curve([-1.0, 1.0])


def test_slope_match_row_reaches_every_label():
    def label(ours):
        return curves.slope_match_row("c", "p", "f", NS, ours, PAPER)["verdict"]

    assert label(seeds_of(-0.5)) == R
    assert label(seeds_of(-1.0)) == P  # decays, at another rate
    assert label(seeds_of(0.3)) == NOT  # grows where the paper decays
    assert label(seeds_of(-0.5, seeds=1)) == INC  # one seed: no interval
    row = curves.slope_match_row("c", "p", "f", NS, seeds_of(-0.55), PAPER)
    tol = row["evidence"]["tolerance"]  # reading error + our interval
    assert tol > curves.slope_reading_error(NS) and row["evidence"]["paper"] == pytest.approx(-0.5)
    assert "±0.04 decade per value" in row["rule"] and verdicts.recompute(row) == row["verdict"]
    # one deterministic curve: the least-squares interval is ours
    assert curves.slope_match_row("c", "p", "f", NS, 2.0 * np.asarray(NS, float) ** -0.5, PAPER)["verdict"] == R
    # only the paper's lengths count: an extra swept length it does not report is ignored
    ours = np.concatenate([seeds_of(-0.5), np.full((5, 1), 100.0)], axis=1)
    assert curves.slope_match_row("c", "p", "f", NS + [20000], ours, PAPER)["verdict"] == R
    with pytest.raises(ValueError, match="paper's lengths"):
        curves.slope_match_row("c", "p", "f", [10, 20], seeds_of(-0.5, ns=[10, 20]), PAPER)


def test_level_match_row_reaches_every_label_its_direction_allows():
    def row(ours):
        return curves.level_match_row("c", "p", "f", NS, ours, PAPER)

    assert row(seeds_of(-0.5, scale=2.1))["verdict"] == R  # 5 % above: within the reading error
    assert row(seeds_of(-0.5, scale=4.0))["verdict"] == NOT  # x2: outside it
    assert row(seeds_of(-0.5, scale=1.0))["verdict"] == NOT
    assert row(seeds_of(-0.5, seeds=1))["verdict"] == INC
    r = row(seeds_of(-0.5, scale=4.0))
    assert r["evidence"]["direction"] == "none"  # a level has no direction: partly is unreachable by design
    assert r["evidence"]["ours"] == pytest.approx(np.log10(2), abs=0.02) and verdicts.recompute(r) == r["verdict"]
    assert row(2.0 * np.asarray(NS, float) ** -0.5)["evidence"]["tolerance"] == curves.READ_DEX  # deterministic


def test_first_below_range():
    assert curves.first_below_range([1.0, 0.5, -0.5, -1.0], [0.1] * 4) == (2, 2)
    assert curves.first_below_range([1.0, 0.05, -0.5, -1.0], [0.1] * 4) == (1, 2)  # n_1 within reading of the level
    assert curves.first_below_range([-1.0, 0.5, -0.5, 0.2], [0.1] * 4) == (4, 4)  # ends above: never
    assert curves.first_below_range([-1.0, -1.0], [0.0, 0.0]) == (0, 0)
    with pytest.raises(ValueError):
        curves.first_below_range([0.0, 1.0], [np.nan, 0.1])


def test_crossing_match_row_reaches_every_label_its_direction_allows():
    level = 0.01
    paper = {n: 0.3 / n for n in NS}  # below 0.01 from n = 100 (0.003), half a decade from the level everywhere

    def row(ours, ours_level=level):
        return curves.crossing_match_row("c", "p", "f", NS, ours, ours_level, paper, paper_level=level)

    assert row(seeds_of(-1.0, scale=0.3))["verdict"] == R  # same step
    assert row(seeds_of(-1.0, scale=0.01))["verdict"] == NOT  # below from the start
    assert row(seeds_of(-0.1))["verdict"] == NOT  # never below
    assert row(seeds_of(-1.0, scale=0.3, seeds=1))["verdict"] == INC
    # a per-length level (e.g. bf16's rounding error), per seed: our ratio to it decides
    floor = np.full((5, 4), 0.01)
    assert row(seeds_of(-1.0, scale=0.3), floor)["verdict"] == R
    assert row(seeds_of(-1.0, scale=0.3), floor * 100)["verdict"] == NOT
    r = row(seeds_of(-1.0, scale=0.3))
    assert r["evidence"]["paper"] == 1 and r["evidence"]["tolerance"] == 0 and verdicts.recompute(r) == R
    assert "ours below from n = 100; paper below from n = 100" in r["ours"]
    # a paper value within its reading error of the level: the paper's step is known to one step
    near = {10: 1.0, 100: 0.0105, 1000: 0.001, 10000: 0.0001}
    r = curves.crossing_match_row("c", "p", "f", NS, seeds_of(-1.0, scale=0.3), level, near, paper_level=level)
    assert r["evidence"]["paper"] == 1.5 and r["evidence"]["tolerance"] == 0.5 and r["verdict"] == R
    # our interval straddling the level: our step is a range too
    r = curves.crossing_match_row("c", "p", "f", NS, seeds_of(-1.0, scale=1.0, spread=0.3, seeds=3), level, paper,
                                  paper_level=level)
    assert r["evidence"]["tolerance"] > 0 and verdicts.recompute(r) == r["verdict"]
    never = curves.crossing_match_row("c", "p", "f", NS, seeds_of(-0.1), level, {n: 1.0 for n in NS},
                                      paper_level=level)
    assert never["verdict"] == R  # neither crosses within the lengths
    assert "ours not below by n = 10000; paper not below by n = 10000" in never["ours"]


def test_slope_threshold_row_reaches_every_label():
    def label(ours, limit=-0.5, higher=False):
        return curves.slope_threshold_row("c", "p", "f", NS, ours, limit, higher_is_better=higher,
                                          reason="r")["verdict"]

    assert label(seeds_of(-1.0)) == R  # falls faster than n^-0.5, interval and all
    assert label(seeds_of(-0.1)) == NOT
    noisy = np.array([np.asarray(NS, float) ** s for s in (-0.45, -0.75, -0.6)])  # mean -0.6, interval across -0.5
    assert label(noisy) == P
    assert label(seeds_of(-1.0, seeds=1)) == INC  # one seed, no margin
    two = curves.slope_threshold_row("c", "p", "f", [10, 100], np.array([1.0, 0.1]), -0.5, reason="r")
    assert two["verdict"] == INC  # one curve at 2 lengths: no least-squares interval
    curve = seeds_of(-1.0)[0]  # one curve: its least-squares interval is the margin
    one = curves.slope_threshold_row("c", "p", "f", NS, curve, -0.5, reason="r")
    assert one["verdict"] == R and one["evidence"]["margin"] == pytest.approx(curves.slope_fit(NS, curve)[1])
    assert label(seeds_of(0.5), limit=0.2, higher=True) == R  # grows at least as fast
    assert label(seeds_of(-0.5), limit=0.2, higher=True) == NOT
    assert verdicts.recompute(two) == INC


def test_paper_slope_limit():
    slope, err, limit = curves.paper_slope_limit(NS, PAPER)
    assert slope == pytest.approx(-0.5) and err == pytest.approx(curves.slope_reading_error(NS))
    assert limit == pytest.approx(-0.5 + err)
    assert curves.paper_slope_limit(NS, PAPER, falls=False)[2] == pytest.approx(-0.5 - err)
