"""Notebooks 11-12's analysis helpers against hand-computed values and plain NumPy loops."""

import math

import jax
import numpy as np
import pandas as pd
import pytest

from replicate import verdicts
from replicate.recode import analysis, representations
from replicate.rl import exploration

R, P, N = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED


# ----------------------------------------------------------------------------- notebooks 11-12


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
    sr8 = np.array([[0.0] * 6 + [1.0, 0.0]])  # 8 updates: the tail is the last 2
    assert analysis.final_success_rate(sr8) == pytest.approx(0.5)


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


def test_spread_verdict():
    def agg(ap, casm):
        return pd.DataFrame({f"x_{k}": [ap[i], casm[i]] for i, k in enumerate(["mean", "min", "max"])},
                            index=["AP", "CASM"])
    gap, v = analysis.spread_verdict(agg((0.5, 0.45, 0.55), (0.8, 0.75, 0.85)), "x")
    assert gap == pytest.approx(0.3) and v == R
    assert analysis.spread_verdict(agg((0.5, 0.3, 0.7), (0.6, 0.55, 0.65)), "x")[1] == P
    assert analysis.spread_verdict(agg((0.5, 0.3, 0.7), (0.4, 0.35, 0.45)), "x")[1] == N


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
