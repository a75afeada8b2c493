"""Summaries and verdict rules of notebooks 30-32, against hand computations."""

import math

import numpy as np
import pandas as pd
import pytest

from replicate import verdicts
from replicate.pac import analysis, experiment


def test_pool_tier_returns_weights_by_episodes():
    tiers = pd.DataFrame([
        {"dataset": "a", "task": "t1", "tier": "random", "return_mean": 1.0, "episodes": 1},
        {"dataset": "a", "task": "t1", "tier": "expert", "return_mean": 10.0, "episodes": 3},
        {"dataset": "b", "task": "t1", "tier": "random", "return_mean": 4.0, "episodes": 3},
        {"dataset": "b", "task": "t1", "tier": "expert", "return_mean": 20.0, "episodes": 1},
        {"dataset": "a", "task": "t0", "tier": "random", "return_mean": 2.0, "episodes": 2},
        {"dataset": "a", "task": "t0", "tier": "expert", "return_mean": 5.0, "episodes": 2},
    ])
    pooled = analysis.pool_tier_returns(tiers)
    assert list(pooled.columns) == ["task", "tier", "return", "episodes"]
    want = [("t1", "random"), ("t1", "expert"), ("t0", "random"), ("t0", "expert")]
    assert list(zip(pooled.task, pooled.tier)) == want
    np.testing.assert_allclose(pooled["return"], [(1 + 12) / 4, (30 + 20) / 4, 2.0, 5.0])
    assert pooled.episodes.tolist() == [4, 4, 2, 2]
    assert analysis.tier_gap(pooled, ["t0", "t1"], best="expert") == {"t0": 3.0, "t1": 12.5 - 3.25}


def runs(diffs_by_seed, method="PAC"):
    """Result rows with method - BC = diffs_by_seed[seed] + 0.1 (mean over two datasets; BC score = seed / 10)."""
    rows = []
    for seed, d in enumerate(diffs_by_seed):
        for ds, shift in (("expert10", 0.0), ("expert50", 0.2)):
            rows.append({"dataset": ds, "seed": seed, "method": "BC", "normalised_mean": seed / 10 + shift})
            other = seed / 10 + shift + d + shift
            rows.append({"dataset": ds, "seed": seed, "method": method, "normalised_mean": other})
    return pd.DataFrame(rows)


def test_minus_bc_per_dataset_and_seed():
    per_ds, per_seed = analysis.minus_bc(runs([0.1, 0.3, 0.2], "IQL"), "IQL")
    np.testing.assert_allclose(per_seed, [0.2, 0.4, 0.3])  # mean over datasets: d + 0.1
    assert per_ds.index.tolist() == ["expert10", "expert50"]
    np.testing.assert_allclose(per_ds.to_numpy(), [0.2, 0.4])


def test_mean_se():
    mean, se = analysis.mean_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and se == pytest.approx(math.sqrt(14 / 3) / 2)
    assert math.isnan(analysis.mean_se([0.5])[1])


@pytest.mark.parametrize("diffs, want", [
    ([0.3] * 4, "n/a"),
    ([0.30, 0.31, 0.29, 0.30, 0.32], "better"),
    ([-0.30, -0.31, -0.29, -0.30, -0.32], "worse"),
    ([0.1, -0.2, 0.15, 0.0, 0.05], "tie"),
])
def test_compare_by_confidence_interval(diffs, want):
    assert analysis.compare(diffs) == want


def test_compare_matches_a_hand_t_interval():
    # mean 0.1, std 0.1, n = 5: half-width t(0.975, 4) * 0.1 / sqrt(5) = 2.776 * 0.0447 = 0.124 > 0.1 -> tie
    diffs = 0.1 + 0.1 * np.array([-1.2649, -0.6325, 0.0, 0.6325, 1.2649])
    assert np.std(diffs, ddof=1) == pytest.approx(0.1, rel=1e-3)
    assert analysis.compare(diffs) == "tie" and analysis.compare(diffs + 0.03) == "better"


def test_anchor_competence_needs_every_task():
    anchor = pd.DataFrame([
        {"method": "BC", "seed": 0, "norm/a": 0.95, "norm/b": 0.95},
        {"method": "BC", "seed": 1, "norm/a": 0.93, "norm/b": 0.80},  # b: mean 0.875 < 0.9
        {"method": "IQL", "seed": 0, "norm/a": 1.1, "norm/b": 0.9},
    ])
    got = analysis.anchor_competence(anchor)
    assert got.index.tolist() == ["BC", "IQL"] and got.competent.tolist() == [False, True]
    assert got.loc["BC", "worst_task"] == "b" and got.loc["BC", "worst"] == pytest.approx(0.875)


def test_three_readings():
    ok = verdicts.REPRODUCED
    no = verdicts.NOT_REPRODUCED
    # Gate: nothing is judged without a competent BC anchor.
    for label, why in (analysis.data_shows_effect_verdict({"IQL": "better"}, False),
                       analysis.pac_vs_bc_verdict("better", False, True),
                       analysis.pac_among_peers_verdict({"IQL": "tie"}, False)):
        assert label == no and "not competent" in why
    assert analysis.data_shows_effect_verdict({"TD3+BC": "tie", "IQL": "better"}, True)[0] == ok
    label, why = analysis.data_shows_effect_verdict({"TD3+BC": "tie", "IQL": "worse"}, True)
    assert label == no and "cannot show" in why
    assert analysis.data_shows_effect_verdict({"TD3+BC": "n/a", "IQL": "better"}, True)[0] == no
    assert analysis.pac_vs_bc_verdict("better", True, False) == (ok, "PAC - BC: 95 % CI above 0")
    label, why = analysis.pac_vs_bc_verdict("tie", True, False)
    assert label == no and "inconclusive" in why and "may not show" in why
    label, why = analysis.pac_vs_bc_verdict("worse", True, True)
    assert label == no and "BC better" in why and "a peer does beat BC" in why
    assert analysis.pac_among_peers_verdict({"TD3+BC": "tie", "IQL": "better"}, True) == (ok, "PAC beats IQL")
    label, why = analysis.pac_among_peers_verdict({"TD3+BC": "worse", "IQL": "better"}, True)
    assert label == no and "TD3+BC" in why


def test_ci_table_matches_mean_ci_and_order():
    res = pd.concat([runs([0.1, 0.3, 0.2], "IQL"), runs([0.0, 0.1, 0.2], "PAC")])
    res = res.drop_duplicates(["dataset", "seed", "method"])  # BC rows appear in both
    table = analysis.ci_table(res, order=["PAC", "BC", "IQL"])
    assert table.method.tolist() == ["PAC", "BC", "IQL"] * 2 and table.dataset.tolist()[:3] == ["expert10"] * 3
    g = res[(res.dataset == "expert50") & (res.method == "IQL")].normalised_mean
    want = verdicts.mean_ci(g)
    got = table[(table.dataset == "expert50") & (table.method == "IQL")].iloc[0]
    assert (got["mean"], got["lo"], got["hi"]) == pytest.approx(want) and got["seeds"] == 3


def test_ranking():
    res = runs([0.1, 0.3, 0.2], "IQL")
    assert [m for m, _ in analysis.ranking(res)] == ["IQL", "BC"]
    assert analysis.ranking(res)[1][1] == pytest.approx(np.mean([s / 10 + sh for s in range(3) for sh in (0, .2)]))


def test_alpha_and_scaling_verdicts_use_the_three_labels():
    assert analysis.alpha_verdict(0.5) == verdicts.REPRODUCED
    assert analysis.alpha_verdict(1.0) == verdicts.NOT_REPRODUCED
    label, why = analysis.scaling_verdict(3, 3)
    assert label == verdicts.NOT_REPRODUCED and "fitted at tiny scale" in why
    label, why = analysis.scaling_verdict(2, 5)
    assert label == verdicts.NOT_REPRODUCED and "too few" in why
    assert analysis.fmt_exponent({"a": 0.1234}) == "0.12" and analysis.fmt_exponent({}) == "n/a"


def test_running_mean_matches_a_loop():
    x = np.array([1.0, 3.0, 2.0, 8.0, 0.0])
    want = [np.mean(x[i:i + 2]) for i in range(4)]
    np.testing.assert_allclose(analysis.running_mean(x, 2), want)
    np.testing.assert_allclose(analysis.running_mean(x, 1), x)


def test_methods():
    assert experiment.methods(0.75) == {"BC": (1.0, 0.0), "PAC": (0.75, 1.0)}
