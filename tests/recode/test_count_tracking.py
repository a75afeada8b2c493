"""Notebook 10's count-tracking analysis against hand-computed values and plain NumPy/SciPy loops."""

import dataclasses

import jax
import numpy as np
import pytest
from scipy.stats import spearmanr

from replicate import verdicts
from replicate.recode import count_tracking, experiments, memory
from replicate.recode.streams import GridStream

R, P, N, INC = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED, verdicts.INCONCLUSIVE


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
    assert count_tracking.ablation_summary(rows) == pytest.approx(
        {"eviction=inverse_square": 0.7, "eviction=uniform": 0.5, "gamma=1.0": 0.3})
    table = count_tracking.ablation_table(rows)
    assert table.iloc[0]["ρ nearest atom (vs own discounted truth)"] == "0.700 [0.600, 0.800]"
    assert list(table["ρ N"]) == ["0.500", "0.300", "0.100"]
    assert list(table["ρ nearest atom vs cumulative"]) == ["0.200", "0.000", "0.900"]
    assert [count_tracking.ablation_label(v) for v in ["inverse_square", "inverse", "uniform", 0.5]] == \
        ["1/c²", "1/c", "uniform", "0.5"]


def test_final_is_the_last_point_per_seed():
    np.testing.assert_array_equal(count_tracking.final(np.array([[0.1, 0.5], [0.9, 0.7]])), [0.5, 0.7])
    with pytest.raises(ValueError, match="S, P"):
        count_tracking.final(np.zeros(3))


def test_random_tracker_is_seeded_and_uninformative():
    a = count_tracking.random_tracker(3, 2, 400, seed=0)
    assert a.shape == (3, 2, 400) and (a >= 0).all() and (a < 1).all()
    np.testing.assert_array_equal(a, count_tracking.random_tracker(3, 2, 400, seed=0))
    assert not np.array_equal(a[0], a[1])  # seeds differ
    truth = np.arange(400.0)[None].repeat(2, 0)
    rho = experiments.correlations(a, truth)
    assert np.abs(rho).max() < 0.2  # ~ N(0, 1/sqrt(400)): no information
    with pytest.raises(ValueError):
        count_tracking.random_tracker(0, 2, 4, seed=0)


def test_tracking_control_passes_only_when_the_paired_interval_shows_the_known_difference():
    exact = np.full(5, 0.9)
    noise = np.array([0.02, -0.03, 0.01, 0.0, -0.01])
    c = count_tracking.tracking_control(exact, noise, "discounted")
    lo = verdicts.paired_interval(exact, noise)[1]
    assert c["passed"] and c["value"] == pytest.approx(lo) and c["threshold"] == 0.0
    assert "cumulative counts" in c["name"] and "discounted truth" in c["name"]
    assert not count_tracking.tracking_control(exact[:1], noise[:1], "cumulative")["passed"]  # one seed: no interval
    tie = noise + 0.01 * np.array([1, -1, 1, -1, 0])
    assert not count_tracking.tracking_control(noise, tie, "cumulative")["passed"]
    with pytest.raises(ValueError, match="target"):
        count_tracking.tracking_control(exact, noise, "episodic")


def test_tracking_controls_on_a_real_stream():
    gs = GridStream(size=6, n_actors=4, episode_len=8, n_episodes=12, n_phases=3, embed_dim=8, seed=0)
    stream = experiments.build_stream(gs, [0])
    T = stream.cells.shape[0]
    disc = experiments.true_counts(stream.cells, gs.n_cells, 0.99, [T // 2, T])
    cum = experiments.true_counts(stream.cells, gs.n_cells, 1.0, [T // 2, T])
    c = count_tracking.tracking_controls(disc, cum, n_seeds=5, seed=0)
    assert set(c) == {"discounted", "cumulative"} and all(v["passed"] for v in c.values())
    # the exact counter's score is the Spearman correlation of the two truths at the last point
    rho = _spearman(cum[-1], disc[-1])
    noinfo = count_tracking.random_tracker(5, 1, gs.n_cells, 0)
    lo = verdicts.paired_interval(np.full(5, rho), experiments.correlations(noinfo, disc[-1:])[:, 0])[1]
    assert c["discounted"]["value"] == pytest.approx(lo)
    assert not any(v["passed"] for v in count_tracking.tracking_controls(disc, cum, n_seeds=1, seed=0).values())


BASE = np.array([0.50, 0.52, 0.48, 0.51, 0.49])
OK = verdicts.control("ok", True, 0.5, 0.0)
FAILED = verdicts.control("failed", False, -0.1, 0.0)
CT = count_tracking
TRACKERS = [CT.RECODE, CT.RECODE_NO_DISCOUNT, CT.EMM, CT.NGU, CT.RND]
# (row index, target, better, rivals) of tracking_rows' comparison rows
COMPARISONS = [(1, "disc", CT.RECODE, [CT.RND, CT.NGU, CT.EMM]), (2, "cum", CT.RECODE, [CT.NGU, CT.RND]),
               (3, "cum", CT.RECODE, [CT.EMM]), (4, "disc", CT.RECODE, [CT.RECODE_NO_DISCOUNT]),
               (5, "cum", CT.RECODE_NO_DISCOUNT, [CT.RECODE])]


def _tracking(disc=None, cum=None, c_disc=OK, c_cum=OK):
    arms = {"disc": {n: BASE.copy() for n in TRACKERS}, "cum": {n: BASE.copy() for n in TRACKERS}}
    arms["disc"].update(disc or {})
    arms["cum"].update(cum or {})
    return count_tracking.tracking_rows(arms["disc"], arms["cum"], {"discounted": c_disc, "cumulative": c_cum},
                                        episodes=100, figure="figures/x.png")


def test_tracking_threshold_row_reaches_every_outcome():
    assert _tracking(disc={CT.RECODE: BASE + 0.4})[0]["verdict"] == R  # 0.9, interval above 0.8
    wide = np.array([0.70, 0.95, 0.80, 0.90, 0.78])  # mean 0.826, interval contains 0.8
    assert _tracking(disc={CT.RECODE: wide})[0]["verdict"] == P
    assert _tracking()[0]["verdict"] == N
    assert _tracking(disc={CT.RECODE: BASE + 0.4}, c_disc=FAILED)[0]["verdict"] == INC
    row = _tracking()[0]
    assert row["evidence"]["kind"] == "threshold" and row["evidence"]["threshold"] == CT.TRACKING_THRESHOLD
    assert row["controls"] == [OK] and verdicts.recompute(row) == row["verdict"]


@pytest.mark.parametrize("index, target, better, rivals", COMPARISONS)
def test_tracking_comparison_rows_reach_every_outcome(index, target, better, rivals):
    def label(arms, fail=False):
        row = _tracking(**{target: arms, f"c_{target}": FAILED if fail else OK})[index]
        assert verdicts.recompute(row) == row["verdict"]
        assert row["evidence"]["better"] == better and row["evidence"]["than"] == rivals
        return row["verdict"]

    assert label({better: BASE + 0.3}) == R
    assert label({}) == N  # ties beat nobody
    if len(rivals) > 1:  # one rival: "some but not all" cannot happen
        assert label({better: BASE + 0.3, rivals[0]: BASE + 0.3}) == P
    assert label({better: BASE + 0.3}, fail=True) == INC
    one_seed = {n: BASE[:1] for n in TRACKERS}
    row = count_tracking.tracking_rows(one_seed, one_seed, {"discounted": OK, "cumulative": OK}, episodes=1,
                                       figure="")[index]
    assert row["verdict"] == INC  # one seed: no interval


def test_tracking_rows_attach_the_control_of_their_truth_and_validate_inputs():
    rows = _tracking(c_disc=FAILED)
    assert [r["verdict"] == INC for r in rows] == [True, True, False, False, True, False]
    assert all("(our extension)" in r["claim"] for r in rows[1:])
    assert all(verdicts.NO_PAPER_RESULT in r["paper"] for r in rows[1:])
    with pytest.raises(ValueError, match="per-seed scores"):
        count_tracking.tracking_rows({CT.RECODE: BASE}, {}, {"discounted": OK, "cumulative": OK}, episodes=1,
                                     figure="")
    with pytest.raises(ValueError, match="controls"):
        count_tracking.tracking_rows({n: BASE for n in TRACKERS}, {n: BASE for n in TRACKERS}, {"discounted": OK},
                                     episodes=1, figure="")


def _eviction(values, control=OK):
    rows = [{"ablation": "eviction", "value": k, "rho_N": np.asarray(v), "rho_atom": np.asarray(v)}
            for k, v in values.items()]
    rows.append({"ablation": "eta", "value": 0.1, "rho_N": BASE + 0.9, "rho_atom": BASE})  # not an arm
    return count_tracking.eviction_row(rows, control, figure="figures/x.png")


def test_eviction_row_reaches_every_outcome():
    assert _eviction({"inverse_square": BASE + 0.3, "inverse": BASE, "uniform": BASE})["verdict"] == R
    assert _eviction({"inverse_square": BASE + 0.3, "inverse": BASE + 0.3, "uniform": BASE})["verdict"] == P
    assert _eviction({"inverse_square": BASE, "inverse": BASE + 0.1, "uniform": BASE})["verdict"] == N
    assert _eviction({"inverse_square": BASE + 0.3, "uniform": BASE}, FAILED)["verdict"] == INC
    assert _eviction({"inverse_square": BASE[:1] + 0.3, "uniform": BASE[:1]})["verdict"] == INC  # one seed
    row = _eviction({"inverse_square": BASE + 0.3, "smallest": BASE})
    assert row["evidence"]["better"] == "1/c²" and row["evidence"]["than"] == ["smallest"]
    assert verdicts.recompute(row) == row["verdict"] == R
    with pytest.raises(ValueError, match="inverse_square"):
        _eviction({"uniform": BASE, "inverse": BASE})
    with pytest.raises(ValueError, match="at least one other"):
        _eviction({"inverse_square": BASE})
