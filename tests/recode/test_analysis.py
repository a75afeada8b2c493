"""The RECODE notebooks' analysis helpers against hand-computed values and plain NumPy/SciPy loops."""

import dataclasses
import math

import jax
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from replicate import verdicts
from replicate.recode import analysis, experiments, memory, representations
from replicate.recode.streams import GridStream
from replicate.rl import exploration

R, P, N = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED


# ----------------------------------------------------------------------------- notebook 10


def test_final_mean_std_and_format_use_the_last_point():
    rho = np.array([[0.1, 0.5], [0.9, 0.7]])
    assert analysis.final_mean(rho) == pytest.approx(0.6)
    assert analysis.final_std(rho) == pytest.approx(0.1)  # population std of (0.5, 0.7)
    assert analysis.fmt_final(rho) == "0.600 ± 0.100"


def test_ablation_grid_adds_the_configs_value_sorted_once():
    cfg = memory.RecodeConfig(memory_size=64, gamma=0.999, eta=0.1)
    grid = analysis.ablation_grid(cfg, evictions=["uniform", "inverse_square"], gammas=[1.0, 0.999],
                                  memory_sizes=[32], etas=[0.5, 0.05])
    assert grid == {"eviction": ["uniform", "inverse_square"], "gamma": [0.999, 1.0],
                    "memory_size": [32, 64], "eta": [0.05, 0.1, 0.5]}


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


def test_ablation_sweep_reuses_known_runs_and_correlates_with_its_own_gamma():
    gs = GridStream(size=4, n_actors=2, episode_len=5, n_episodes=4, n_phases=2, embed_dim=8, seed=0)
    stream = experiments.build_stream(gs, [0, 1])
    points = [12, stream.cells.shape[0]]
    key = jax.random.PRNGKey(0)
    cfg = memory.RecodeConfig(memory_size=12, k=3, gamma=0.9, discount_per="call")
    truth_cum = np.stack([_truth(stream.cells[:p], gs.n_cells, 1.0) for p in points])
    # the "known" main run: counts chosen by hand so that its correlations are known exactly
    ranks = np.arange(gs.n_cells, dtype=float)
    known_n = np.stack([ranks, -ranks])[:, None]  # seed 0 increasing, seed 1 decreasing
    known_atom = np.stack([ranks, ranks])[:, None]
    rows = analysis.ablation_sweep(cfg, {"gamma": [0.9, 1.0], "eta": [0.1]}, stream, points, key, truth_cum,
                                   known={cfg: (known_n, known_atom)})
    assert [(r["ablation"], r["value"]) for r in rows] == [("gamma", 0.9), ("gamma", 1.0), ("eta", 0.1)]
    t09 = _truth(stream.cells, gs.n_cells, 0.9)
    expect_known_n = [_spearman(known_n[s, 0], t09) for s in range(2)]
    np.testing.assert_allclose(rows[0]["rho_N"], expect_known_n)
    np.testing.assert_allclose(rows[0]["rho_atom"], [_spearman(ranks, t09)] * 2)
    np.testing.assert_allclose(rows[0]["rho_atom_cum"], [_spearman(ranks, truth_cum[-1])] * 2)
    np.testing.assert_allclose(rows[2]["rho_N"], rows[0]["rho_N"])  # eta=0.1 is the known config again
    # gamma = 1: a fresh run, compared with the undiscounted truth
    n1, atom1, _ = experiments.run_recode(dataclasses.replace(cfg, gamma=1.0), stream, points[-1:], key)
    t1 = _truth(stream.cells, gs.n_cells, 1.0)
    np.testing.assert_allclose(rows[1]["rho_N"], [_spearman(n1[s, 0], t1) for s in range(2)])
    np.testing.assert_allclose(rows[1]["rho_atom"], [_spearman(atom1[s, 0], t1) for s in range(2)])


def _rows():
    return [{"ablation": "eviction", "value": "inverse_square", "rho_atom": np.array([0.8, 0.6]),
             "rho_N": np.array([0.5, 0.5]), "rho_atom_cum": np.array([0.1, 0.3])},
            {"ablation": "eviction", "value": "uniform", "rho_atom": np.array([0.5, 0.5]),
             "rho_N": np.array([0.2, 0.4]), "rho_atom_cum": np.array([0.0, 0.0])},
            {"ablation": "gamma", "value": 1.0, "rho_atom": np.array([0.2, 0.4]),
             "rho_N": np.array([0.1, 0.1]), "rho_atom_cum": np.array([0.9, 0.9])}]


def test_ablation_summaries_and_table():
    rows = _rows()
    assert analysis.ablation_means(rows, "eviction") == pytest.approx({"inverse_square": 0.7, "uniform": 0.5})
    assert analysis.ablation_means(rows, "eviction", "rho_N") == pytest.approx({"inverse_square": 0.5, "uniform": 0.3})
    assert analysis.ablation_spread(rows, "eviction") == pytest.approx(0.1)
    assert analysis.ablation_spread(rows, "eta") == 0.0
    assert analysis.ablation_summary(rows) == pytest.approx(
        {"eviction=inverse_square": 0.7, "eviction=uniform": 0.5, "gamma=1.0": 0.3})
    table = analysis.ablation_table(rows)
    assert table.iloc[0]["ρ nearest atom (vs own discounted truth)"] == "0.700 [0.600, 0.800]"
    assert list(table["ρ N"]) == ["0.500", "0.300", "0.100"]
    assert list(table["ρ nearest atom vs cumulative"]) == ["0.200", "0.000", "0.900"]
    assert [analysis.ablation_label(v) for v in ["inverse_square", "inverse", "uniform", 0.5]] == \
        ["1/c²", "1/c", "uniform", "0.5"]


def test_count_tracking_verdict_rules():
    assert analysis.tracking_verdict(0.8, 0.1) == R
    assert analysis.tracking_verdict(0.79, 0.8) == P
    assert analysis.tracking_verdict(0.79, 0.79) == N
    assert analysis.forgetting_verdict(0.59, 0.8) == R
    assert analysis.forgetting_verdict(0.7, 0.8) == N
    assert analysis.ordering_verdict([(0.9, 0.5), (0.8, 0.6)], [0.1, 0.1]) == R
    assert analysis.ordering_verdict([(0.9, 0.5), (0.8, 0.75)], [0.1, 0.1]) == P
    assert analysis.ordering_verdict([(0.9, 0.5), (0.6, 0.8)], [0.1, 0.1]) == N
    with pytest.raises(ValueError):
        analysis.ordering_verdict([(1.0, 0.0)], [])


def test_eviction_verdict():
    assert analysis.eviction_verdict({"inverse_square": 0.9, "uniform": 0.7, "inverse": 0.75}, 0.1) == R
    assert analysis.eviction_verdict({"inverse_square": 0.8, "uniform": 0.75}, 0.1) == P  # best, within spread
    assert analysis.eviction_verdict({"inverse_square": 0.7, "uniform": 0.75}, 0.1) == P  # second, within spread
    assert analysis.eviction_verdict({"inverse_square": 0.5, "uniform": 0.75}, 0.1) == N
    assert analysis.eviction_verdict({"uniform": 0.9, "inverse": 0.5}, 0.1) == N  # rule not in the ablation
    assert analysis.eviction_verdict({"inverse_square": 0.9}, 0.1) == N  # nothing to rank


# ----------------------------------------------------------------------------- notebooks 11-12


def test_tail_length_matches_both_notebooks_rules():
    for n in range(1, 200):
        assert analysis.tail_length(n) == max(1, int(round(n * 0.2)))
        assert analysis.tail_length(n, rounding="floor") == max(1, n // 5)
    assert analysis.tail_length(8) == 2 and analysis.tail_length(8, rounding="floor") == 1
    with pytest.raises(ValueError):
        analysis.tail_length(8, rounding="up")


def test_final_success_rate_ignores_nan_updates():
    sr = np.array([[0.0, 0.0, 0.0, 1.0, np.nan, 0.5, 0.0, np.nan, 1.0, 0.5],
                   [np.nan] * 10])
    # last 2 updates: seed 0 -> mean(1.0, 0.5) = 0.75, seed 1 none ended -> ignored
    assert analysis.final_success_rate(sr) == pytest.approx(0.75)
    assert analysis.final_success_rate(np.full((2, 4), np.nan)) == 0.0
    # floor rule on 8 updates takes 1 update, nearest takes 2
    sr8 = np.array([[0.0] * 6 + [1.0, 0.0]])
    assert analysis.final_success_rate(sr8) == pytest.approx(0.5)
    assert analysis.final_success_rate(sr8, rounding="floor") == 0.0


def _minigrid_run():
    never = exploration.NEVER
    steps = np.tile(np.arange(1, 6) * 100, (3, 1))
    first_curve = np.array([[never, never, 4, 4, 4],       # seed 0: first success in update 3 -> 300 steps
                            [never, never, never, never, never],
                            [1, 1, 1, 1, 1]])              # seed 2: update 1 -> 100 steps
    return {"steps": steps, "env_steps": 500, "first_success_curve": first_curve,
            "success_rate": np.array([[0, 0, 1, 1, 0.5], [0, 0, 0, 0, np.nan], [1, 1, 1, 1, 1.0]]),
            "distinct": np.array([[1, 2, 3, 4, 5], [1, 1, 2, 2, 2], [3, 3, 3, 3, 8]])}


def test_exploration_summary_of_a_minigrid_run():
    s = analysis.exploration_summary(_minigrid_run())
    y = np.array([300.0, 500.0, 100.0])  # the unsolved seed counts at the budget
    assert s["median"] == 300.0 and s["q25"] == np.percentile(y, 25) and s["q75"] == np.percentile(y, 75)
    assert s["solved"] == pytest.approx(2 / 3) and s["censored"] is False
    assert s["final_success"] == pytest.approx((0.5 + 1.0) / 2)  # tail of 1 update; seed 1 ended no episode
    assert s["cells"] == pytest.approx(5.0)


def _s(solved, median, final=0.0, censored=False):
    return {"solved": solved, "median": median, "final_success": final, "censored": censored}


def test_explores_better_verdicts():
    summ = {"recode": _s(1.0, 10), "rnd": _s(1.0, 20), "ngu": _s(1.0, 5), "none": _s(0.5, 15)}
    assert analysis.beaten_rivals(summ, "recode", ["rnd", "ngu", "none"]) == ["rnd", "none"]
    assert analysis.rivals_verdict(2, 2) == R and analysis.rivals_verdict(1, 2) == P
    assert analysis.rivals_verdict(0, 2) == N and analysis.rivals_verdict(0, 0) == N
    assert analysis.tasks_verdict({"a": ["rnd", "ngu"], "b": ["ngu", "rnd"]}, 2) == R
    assert analysis.tasks_verdict({"a": ["rnd", "ngu"], "b": []}, 2) == P
    assert analysis.tasks_verdict({"a": [], "b": []}, 2) == N
    assert analysis.tasks_verdict({}, 2) == N
    cens = _s(0.0, 100, 0.2, True)
    assert analysis.better_or_tie_verdict(_s(0.0, 100, 0.3, True), cens) == R  # both censored: final success
    assert analysis.better_or_tie_verdict(dict(cens), cens) == P
    assert analysis.better_or_tie_verdict(_s(0.0, 100, 0.1, True), cens) == N


def test_deepsea_sweep_rules():
    summ = {(4, "none"): _s(1.0, 12), (4, "recode"): _s(1.0, 6),
            (6, "none"): _s(0.0, 200), (6, "recode"): _s(0.5, 40),
            (8, "none"): _s(0.0, 200), (8, "recode"): _s(0.0, 200)}
    assert analysis.reference_size(summ, [4, 6, 8], ["none", "recode"]) == 6
    assert analysis.reference_size({(4, "none"): _s(0.0, 9)}, [4], ["none"]) == 4
    sizes = np.array([3, 5, 9])
    assert analysis.log2_slope(sizes, 2.0 ** (0.5 * sizes + 1)) == pytest.approx(0.5)
    assert math.isnan(analysis.log2_slope([6], [10.0]))
    assert analysis.dithering_verdict(16, 6) == R and analysis.dithering_verdict(15.9, 6) == N
    assert analysis.scaling_verdict(0.4, 1.0, 1.0) == R
    assert analysis.scaling_verdict(0.4, 1.0, 0.5) == P
    assert analysis.scaling_verdict(1.0, 1.0, 1.0) == N
    assert analysis.scaling_verdict(float("nan"), float("nan"), 1.0) == N


def test_exploration_order_and_formatting():
    summ = {"a": _s(0.5, 10), "b": _s(1.0, 30), "c": _s(1.0, 20, 0.1), "d": _s(1.0, 20, 0.4), "e": _s(1.0, 30)}
    assert analysis.exploration_order(summ) == ["d", "c", "b", "e", "a"]
    no_final = {"x": {"solved": 1.0, "median": 5}, "y": {"solved": 1.0, "median": 4}}  # DeepSea summaries
    assert analysis.exploration_order(no_final) == ["y", "x"]
    assert analysis.fmt_censored_median(_s(0.0, 4096.0, censored=True)) == "4096+"
    assert analysis.fmt_censored_median(_s(1.0, 511.6)) == "512"
    assert analysis.thousands_tick(2048.0, 0) == "2.048" and analysis.thousands_tick(0.0) == "0"


# ----------------------------------------------------------------------------- notebook 12


def test_embedders_flatten_and_embed():
    apc = representations.APConfig(obs_dim=6, n_actions=4, embed_dim=3, hidden=(8,), classifier_hidden=(8,))
    csc = representations.CASMConfig(obs_dim=6, n_actions=4, embed_dim=3, encoder_hidden=(8,), model_dim=8,
                                     n_layers=1, n_heads=1, seq_len=4)
    key = jax.random.PRNGKey(0)
    ap0 = representations.init_ap(apc, key).params
    ap1 = representations.init_ap(apc, jax.random.PRNGKey(1)).params
    cs = representations.init_casm(csc, key).params
    fns = analysis.embedders(apc, ap1, csc, cs, ap0)
    assert list(fns) == ["AP", "CASM", "untrained encoder", "raw observation"]
    obs = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(fns["raw observation"](obs), obs.reshape(10, 6))
    for name in ["AP", "CASM", "untrained encoder"]:
        out = fns[name](obs)
        assert isinstance(out, np.ndarray) and out.shape == (10, 3), name
    # each embeds every observation on its own: the flattened rows match one-by-one calls
    untrained = fns["untrained encoder"]
    for i, o in enumerate(obs.reshape(10, 6)):
        np.testing.assert_allclose(untrained(o[None])[0], untrained(obs)[i], rtol=1e-5, atol=1e-6)
    assert not np.allclose(fns["AP"](obs), fns["untrained encoder"](obs))


def test_aggregate_probes_and_final_accuracy():
    res = pd.DataFrame([{"seed": s, "representation": r, "probe": p, "rho": q, "atoms": a}
                        for s, r, p, q, a in [(0, "AP", 0.5, 0.1, 10), (1, "AP", 0.7, 0.3, 12),
                                              (0, "CASM", 0.6, 0.2, 8), (1, "CASM", 0.6, 0.6, 8)]])
    agg = analysis.aggregate_probes(res, ["CASM", "AP"])
    assert list(agg.index) == ["CASM", "AP"]
    for name in ["AP", "CASM"]:
        sub = res[res["representation"] == name]
        for col in ["probe", "rho"]:
            assert agg.loc[name, f"{col}_mean"] == pytest.approx(np.mean(sub[col]))
            assert agg.loc[name, f"{col}_min"] == min(sub[col]) and agg.loc[name, f"{col}_max"] == max(sub[col])
        assert agg.loc[name, "atoms"] == pytest.approx(np.mean(sub["atoms"]))
    curves = {"AP": [np.arange(25.0), np.zeros(5)], "CASM": [np.ones(30)]}
    # AP: last 2 of 25 -> mean(23, 24) = 23.5; last 1 of 5 -> 0; CASM: 1
    assert analysis.final_accuracy(curves) == pytest.approx({"AP": 11.75, "CASM": 1.0})


def test_spread_verdict():
    def agg(ap, casm):
        return pd.DataFrame({f"x_{k}": [ap[i], casm[i]] for i, k in enumerate(["mean", "min", "max"])},
                            index=["AP", "CASM"])
    gap, v = analysis.spread_verdict(agg((0.5, 0.45, 0.55), (0.8, 0.75, 0.85)), "x")
    assert gap == pytest.approx(0.3) and v == R
    assert analysis.spread_verdict(agg((0.5, 0.3, 0.7), (0.6, 0.55, 0.65)), "x")[1] == P
    assert analysis.spread_verdict(agg((0.5, 0.3, 0.7), (0.4, 0.35, 0.45)), "x")[1] == N
