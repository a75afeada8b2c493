"""Notebooks 11-12's analysis helpers against hand-computed values and plain NumPy loops."""

import jax
import numpy as np
import pandas as pd
import pytest

from replicate import verdicts
from replicate.params import ParameterError
from replicate.recode import analysis, representations
from replicate.rl import exploration

R, P, N = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED


# ----------------------------------------------------------------------------- notebooks 11-12


def test_success_auc_is_the_mean_success_over_all_updates_with_empty_updates_as_zero():
    sr = np.array([[0.0, 0.5, 1.0, 1.0], [np.nan, 0.0, np.nan, 1.0]])
    np.testing.assert_allclose(analysis.success_auc(sr), [2.5 / 4, 1.0 / 4])
    loop = [sum(0.0 if np.isnan(v) else v for v in row) / len(row) for row in sr]
    np.testing.assert_allclose(analysis.success_auc(sr), loop)
    with pytest.raises(ValueError):
        analysis.success_auc(np.zeros(3))


def test_tail_length_rounds_to_the_nearest_update():
    for n in range(1, 200):
        assert analysis.tail_length(n) == max(1, int(round(n * 0.2)))
    assert analysis.tail_length(8) == 2 and analysis.tail_length(2) == 1 and analysis.tail_length(1) == 1


def test_final_success_rate_ignores_nan_updates():
    sr = np.array([[0.0, 0.0, 0.0, 1.0, np.nan, 0.5, 0.0, np.nan, 1.0, 0.5],
                   [np.nan] * 10])
    # last 2 updates: seed 0 -> mean(1.0, 0.5) = 0.75, seed 1 none ended -> ignored
    assert analysis.final_success_rate(sr) == pytest.approx(0.75)
    assert analysis.final_success_rate(np.full((2, 4), np.nan)) == 0.0


def test_nan_trailing_mean_skips_updates_without_an_ended_episode():
    x = np.array([[1.0, np.nan, 3.0, np.nan, np.nan, 0.0]])
    y, sl = analysis.nan_trailing_mean(x, 2)
    assert sl == slice(1, None)
    np.testing.assert_allclose(y[0], [1.0, 3.0, 3.0, np.nan, 0.0])
    loop = [np.nanmean(x[0, j:j + 2]) if np.isfinite(x[0, j:j + 2]).any() else np.nan for j in range(5)]
    np.testing.assert_allclose(y[0], loop)
    two = np.vstack([x, [[np.nan, 5.0, 1.0, np.nan, 2.0, np.nan]]])
    pooled, _ = analysis.nan_trailing_mean(two, 2, pool=True)
    np.testing.assert_allclose(pooled, [3.0, 3.0, 2.0, 2.0, 1.0])  # finite values of both seeds in each window


def test_first_treasure_episodes_censor_at_the_budget_and_size_matrix_stacks_sizes():
    run = {"first_success": np.array([12, exploration.NEVER, 3]), "budget": 400}
    np.testing.assert_array_equal(analysis.first_treasure_episodes(run), [12.0, 400.0, 3.0])
    scores = {(6, "a"): [1, 2], (9, "a"): [3, 4], (6, "b"): [0, 0], (9, "b"): [0, 0]}
    np.testing.assert_array_equal(analysis.size_matrix(scores, [6, 9], "a"), [[1, 3], [2, 4]])


def test_controls_record_the_paired_interval():
    a, b = [0.5, 0.6, 0.7, 0.55], [0.1, 0.1, 0.2, 0.15]
    c = analysis.beats_control("oracle beats none", a, b)
    _, lo, _ = verdicts.paired_interval(a, b)
    assert c == {"name": "oracle beats none", "passed": True, "value": pytest.approx(lo), "threshold": 0.0}
    assert not analysis.beats_control("tie", a, a)["passed"]
    assert analysis.beats_control("one seed", [1.0], [0.0])["value"] is None  # no interval: NaN stored as null
    arms = {"none": b, "x": b, "y": a}
    some = analysis.some_beat_control("some bonus beats none", arms, "none")
    assert some["passed"] and some["value"] == pytest.approx(lo)
    assert not analysis.some_beat_control("s", {"none": b, "x": b}, "none")["passed"]
    with pytest.raises(ValueError):
        analysis.some_beat_control("s", {"none": b}, "none")
    f = analysis.fraction_control("solved", [True] * 9 + [False], 0.9)
    assert f["passed"] and f["value"] == pytest.approx(0.9)
    assert not analysis.fraction_control("solved", [True] * 8 + [False] * 2, 0.9)["passed"]


@pytest.mark.parametrize("case", ["reproduced", "partly", "not", "inconclusive"])
def test_exploration_row_reaches_every_outcome(case):
    base = np.array([0.1, 0.2, 0.15, 0.12, 0.18])
    better = base + 0.3
    rivals = {"reproduced": (base, base + 0.01), "partly": (base, better + 0.05), "not": (better + 0.1, better + 0.05),
              "inconclusive": (base, base)}[case]
    arms = {"RECODE": better, "RND": rivals[0], "NGU": rivals[1], "none": base}
    control = analysis.beats_control("oracle beats none", better if case != "inconclusive" else base, base)
    r = analysis.exploration_row("claim", verdicts.NO_PAPER_RESULT, "figures/x.png", arms, "RECODE",
                                 ["RND", "NGU"], [control])
    expect = {"reproduced": R, "partly": P, "not": N, "inconclusive": verdicts.INCONCLUSIVE}[case]
    assert r["verdict"] == expect and verdicts.recompute(r) == expect
    assert r["evidence"]["metric"] == analysis.SCORE and "success curve" in r["rule"]


def test_check_candidates_validates_names_fields_and_values():
    good = [{"name": "a", "learning_rate": 1e-3, "ent_coef": 0.001}, {"name": "b", "learning_rate": 2.5e-4,
                                                                       "ent_coef": 0.01}]
    assert analysis.check_candidates(good) == good
    assert analysis.overrides(good[1]) == {"learning_rate": 2.5e-4, "ent_coef": 0.01}
    bad = [
        [],
        [{"learning_rate": 1e-3}],  # no name
        [{"name": "a", "lr": 1e-3}],  # not a PPOConfig field
        [{"name": "a", "num_envs": 4}],  # the run's shape is not a candidate's to set
        [{"name": "a", "ent_coef": 0.01}, {"name": "a", "ent_coef": 0.02}],  # duplicate name
        [{"name": "a", "ent_coef": 0.01}, {"name": "b", "learning_rate": 1e-3}],  # different fields
        [{"name": "a", "learning_rate": -1.0}],  # PPOConfig rejects it
    ]
    for cands in bad:
        with pytest.raises(ParameterError):
            analysis.check_candidates(cands)


def test_select_setting_accepts_the_first_passing_candidate_and_runs_no_later_one():
    cands = [{"name": n, "ent_coef": e} for n, e in [("old", 0.001), ("ent", 0.01), ("lr", 0.02), ("ep", 0.03)]]
    solved = {"old": [1] * 8 + [0] * 2, "ent": [1] * 9 + [0], "lr": [1] * 10, "ep": [1] * 10}
    calls = []

    def run(c):
        calls.append(c["name"])
        return solved[c["name"]]

    out = analysis.select_setting(cands, run, 0.9)
    assert out["chosen"] == 1 and out["accepted"] and calls == ["old", "ent"]
    assert [t["solved"] for t in out["tried"]] == [0.8, 0.9] and [t["passed"] for t in out["tried"]] == [False, True]
    assert out["tried"][0]["seeds"] == 10 and out["minimum"] == 0.9


def test_select_setting_without_a_pass_takes_the_best_earliest_and_is_not_accepted():
    cands = [{"name": n, "ent_coef": e} for n, e in [("a", 0.001), ("b", 0.01), ("c", 0.02)]]
    solved = {"a": [1, 0, 0, 0], "b": [1, 1, 0, 0], "c": [0, 1, 1, 0]}
    out = analysis.select_setting(cands, lambda c: solved[c["name"]], 0.9)
    assert out["chosen"] == 1 and not out["accepted"] and len(out["tried"]) == 3  # b and c tie: the earlier
    with pytest.raises(ValueError):
        analysis.select_setting(cands, lambda c: solved[c["name"]], 0.0)


def test_front_share_measures_how_much_reward_the_first_updates_take():
    spike = np.r_[np.full(2, 10.0), np.full(98, 0.01)][None]
    even = np.ones((1, 100))
    assert analysis.front_share(spike)[0] == pytest.approx(20 / (20 + 0.98))
    assert analysis.front_share(even)[0] == pytest.approx(0.02)
    assert analysis.front_share(even, first_frac=0.1)[0] == pytest.approx(0.1)
    assert np.isnan(analysis.front_share(np.zeros((1, 10)))[0])
    with pytest.raises(ValueError):
        analysis.front_share(even, first_frac=1.5)


def test_curves_round_trip_and_live_under_data(tmp_path, monkeypatch):
    from replicate import outputs

    monkeypatch.setenv(outputs.DATA_ENV, str(tmp_path))
    assert analysis.curves_path("11_x", "smoke") == tmp_path / "recode" / "smoke" / "11_x.npz"
    assert analysis.curves_path("11_x", "cpu") == tmp_path / "recode" / "curves" / "11_x.npz"
    run = {k: np.arange(6, dtype=np.float64).reshape(2, 3) / 6 for k in analysis.CURVES}
    run["casm_loss"] = np.ones((2, 3))
    curves = analysis.run_curves(run)
    assert set(curves) == set(analysis.CURVES) | {"casm_loss", "score"}
    assert all(v.dtype == np.float32 for v in curves.values())
    np.testing.assert_allclose(curves["score"], analysis.success_auc(run["success_rate"]), rtol=1e-6)
    path = analysis.save_curves(analysis.curves_path("11_x", "cpu"), {"deepsea-6-none": curves, "b": {"x": [1, 2]}})
    back = analysis.load_curves(path)
    assert set(back) == {"deepsea-6-none", "b"} and list(back["b"]["x"]) == [1, 2]
    for k, v in curves.items():
        np.testing.assert_array_equal(back["deepsea-6-none"][k], v)
    with pytest.raises(ValueError):
        analysis.save_curves(tmp_path / "y.npz", {"a::b": {"x": [1]}})


# ----------------------------------------------------------------------------- notebook 12


def test_embedders_flatten_and_embed(monkeypatch):
    # the encoders themselves are tested in test_representations: linear stand-ins check the wiring
    # (which parameters each representation uses, the flattening, NumPy outputs)
    calls = []

    def fake_embed(kind):
        def embed(cfg, params, obs):
            calls.append((kind, cfg, obs.shape))
            return jax.numpy.asarray(obs @ params)
        return embed

    monkeypatch.setattr(representations, "ap_embed", fake_embed("ap"))
    monkeypatch.setattr(representations, "casm_embed", fake_embed("casm"))
    apc = representations.APConfig(obs_dim=6, n_actions=4, embed_dim=3)
    csc = representations.CASMConfig(obs_dim=6, n_actions=4, embed_dim=3)
    rng = np.random.default_rng(0)
    w_ap, w_cs, w_0 = (rng.normal(size=(6, 3)).astype(np.float32) for _ in range(3))
    fns = analysis.embedders(apc, w_ap, csc, w_cs, w_0)
    assert list(fns) == ["AP", "CASM", "untrained encoder", "raw observation"]
    obs = rng.normal(size=(2, 5, 6)).astype(np.float32)
    flat = obs.reshape(10, 6)
    np.testing.assert_array_equal(fns["raw observation"](obs), flat)
    for name, w in [("AP", w_ap), ("CASM", w_cs), ("untrained encoder", w_0)]:
        e = fns[name](obs)
        assert isinstance(e, np.ndarray) and e.shape == (10, 3), name
        np.testing.assert_allclose(e, flat @ w, rtol=1e-5, atol=1e-6)
    assert calls == [("ap", apc, (10, 6)), ("casm", csc, (10, 6)), ("ap", apc, (10, 6))]


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


def test_per_seed_reads_one_representation_in_seed_order():
    res = pd.DataFrame([{"seed": 1, "representation": "AP", "probe": 0.7}, {"seed": 0, "representation": "AP",
                                                                          "probe": 0.5},
                        {"seed": 0, "representation": "CASM", "probe": 0.6}])
    assert analysis.per_seed(res, "AP", "probe") == [0.5, 0.7]
    with pytest.raises(ValueError):
        analysis.per_seed(res, "raw", "probe")


def test_plateaued_compares_the_last_window_with_the_one_before():
    steps = np.arange(1000)
    decaying = 1.0 + np.exp(-steps / 100)  # still falls ~e^-8 -> flat: plateaued at the end
    assert analysis.plateaued(decaying)
    falling = 2.0 - steps / 1000  # linear: the last 20% is 0.2 below the 20% before it, 10% of the start
    assert not analysis.plateaued(falling)
    assert analysis.plateaued(falling, tol=0.2)
    to_zero = np.exp(-steps / 100)  # relative steps stay large, absolute ones vanish: flat
    assert analysis.plateaued(to_zero)
    assert not analysis.plateaued(decaying[:200])  # the first 200 steps still fall fast
    assert not analysis.plateaued(decaying[:5]) and not analysis.plateaued([1.0, np.nan] * 10)
    noisy = 1.0 + 0.05 * np.random.default_rng(0).normal(size=2000)  # flat with noise
    assert analysis.plateaued(noisy)
    with pytest.raises(ValueError):
        analysis.plateaued(decaying, frac=0.8)


def test_train_until_plateau_stops_at_the_plateau_or_the_cap():
    import jax

    from replicate.recode import probes, representations

    obs, act, _ = probes.grid_walks(3, 8, 12, 4, 0, 0.0, 0)
    cfg = representations.APConfig(obs_dim=4, n_actions=4, embed_dim=4, hidden=(16,), classifier_hidden=(16,))
    st, cur = probes.train_until_plateau(probes.train_ap, cfg, obs, act, jax.random.PRNGKey(0), 16, chunk=50,
                                         max_steps=150, tol=-1.0)  # tol < 0: never plateaued -> the cap
    assert cur["steps"] == 150 and not cur["plateaued"] and cur["loss"].shape == cur["accuracy"].shape == (150,)
    assert int(st.step) == 150  # training continued from the state across chunks
    _, cur = probes.train_until_plateau(probes.train_ap, cfg, obs, act, jax.random.PRNGKey(0), 16, chunk=50,
                                        max_steps=1000, tol=10.0)  # any curve counts as flat...
    assert cur["plateaued"] and cur["steps"] == 100  # ...from the second chunk on (min_chunks=2)
