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


def runs(diffs_by_seed):
    """Result rows with PAC - BC = diffs_by_seed[seed] on two datasets (BC score = seed / 10)."""
    rows = []
    for seed, d in enumerate(diffs_by_seed):
        for ds, shift in (("expert10", 0.0), ("expert50", 0.2)):
            rows.append({"dataset": ds, "seed": seed, "method": "BC", "normalised_mean": seed / 10 + shift})
            pac = seed / 10 + shift + d + shift
            rows.append({"dataset": ds, "seed": seed, "method": "PAC", "normalised_mean": pac})
    return pd.DataFrame(rows)


def test_pac_minus_bc_per_dataset_and_seed():
    per_ds, per_seed = analysis.pac_minus_bc(runs([0.1, 0.3, 0.2]))
    np.testing.assert_allclose(per_seed, [0.2, 0.4, 0.3])  # mean over datasets: d + 0.1
    assert per_ds.index.tolist() == ["expert10", "expert50"]
    np.testing.assert_allclose(per_ds.to_numpy(), [0.2, 0.4])


def test_mean_se():
    mean, se = analysis.mean_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and se == pytest.approx(math.sqrt(14 / 3) / 2)
    assert math.isnan(analysis.mean_se([0.5])[1])


@pytest.mark.parametrize("diffs, label, why", [
    ([0.3, 0.3], verdicts.NOT_REPRODUCED, "not assessed (2 seed(s)"),
    ([0.30, 0.31, 0.29], verdicts.REPRODUCED, "above 2 s.e."),
    ([-0.30, -0.31, -0.29], verdicts.NOT_REPRODUCED, "BC better"),
    ([0.1, -0.2, 0.15], verdicts.NOT_REPRODUCED, "inconclusive"),
])
def test_pac_vs_bc_verdict(diffs, label, why):
    got, reason = analysis.pac_vs_bc_verdict(diffs)
    assert got == label and why in reason


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
