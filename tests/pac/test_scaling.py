"""Scaling-law fitting recovers known exponents from synthetic Chinchilla-form losses."""

import numpy as np
import pytest

from replicate.pac import scaling as S


def _law(n, d, E=1.5, A=40.0, B=60.0, al=0.35, be=0.3):
    return E + A / n**al + B / d**be


def test_isoflop_profiles_recover_the_optimal_exponent():
    al, be = 0.35, 0.3
    budgets = np.logspace(12, 15, 4)
    n_grid = np.logspace(4, 9, 41)
    n_opt = []
    for c in budgets:
        d = c / (6 * n_grid)
        n_opt.append(S.isoflop_optimum(n_grid, _law(n_grid, d)))
    a, _ = S.power_law_exponent(budgets, n_opt)
    assert a == pytest.approx(be / (al + be), abs=0.03)  # 0.4615


def test_parametric_fit():
    rng = np.random.default_rng(0)
    n = np.repeat(np.logspace(4, 7, 5), 4)
    d = np.tile(np.logspace(5, 8, 4), 5)
    y = _law(n, d) * np.exp(rng.normal(0, 1e-4, n.size))
    fit = S.fit_chinchilla(n, d, y)
    assert fit["alpha"] == pytest.approx(0.35, abs=0.05) and fit["beta"] == pytest.approx(0.3, abs=0.05)
    assert fit["a_opt"] == pytest.approx(0.4615, abs=0.05)
    assert S.fit_chinchilla(n[:5], d[:5], y[:5]) is None


def test_edge_cases():
    assert S.isoflop_optimum([1e4, 1e5], [2.0, 1.0]) == pytest.approx(1e5)
    assert S.isoflop_optimum([1e4, 1e5, 1e6], [3.0, 2.0, 1.0]) == pytest.approx(1e6)  # monotone: edge
    with pytest.raises(ValueError):
        S.power_law_exponent([1.0, 1.0], [2.0, 3.0])
