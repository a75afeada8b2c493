"""Scaling-law fitting recovers known exponents from synthetic Chinchilla-form losses."""

import numpy as np
import pytest

from replicate.pac import scaling


def _law(n, d, E=1.5, A=40.0, B=60.0, al=0.35, be=0.3):
    return E + A / n**al + B / d**be


def test_isoflop_profiles_recover_the_optimal_exponent():
    al, be = 0.35, 0.3
    budgets = np.logspace(12, 15, 4)
    n_grid = np.logspace(4, 9, 41)
    n_opt = []
    for c in budgets:
        d = c / (6 * n_grid)
        n_opt.append(scaling.isoflop_optimum(n_grid, _law(n_grid, d)))
    a, _ = scaling.power_law_exponent(budgets, n_opt)
    assert a == pytest.approx(be / (al + be), abs=0.03)  # 0.4615


def test_parametric_fit():
    rng = np.random.default_rng(0)
    n = np.repeat(np.logspace(4, 7, 5), 4)
    d = np.tile(np.logspace(5, 8, 4), 5)
    y = _law(n, d) * np.exp(rng.normal(0, 1e-4, n.size))
    fit = scaling.fit_chinchilla(n, d, y)
    assert fit["alpha"] == pytest.approx(0.35, abs=0.05) and fit["beta"] == pytest.approx(0.3, abs=0.05)
    assert fit["a_opt"] == pytest.approx(0.4615, abs=0.05)
    assert scaling.fit_chinchilla(n[:5], d[:5], y[:5]) is None


def test_edge_cases():
    assert scaling.isoflop_optimum([1e4, 1e5], [2.0, 1.0]) == pytest.approx(1e5)
    assert scaling.isoflop_optimum([1e4, 1e5, 1e6], [3.0, 2.0, 1.0]) == pytest.approx(1e6)  # monotone: edge
    with pytest.raises(ValueError):
        scaling.power_law_exponent([1.0, 1.0], [2.0, 3.0])


def test_steps_for_budget():
    # 1e10 FLOPs / (1e5 FLOPs per sample x 32 per batch) = 3125 steps -> 125 chunks of 25.
    assert scaling.steps_for_budget(1e10, 1e5, 32, 25) == 3125
    assert scaling.steps_for_budget(1e10, 1e5, 32, 1000) == 3000  # 3.125 chunks round to 3
    assert scaling.steps_for_budget(1e3, 1e5, 32, 25) == 25  # at least one chunk


def test_isoflop_fits_from_a_sweep_table():
    import pandas as pd

    al, be = 0.35, 0.3
    rows = []
    for c in np.logspace(12, 15, 4):
        for n in np.logspace(4, 9, 11):
            d = c / (6 * n)
            for method in ("BC", "PAC"):
                rows.append({"method": method, "budget": c, "N": n, "samples": d, "loss": _law(n, d, al=al, be=be),
                             "flat": 1.0 + 0 * n})
    res = pd.DataFrame(rows)
    res.loc[res.method == "PAC", "loss"] = 9.0  # the PAC rows must not enter the BC fit
    fits = scaling.isoflop_fits(res, {"BC": "loss", "PAC (flat)": "flat"})
    assert fits["BC"]["a"] == pytest.approx(be / (al + be), abs=0.05)
    assert len(fits["BC"]["n_opt"]) == 4 and list(fits) == ["BC", "PAC (flat)"]
    assert fits["BC"]["chinchilla"]["a_opt"] == pytest.approx(be / (al + be), abs=0.05)
    # A flat loss has the same optimum at every budget: no exponent is fitted.
    assert "a" not in fits["PAC (flat)"]
