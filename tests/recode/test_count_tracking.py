"""Notebook 10's count-tracking analysis against hand-computed values and plain NumPy/SciPy loops."""

import dataclasses

import jax
import numpy as np
import pytest
from scipy.stats import spearmanr

from replicate import verdicts
from replicate.recode import count_tracking, experiments, memory
from replicate.recode.streams import GridStream

R, P, N = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED


def test_final_mean_std_and_format_use_the_last_point():
    rho = np.array([[0.1, 0.5], [0.9, 0.7]])
    assert count_tracking.final_mean(rho) == pytest.approx(0.6)
    assert count_tracking.final_std(rho) == pytest.approx(0.1)  # population std of (0.5, 0.7)
    assert count_tracking.fmt_final(rho) == "0.600 ± 0.100"


def test_ablation_grid_adds_the_configs_value_sorted_once():
    cfg = memory.RecodeConfig(memory_size=64, gamma=0.999, eta=0.1)
    grid = count_tracking.ablation_grid(cfg, evictions=["uniform", "inverse_square"], gammas=[1.0, 0.999],
                                  memory_sizes=[32], etas=[0.5, 0.05])
    assert grid == {"eviction": ["uniform", "inverse_square"], "gamma": [0.999, 1.0],
                    "memory_size": [32, 64], "eta": [0.05, 0.1, 0.5]}


def test_ablation_grid_update_rules_start_with_the_configs_own():
    cfg = memory.RecodeConfig(memory_size=64, update="parallel")
    grid = count_tracking.ablation_grid(cfg, evictions=[], gammas=[], memory_sizes=[], etas=[],
                                        updates=["sequential", "parallel", "sequential"])
    assert grid["update"] == ["parallel", "sequential"]
    assert "update" not in count_tracking.ablation_grid(cfg, evictions=[], gammas=[], memory_sizes=[], etas=[])


def test_update_rule_gap_is_the_largest_seed_mean_difference():
    def row(ablation, value, atom, n):
        return {"ablation": ablation, "value": value, "rho_atom": np.array(atom), "rho_N": np.array(n)}

    rows = [row("update", "sequential", [0.8, 0.9], [0.7, 0.7]), row("update", "parallel", [0.85, 0.85], [0.6, 0.6]),
            row("eta", 0.1, [0.0], [0.0])]
    gap = count_tracking.update_rule_gap(rows, "sequential")
    assert list(gap) == ["parallel"] and gap["parallel"] == pytest.approx(0.1)
    assert count_tracking.update_rule_gap(rows[2:], "sequential") == {}


def _truth(cells, n_cells, gamma):
    counts = np.zeros(n_cells)
    for row in cells:
        counts *= gamma
        for c in row:
            counts[c] += 1.0
    return counts


def _spearman(est, truth):
    if np.ptp(est) == 0 or np.ptp(truth) == 0:
        return 0.0
    return spearmanr(est, truth).statistic


def test_true_counts_discount_per_embedding_or_per_call():
    """Per embedding (Algorithm 1): every embedding discounts everything seen before it, in the actors' order;
    per call: once per row. Written-out loops over a hand-made stream."""
    cells = np.array([[0, 1], [1, 1], [2, 0]])
    g = 0.5
    per_emb = np.zeros(3)
    for row in cells:
        for c in row:
            per_emb *= g
            per_emb[c] += 1.0
    got = experiments.true_counts(cells, 3, g, [1, 3])
    np.testing.assert_allclose(got[-1], per_emb)
    np.testing.assert_allclose(got[0], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(experiments.true_counts(cells, 3, g, [3], per="call")[0], _truth(cells, 3, g))
    with pytest.raises(ValueError, match="per"):
        experiments.true_counts(cells, 3, g, [3], per="episode")


def test_ngu_counts_are_inverse_squared_ngu_rewards():
    from replicate.recode import baselines

    ngu, epi = baselines.NGUConfig(), baselines.EpisodicConfig()
    ksum = np.array([[[0.0, 4.0, 1.0]]])
    err = np.array([[[3.0, 0.5, 100.0]]])
    mean, std = np.array([[1.0]]), np.array([[1.0]])
    mod = np.clip(1 + (err - 1.0) / 1.0, 1, 5)  # [3, 1, 5]
    want = ((np.sqrt(ksum) + epi.c) / mod) ** 2
    np.testing.assert_allclose(experiments.ngu_counts(ngu, epi, ksum, err, mean, std), want, rtol=1e-5)


def test_ablation_sweep_reuses_known_runs_and_correlates_with_its_own_gamma(monkeypatch):
    gs = GridStream(size=4, n_actors=2, episode_len=5, n_episodes=4, n_phases=2, embed_dim=8, seed=0)
    stream = experiments.build_stream(gs, [0, 1])
    points = [12, stream.cells.shape[0]]
    key = jax.random.PRNGKey(0)
    cfg = memory.RecodeConfig(memory_size=12, k=3, gamma=0.9, discount_per="call")
    truth_cum = np.stack([_truth(stream.cells[:p], gs.n_cells, 1.0) for p in points])
    ranks = np.arange(gs.n_cells, dtype=float)
    # RECODE itself is tested in test_memory/test_experiments: here a stand-in records the runs asked for and
    # returns counts chosen by hand, so that every correlation is known
    runs = []

    def fake_run_recode(c, st, pts, k):
        runs.append((c, list(pts), k))
        n = np.stack([ranks ** 2, -ranks])[:, None] * c.gamma
        return n, np.stack([ranks, ranks[::-1]])[:, None], None

    monkeypatch.setattr(experiments, "run_recode", fake_run_recode)
    known_n = np.stack([ranks, -ranks])[:, None]  # the main run's final counts: seed 0 increasing, seed 1 decreasing
    known_atom = np.stack([ranks, ranks])[:, None]
    grid = {"gamma": [0.9, 1.0], "eta": [0.1, 0.5], "memory_size": [12]}
    rows = count_tracking.ablation_sweep(cfg, grid, stream, points, key, truth_cum, known={cfg: (known_n, known_atom)})
    assert [(r["ablation"], r["value"]) for r in rows] == [("gamma", 0.9), ("gamma", 1.0), ("eta", 0.1), ("eta", 0.5),
                                                           ("memory_size", 12)]
    # only the two configurations that differ from the known one run, once each, to the last point
    assert runs == [(dataclasses.replace(cfg, gamma=1.0), points[-1:], key),
                    (dataclasses.replace(cfg, eta=0.5), points[-1:], key)]
    t09, t1 = _truth(stream.cells, gs.n_cells, 0.9), _truth(stream.cells, gs.n_cells, 1.0)
    for i in (0, 2, 4):  # the known configuration, reached three times
        np.testing.assert_allclose(rows[i]["rho_N"], [_spearman(ranks, t09), _spearman(-ranks, t09)])
        np.testing.assert_allclose(rows[i]["rho_atom"], [_spearman(ranks, t09)] * 2)
        np.testing.assert_allclose(rows[i]["rho_atom_cum"], [_spearman(ranks, truth_cum[-1])] * 2)
    # gamma = 1 is compared with the undiscounted truth, eta = 0.5 with the truth at the config's gamma 0.9
    np.testing.assert_allclose(rows[1]["rho_N"], [_spearman(ranks ** 2, t1), _spearman(-ranks, t1)])
    np.testing.assert_allclose(rows[1]["rho_atom"], [_spearman(ranks, t1), _spearman(ranks[::-1], t1)])
    np.testing.assert_allclose(rows[3]["rho_atom"], [_spearman(ranks, t09), _spearman(ranks[::-1], t09)])
    cum = truth_cum[-1]
    np.testing.assert_allclose(rows[3]["rho_atom_cum"], [_spearman(ranks, cum), _spearman(ranks[::-1], cum)])
    assert _spearman(ranks, t09) != pytest.approx(_spearman(ranks, t1))  # using the wrong truth would show


def _rows():
    return [{"ablation": "eviction", "value": "inverse_square", "rho_atom": np.array([0.8, 0.6]),
             "rho_N": np.array([0.5, 0.5]), "rho_atom_cum": np.array([0.1, 0.3])},
            {"ablation": "eviction", "value": "uniform", "rho_atom": np.array([0.5, 0.5]),
             "rho_N": np.array([0.2, 0.4]), "rho_atom_cum": np.array([0.0, 0.0])},
            {"ablation": "gamma", "value": 1.0, "rho_atom": np.array([0.2, 0.4]),
             "rho_N": np.array([0.1, 0.1]), "rho_atom_cum": np.array([0.9, 0.9])}]


def test_ablation_summaries_and_table():
    rows = _rows()
    assert count_tracking.ablation_means(rows, "eviction") == pytest.approx({"inverse_square": 0.7, "uniform": 0.5})
    means_n = count_tracking.ablation_means(rows, "eviction", "rho_N")
    assert means_n == pytest.approx({"inverse_square": 0.5, "uniform": 0.3})
    assert count_tracking.ablation_spread(rows, "eviction") == pytest.approx(0.1)
    assert count_tracking.ablation_spread(rows, "eta") == 0.0
    assert count_tracking.ablation_summary(rows) == pytest.approx(
        {"eviction=inverse_square": 0.7, "eviction=uniform": 0.5, "gamma=1.0": 0.3})
    table = count_tracking.ablation_table(rows)
    assert table.iloc[0]["ρ nearest atom (vs own discounted truth)"] == "0.700 [0.600, 0.800]"
    assert list(table["ρ N"]) == ["0.500", "0.300", "0.100"]
    assert list(table["ρ nearest atom vs cumulative"]) == ["0.200", "0.000", "0.900"]
    assert [count_tracking.ablation_label(v) for v in ["inverse_square", "inverse", "uniform", 0.5]] == \
        ["1/c²", "1/c", "uniform", "0.5"]


def test_count_tracking_verdict_rules():
    assert count_tracking.tracking_verdict(0.8, 0.1) == R
    assert count_tracking.tracking_verdict(0.79, 0.8) == P
    assert count_tracking.tracking_verdict(0.79, 0.79) == N
    assert count_tracking.forgetting_verdict(0.59, 0.8) == R
    assert count_tracking.forgetting_verdict(0.7, 0.8) == N
    assert count_tracking.ordering_verdict([(0.9, 0.5), (0.8, 0.6)], [0.1, 0.1]) == R
    assert count_tracking.ordering_verdict([(0.9, 0.5), (0.8, 0.75)], [0.1, 0.1]) == P
    assert count_tracking.ordering_verdict([(0.9, 0.5), (0.6, 0.8)], [0.1, 0.1]) == N
    with pytest.raises(ValueError):
        count_tracking.ordering_verdict([(1.0, 0.0)], [])


def test_eviction_verdict():
    assert count_tracking.eviction_verdict({"inverse_square": 0.9, "uniform": 0.7, "inverse": 0.75}, 0.1) == R
    assert count_tracking.eviction_verdict({"inverse_square": 0.8, "uniform": 0.75}, 0.1) == P  # best, within spread
    assert count_tracking.eviction_verdict({"inverse_square": 0.7, "uniform": 0.75}, 0.1) == P  # second, within spread
    assert count_tracking.eviction_verdict({"inverse_square": 0.5, "uniform": 0.75}, 0.1) == N
    assert count_tracking.eviction_verdict({"uniform": 0.9, "inverse": 0.5}, 0.1) == N  # rule not in the ablation
    assert count_tracking.eviction_verdict({"inverse_square": 0.9}, 0.1) == N  # nothing to rank


def test_paired_better_and_rivals_verdict_use_the_ci_of_seed_differences():
    ours = np.array([0.9, 0.8, 0.85, 0.95, 0.9])
    far = ours - np.array([0.3, 0.25, 0.35, 0.3, 0.3])  # clearly below, every seed
    noisy = ours + np.array([0.2, -0.3, 0.25, -0.2, -0.1])  # mean diff > 0 but the CI straddles 0
    assert count_tracking.paired_better(ours, far)
    assert not count_tracking.paired_better(ours, noisy) and np.mean(ours - noisy) > 0
    assert count_tracking.paired_better(np.array([0.5]), np.array([0.4]))  # one seed: the sign
    assert count_tracking.rivals_verdict(ours, {"a": far, "b": noisy}) == (P, ["a"])
    assert count_tracking.rivals_verdict(ours, {"a": far}) == (R, ["a"])
    assert count_tracking.rivals_verdict(ours, {"b": noisy})[0] == N
