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


def test_profile_optimum_flags_edges_and_finds_the_vertex():
    n = np.logspace(3, 6, 7)
    loss = (np.log10(n) - 4.5) ** 2 + 1.0  # vertex at 10^4.5
    assert scaling.profile_optimum(n, loss) == (pytest.approx(10**4.5), True)
    assert scaling.profile_optimum(n, -np.log10(n)) == (pytest.approx(1e6), False)  # best at the largest size
    assert scaling.profile_optimum(n[::-1], np.log10(n[::-1])) == (pytest.approx(1e3), False)  # order-free
    assert scaling.profile_optimum(n[:2], [2.0, 1.0]) == (pytest.approx(n[1]), False)  # 2 sizes: never interior
    np.testing.assert_allclose(scaling.isoflop_parabola(n, loss), [1.0, -9.0, 21.25], atol=1e-9)


def test_optima_table_and_exponents_per_seed():
    import pandas as pd

    rows = []
    for seed, a in ((0, 0.5), (1, 0.4)):
        for c in (1e9, 1e10, 1e11):
            vertex = 4.0 + a * np.log10(c / 1e9)
            for n in np.logspace(3, 6, 7):
                rows.append({"method": "BC", "seed": seed, "budget": c, "N": n, "loss": (np.log10(n) - vertex) ** 2})
    res = pd.DataFrame(rows)
    opt = scaling.optima_table(res, "loss")
    assert len(opt) == 6 and opt.interior.all() and (opt.sizes == 7).all()
    ex = scaling.exponents(opt)
    np.testing.assert_allclose(ex.a, [0.5, 0.4], atol=1e-6)
    assert ex.interior.tolist() == [3, 3]
    edge = scaling.exponents(scaling.optima_table(res[res.N <= 1e4], "loss"))  # every optimum at the largest size
    assert np.isnan(edge.a).all() and edge.interior.tolist() == [0, 0]

    empty = scaling.optima_table(res[res.N < 0], "loss")
    assert empty.empty and list(empty.columns) == ["method", "seed", "budget", "n_opt", "interior", "sizes"]
    assert empty[empty.interior].empty and empty[~empty.interior].budget.empty  # boolean masks work when empty
    assert scaling.exponents(empty).empty and "a" in scaling.exponents(empty).columns
