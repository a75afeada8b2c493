"""NGU episodic memory, tabular counts and RND: hand-checked values, invariants, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import tolerances
from replicate.recode import baselines
from replicate.recode.streams import GridStream, discounted_counts


def _ngu_reference(episode, cfg):
    """NGU's episodic reward and kernel sum written out for one actor and one episode (NumPy, float64), and a
    bound on how far a float32 evaluation of them may be (first-order running error analysis, step by step):

    * squared distances by the Gram expansion, |e|^2 - 2 e.m + |m|^2: a sum of 3d products, gamma_{3d} times
      their absolute sum; the k smallest move by at most what the bounds of all distances allow;
    * the running mean d_m^2 = (d_m^2 n + sum d) / (n + k): its old error weighted by n / (n + k), the new
      distances' by 1 / (n + k), and gamma_{k+3} of itself for the product, the k + 1 sums and the division;
    * d / d_m^2 - xi, clamped at 0: both errors relative (first order), u for the division, 2u (|d / d_m^2| + xi)
      for the subtraction and xi's rounding; the clamp is 1-Lipschitz;
    * the kernel eps / (dn + eps): its slope eps / (dn + eps)^2 at the low end of dn's interval, and 3u of it;
    * the kernel sum: the kernels' errors and gamma_k of the sum; s = sqrt(sum) + c and r = 1 / s: first order.
    Returns ``(values (T, 2), bounds (T, 2))``, columns (reward, kernel sum)."""
    u = tolerances.unit_roundoff(np.float32)
    x = np.asarray(episode, np.float64)
    eps, xi = cfg.epsilon, cfg.cluster_distance
    mem, dm2, dm2_err, n, out, err = [], 0.0, 0.0, 0, [], []
    for e in x:
        if mem:
            m = np.array(mem)
            d2 = ((m - e) ** 2).sum(1)
            d2_err = tolerances.gamma(3 * len(e)) * ((m**2).sum(1) + (e**2).sum() + 2 * np.abs(m * e).sum(1))
            k = min(cfg.k, len(d2))
            d = np.sort(d2)[:k]
            d_err = np.maximum(np.sort(d2 + d2_err)[:k] - d, d - np.sort(d2 - d2_err)[:k])
            new = (dm2 * n + d.sum()) / (n + k)
            dm2_err = (dm2_err * n + d_err.sum()) / (n + k) + tolerances.gamma(k + 3) * new
            dm2, n = new, n + k
            ratio = d / dm2
            dn = np.maximum(ratio - xi, 0)
            dn_err = d_err / dm2 + ratio * dm2_err / dm2 + u * ratio + 2 * u * (ratio + xi)
            kern, kern_hi = eps / (dn + eps), eps / (np.maximum(dn - dn_err, 0) + eps)
            ksum, ksum_err = kern.sum(), (kern_hi**2 / eps * dn_err + 3 * u * kern_hi).sum()
            ksum_err += tolerances.gamma(k) * kern_hi.sum()
        else:
            ksum, ksum_err = 0.0, 0.0
        s = np.sqrt(ksum) + cfg.c
        s_err = (ksum_err / (2 * np.sqrt(ksum)) if ksum > 0 else 0.0) + u * np.sqrt(ksum) + u * cfg.c + u * s
        assert abs(s - cfg.max_similarity) > s_err  # both sides take the same branch of the clip
        r = 0.0 if s > cfg.max_similarity else 1 / s
        out.append((r, ksum))
        err.append((0.0 if s > cfg.max_similarity else s_err / s**2 + u * r, ksum_err))
        mem.append(e)
    return np.array(out), np.array(err)


def test_episodic_memory_matches_written_out_ngu_and_resets():
    cfg = baselines.EpisodicConfig(capacity=64, k=3)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(2, 30, 4)).astype(np.float32)  # two episodes, one actor... and a second actor
    st = baselines.init_episodic(cfg, 2, 4)
    got = []
    for ep in range(2):
        for t in range(30):
            reset = np.array([t == 0, t == 0])
            st, out = baselines.checked_episodic_step(cfg, st, np.stack([xs[ep, t], xs[ep, t]]), reset)
            got.append((float(out.reward[0]), float(out.count[0])))
    got = np.array(got)
    ref, bound = _ngu_reference(xs[0], cfg)
    tolerances.assert_within(got[:30], ref, bound, "episodic reward and kernel sum")
    with pytest.raises(AssertionError, match="exceed their rounding bound"):  # k = 2 neighbours instead of 3
        tolerances.assert_within(got[:30], _ngu_reference(xs[0], baselines.EpisodicConfig(capacity=64, k=2))[0], bound)
    # the second episode starts from an empty memory: first reward is 1/c again
    assert got[30, 0] == pytest.approx(1 / cfg.c)


def test_tabular_counts_equal_discounted_ground_truth():
    cfg = baselines.TabularConfig(n_states=10, gamma=0.9)
    ids = np.random.default_rng(1).integers(0, 10, size=(20, 7))
    counts = baselines.init_tabular(cfg)
    for row in ids:
        counts, out = baselines.checked_tabular_step(cfg, counts, row)
    np.testing.assert_allclose(np.asarray(counts), discounted_counts(ids, 10, 0.9, per="embedding"), rtol=1e-5)
    with pytest.raises(ValueError, match="must lie in"):
        baselines.checked_tabular_step(cfg, counts, np.array([3, 12]))


def test_rnd_error_shrinks_on_visited_inputs_more_than_on_novel_ones():
    cfg = baselines.RNDConfig(hidden=(64,), out_dim=16, learning_rate=1e-3)
    st = baselines.init_rnd(cfg, jax.random.PRNGKey(0), 4)
    rng = np.random.default_rng(2)
    seen = rng.normal(size=(256, 4)).astype(np.float32)
    novel = (rng.normal(size=(256, 4)) + 4.0).astype(np.float32)
    st, first = baselines.checked_rnd_step(cfg, st, seen)
    for _ in range(300):
        st, out = baselines.checked_rnd_step(cfg, st, seen[rng.integers(0, 256, 64)])
    r_seen = float(baselines.rnd_reward(cfg, st, jnp.asarray(seen)).mean())
    r_novel = float(baselines.rnd_reward(cfg, st, jnp.asarray(novel)).mean())
    assert r_seen < 0.3 * float(first.reward.mean())
    assert r_novel > 3 * r_seen
    with pytest.raises(ValueError, match="NaN"):
        baselines.checked_rnd_step(cfg, st, np.full((2, 4), np.nan, np.float32))


def test_grid_stream_shifts_and_ground_truth():
    gs = GridStream(size=8, n_actors=4, episode_len=20, n_episodes=40, n_phases=2, seed=0)
    cells, acts = gs.trajectories()
    assert cells.shape == (40, 21, 4) and acts.shape == (40, 20, 4)
    first = np.bincount(cells[:20].ravel(), minlength=64)
    second = np.bincount(cells[20:].ravel(), minlength=64)
    # the visitation distribution moves: the two phases concentrate on different goals
    g = gs.goals()
    assert first[g[0][0] * 8 + g[0][1]] > 5 * max(first[g[1][0] * 8 + g[1][1]], 1)
    assert second[g[1][0] * 8 + g[1][1]] > 5 * max(second[g[0][0] * 8 + g[0][1]], 1)
    # actions are consistent with moves
    x0, x1 = cells[:, :-1] // 8, cells[:, 1:] // 8
    right = acts == 3
    assert np.all((x1 - x0)[right] >= 0)


def test_stream_observations_do_not_depend_on_segmentation():
    from replicate.recode.experiments import build_stream

    gs = GridStream(size=6, n_actors=3, episode_len=10, n_episodes=300, embed_dim=4, noise=0.1)
    st = build_stream(gs, [0, 1])
    T = st.cells.shape[0]
    full = st.obs(0, T)
    pieces = np.concatenate([st.obs(0, 1500), st.obs(1500, 2100), st.obs(2100, T)], axis=1)
    np.testing.assert_array_equal(full, pieces)
    np.testing.assert_array_equal(st.obs(100, 2000, 1), full[1, 100:2000])
    assert not np.array_equal(full[0], full[1])  # seeds draw different noise
    assert np.std(full - gs.cell_features()[st.cells][None]) == pytest.approx(0.1, rel=0.05)


def test_pure_steps_trace_inside_scan_and_equal_the_checked_steps():
    """episodic_step, tabular_step and rnd_step are the jit-able cores; checked_* validate then call them."""
    rng = np.random.default_rng(4)
    xs = rng.normal(size=(5, 2, 3)).astype(np.float32)
    resets = np.array([[True, True], [False, False], [False, True], [False, False], [True, False]])
    ecfg = baselines.EpisodicConfig(capacity=16, k=2)

    @jax.jit
    def episodic_scan(st):
        return jax.lax.scan(
            lambda s, xr: baselines.episodic_step(ecfg, s, xr[0], xr[1]), st, (jnp.asarray(xs), jnp.asarray(resets))
        )

    _, est_scan = episodic_scan(baselines.init_episodic(ecfg, 2, 3))
    st = baselines.init_episodic(ecfg, 2, 3)
    for t in range(5):
        st, est = baselines.checked_episodic_step(ecfg, st, xs[t], resets[t])
        np.testing.assert_array_equal(np.asarray(est.reward), np.asarray(est_scan.reward[t]))

    tcfg = baselines.TabularConfig(n_states=6, gamma=0.9)
    ids = rng.integers(0, 6, size=(4, 3)).astype(np.int32)
    counts_scan, _ = jax.lax.scan(
        lambda c, i: baselines.tabular_step(tcfg, c, i), baselines.init_tabular(tcfg), jnp.asarray(ids)
    )
    counts = baselines.init_tabular(tcfg)
    for row in ids:
        counts, _ = baselines.checked_tabular_step(tcfg, counts, row)
    np.testing.assert_array_equal(np.asarray(counts), np.asarray(counts_scan))

    rcfg = baselines.RNDConfig(hidden=(8,), out_dim=4)
    st0 = baselines.init_rnd(rcfg, jax.random.PRNGKey(0), 3)
    st_scan, est_scan = jax.lax.scan(lambda s, x: baselines.rnd_step(rcfg, s, x), st0, jnp.asarray(xs))
    states = [st0]
    for t in range(5):
        st, est = baselines.checked_rnd_step(rcfg, states[-1], xs[t])
        states.append(st)
    # Inside scan XLA may fuse and order the step's sums differently: the rewards after 4 Adam steps agree to
    # rounding only, and no clean bound follows through Adam (a gradient component near 0 may flip its update).
    # Each step's float32 reductions are of length <= 16 (relative gamma_16 ~ 1e-6); over T = 5 steps, with a
    # margin of 20 for the amplification through the MLPs and the squared error, rtol = 20 T gamma_16 ~ 1e-4 ...
    rtol = 20 * 5 * tolerances.gamma(16)
    np.testing.assert_allclose(np.asarray(est.reward), np.asarray(est_scan.reward[-1]), rtol=rtol)
    # ... a fifth of what leaving out the last Adam step's update changes (so that bug would still fail)
    _, skipped = baselines.checked_rnd_step(rcfg, states[4]._replace(params=states[3].params), xs[4])
    assert np.all(np.abs(np.asarray(skipped.reward) / np.asarray(est.reward) - 1) > 5 * rtol)
    with pytest.raises(ValueError, match="one per actor"):
        baselines.checked_episodic_step(ecfg, baselines.init_episodic(ecfg, 2, 3), xs[0], np.array([True]))


def test_ngu_constants_are_ngus_appendix_f():
    cfg = baselines.EpisodicConfig()
    assert (cfg.k, cfg.epsilon, cfg.c, cfg.cluster_distance, cfg.max_similarity, cfg.capacity) == (
        10, 1e-4, 1e-3, 0.008, 8.0, 30_000)
    assert baselines.NGUConfig().max_modulation == 5.0
    with pytest.raises(baselines.ParameterError, match="max_modulation"):
        baselines.NGUConfig(max_modulation=0.5)


def test_ngu_reward_matches_a_numpy_transcription_with_both_clips():
    """r = r_epi * min(max(1 + (err - mu) / sigma, 1), L) (Badia et al. 2020, Sec. 2) on a hand-made batch:
    errors below the mean (alpha < 1: clipped to 1), in between, and far above (alpha > L: clipped to L)."""
    cfg = baselines.NGUConfig(max_modulation=5.0)
    r_epi = np.array([0.5, 0.5, 0.2, 1.0, 0.3, 0.0], np.float32)
    err = np.array([0.1, 1.0, 1.5, 2.0, 9.0, 9.0], np.float32)
    mu, sigma = 1.0, 0.5
    alpha = 1 + (err.astype(np.float64) - mu) / sigma  # [-0.8, 1, 2, 3, 17, 17]
    want_mod = np.minimum(np.maximum(alpha, 1.0), 5.0)
    np.testing.assert_allclose(want_mod, [1, 1, 2, 3, 5, 5])  # the batch exercises both clips
    got_mod = baselines.ngu_modulation(cfg, jnp.asarray(err), mu, sigma)
    np.testing.assert_allclose(np.asarray(got_mod), want_mod, rtol=1e-6)
    got = jax.jit(baselines.ngu_reward, static_argnums=0)(cfg, jnp.asarray(r_epi), jnp.asarray(err), mu, sigma)
    np.testing.assert_allclose(np.asarray(got), r_epi * want_mod, rtol=1e-6)


def test_rnd_run_moments_tracks_the_errors_of_every_batch():
    cfg = baselines.RNDConfig(hidden=(16,), out_dim=8)
    stream = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 4))
    st0 = baselines.init_rnd(cfg, jax.random.PRNGKey(1), 4)
    st, rms = baselines.rnd_run_moments(cfg, st0, baselines.RunningMeanStd.create(), stream)
    errs, s = [], st0
    for x in stream:
        s, est = baselines.rnd_step(cfg, s, x)
        errs.append(np.asarray(est.reward))
    errs = np.concatenate(errs).astype(np.float64)
    np.testing.assert_allclose(float(rms.mean), errs.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(rms.var), errs.var(), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(baselines.rnd_reward(cfg, st, stream[0])),
                               np.asarray(baselines.rnd_reward(cfg, s, stream[0])), rtol=1e-5)
