"""RECODE memory (JAX) against the NumPy transcription of Algorithm 1, invariants and known limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import tolerances
from replicate.recode import memory
from replicate.recode.reference import ReferenceMemory


def _stream(T, d, seed):
    """A non-stationary stream: a centre that drifts and a spread that grows (cf. ICLR Fig. 1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    centre = np.stack([np.sin(t[:, 0] / 60.0), np.cos(t[:, 0] / 90.0)] + [np.zeros(T)] * (d - 2), axis=1) * 3
    return (centre + rng.normal(size=(T, d)) * (0.5 + t / T)).astype(np.float32)


def _run_both(cfg, xs, seed=0):
    st = memory.init(cfg, xs.shape[1])
    ref = ReferenceMemory(cfg, xs.shape[1])
    key = jax.random.PRNGKey(seed)
    outs = []
    for t in range(xs.shape[0]):
        key, sk = jax.random.split(key)
        nz = memory.draw_noise(cfg, sk, 1)
        st, out = memory.checked_step(cfg, st, xs[t : t + 1], noise=nz)
        r, c, ins, slot = ref.step(xs[t].astype(np.float64), float(nz.u[0]), np.asarray(nz.g, np.float64))
        outs.append(
            (float(out.reward[0]), r, float(out.count[0]), c, bool(out.inserted[0]), ins, int(out.slot[0]), slot)
        )
    return st, ref, outs


@pytest.mark.parametrize("eviction", ["inverse_square", "inverse", "smallest", "uniform"])
def test_batch_of_one_equals_reference(eviction):
    cfg = memory.RecodeConfig(memory_size=24, k=4, kappa=0.5, tau=0.05, gamma=0.98, eta=0.8, eviction=eviction)
    xs = _stream(260, 3, seed=1)
    st, ref, outs = _run_both(cfg, xs)
    o = np.array([x[:4] for x in outs])
    decisions = [(x[4], x[6]) for x in outs]
    ref_decisions = [(x[5], x[7]) for x in outs]
    assert decisions == ref_decisions  # same insert/merge choice and the same slot, every step
    assert sum(x[5] for x in outs) > 40  # the stream exercised evictions, not only merges
    np.testing.assert_allclose(o[:, 0], o[:, 1], rtol=2e-4)  # rewards
    np.testing.assert_allclose(o[:, 2], o[:, 3], rtol=2e-4, atol=1e-4)  # pseudo-counts
    np.testing.assert_allclose(np.asarray(st.atoms), ref.atoms, atol=1e-4)
    np.testing.assert_allclose(np.asarray(st.counts), ref.counts, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(st.filled), ref.filled)
    assert float(st.dm2) == pytest.approx(ref.dm2, rel=1e-4)


def _count_mass_after(T, gamma):
    return sum(gamma**t for t in range(T))


def test_total_count_mass_is_the_discounted_number_of_embeddings():
    """Every embedding adds 1 (merge or insertion), evictions hand their count over, then all decay."""
    cfg = memory.RecodeConfig(memory_size=64, k=5, tau=0.02, gamma=0.995, eta=0.3)
    xs = _stream(64 * 24, 4, seed=2).reshape(24, 64, 4)
    st = memory.init(cfg, 4)
    key = jax.random.PRNGKey(3)
    for t in range(xs.shape[0]):
        key, sk = jax.random.split(key)
        st, out = memory.checked_step(cfg, st, xs[t], sk)
        assert int(out.dropped_insertions) == 0
    assert float(jnp.sum(st.counts)) == pytest.approx(_count_mass_after(64 * 24, 0.995), rel=1e-4)
    assert 10 < int(jnp.sum(st.filled)) <= 64
    assert float(jnp.min(st.counts)) >= 0.0
    # per-call discount: gamma once per batch of 64, then +64
    cfg2 = memory.RecodeConfig(memory_size=64, k=5, tau=0.02, gamma=0.9, eta=0.3, discount_per="call")
    st2 = memory.init(cfg2, 4)
    for t in range(10):
        st2, _ = memory.checked_step(cfg2, st2, xs[t], jax.random.PRNGKey(t))
    expected = sum(64 * 0.9**i for i in range(10))
    assert float(jnp.sum(st2.counts)) == pytest.approx(expected, rel=1e-4)


def test_batched_memory_agrees_statistically_with_sequential_reference():
    """B = 32 embeddings per call vs. one at a time over a long drifting stream."""
    cfg = memory.RecodeConfig(memory_size=48, k=5, kappa=0.5, tau=0.01, gamma=0.998, eta=0.2)
    T = 32 * 60
    xs = _stream(T, 3, seed=4)
    st = memory.init(cfg, 3)
    key = jax.random.PRNGKey(5)
    rewards_b, ins_b = [], 0
    for t in range(0, T, 32):
        key, sk = jax.random.split(key)
        st, out = memory.checked_step(cfg, st, xs[t : t + 32], sk)
        rewards_b.append(np.asarray(out.reward))
        ins_b += int(out.inserted.sum())
    ref = ReferenceMemory(cfg, 3)
    rng = np.random.default_rng(6)
    rewards_s, ins_s = [], 0
    for t in range(T):
        r, _, ins, _ = ref.step(xs[t].astype(np.float64), rng.uniform(), rng.gumbel(size=cfg.memory_size))
        rewards_s.append(r)
        ins_s += ins
    rewards_b = np.concatenate(rewards_b)
    rewards_s = np.asarray(rewards_s)
    late = slice(T // 2, T)
    assert np.mean(rewards_b[late]) == pytest.approx(np.mean(rewards_s[late]), rel=0.15)
    assert ins_b == pytest.approx(ins_s, rel=0.25)
    assert float(st.dm2) == pytest.approx(ref.dm2, rel=0.25)

    # the count mass sits in the same places: mass per quadrant of the first two coordinates
    def quadrant_mass(atoms, counts):
        q = (atoms[:, 0] > 0).astype(int) * 2 + (atoms[:, 1] > 0).astype(int)
        return np.array([counts[q == i].sum() for i in range(4)])

    fb = np.asarray(st.filled)
    mass_b = quadrant_mass(np.asarray(st.atoms)[fb], np.asarray(st.counts)[fb])
    mass_s = quadrant_mass(ref.atoms[ref.filled], ref.counts[ref.filled])
    np.testing.assert_allclose(mass_b / mass_b.sum(), mass_s / mass_s.sum(), atol=0.06)


def test_cluster_counts_track_discounted_visits():
    """Well-separated clusters: the counts of the atoms of each cluster sum to its discounted visits."""
    rng = np.random.default_rng(7)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    probs = np.array([0.55, 0.25, 0.15, 0.05])
    T, B, gamma = 40, 50, 0.999
    cfg = memory.RecodeConfig(memory_size=40, k=3, kappa=0.3, tau=0.05, gamma=gamma, eta=0.05)
    st = memory.init(cfg, 2)
    true = np.zeros(4)
    for t in range(T):
        lab = rng.choice(4, size=B, p=probs)
        e = centres[lab] + rng.normal(size=(B, 2)).astype(np.float32) * 0.3
        st, _ = memory.checked_step(cfg, st, e, jax.random.PRNGKey(100 + t))
        for label in lab:  # sequential discount, matching the per-embedding rule
            true = true * gamma
            true[label] += 1
    atoms = np.asarray(st.atoms)[np.asarray(st.filled)]
    counts = np.asarray(st.counts)[np.asarray(st.filled)]
    owner = np.argmin(((atoms[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    est = np.array([counts[owner == c].sum() for c in range(4)])
    np.testing.assert_allclose(est, true, rtol=0.01)


def test_simultaneous_new_points_create_one_atom_not_many():
    cfg = memory.RecodeConfig(memory_size=16, k=2, eta=1.0, kappa=1.0, tau=0.1)
    st = memory.init(cfg, 2)
    st, _ = memory.checked_step(
        cfg, st, np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32), jax.random.PRNGKey(0)
    )
    far = np.array([[50.0, 50.0]], np.float32) + np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32) * 1e-3
    st2, out = memory.checked_step(cfg, st, far, jax.random.PRNGKey(1))
    assert int(out.inserted.sum()) == 1  # the other 7 merge into the atom created by the first
    assert int(jnp.sum(st2.filled)) == int(jnp.sum(st.filled)) + 1


def test_eta_zero_never_inserts_after_the_first_atom_and_rewards_fall():
    cfg = memory.RecodeConfig(memory_size=16, k=2, eta=0.0, tau=0.1, gamma=1.0, free_fill=False)
    st = memory.init(cfg, 2)
    xs = np.random.default_rng(1).normal(size=(20, 8, 2)).astype(np.float32)
    for t in range(20):
        st, out = memory.checked_step(cfg, st, xs[t], jax.random.PRNGKey(t))
    assert int(jnp.sum(st.filled)) == 1
    assert float(jnp.sum(st.counts)) == pytest.approx(160.0)
    # at the atom itself K = 1, so N = 1 + c and r = 1 / (sqrt(1 + c) + c0) (Eqs. 2-3)
    atom = np.asarray(st.atoms)[np.asarray(st.filled)]
    r, n = memory.checked_reward(cfg, st, atom)
    assert float(n[0]) == pytest.approx(161.0, rel=1e-5)
    assert float(r[0]) == pytest.approx(1.0 / (np.sqrt(161.0) + cfg.c), rel=1e-5)
    # outside the d_m^2 ball the count is 0 and the reward is 1 / c
    r_far, n_far = memory.checked_reward(cfg, st, atom + 10.0 * np.sqrt(float(st.dm2)))
    assert float(n_far[0]) == 0.0 and float(r_far[0]) == pytest.approx(1.0 / cfg.c)


def test_run_stream_equals_a_python_loop_of_steps():
    cfg = memory.RecodeConfig(memory_size=20, k=3, eta=0.3, tau=0.05)
    xs = _stream(8 * 12, 3, seed=9).reshape(12, 8, 3)
    key = jax.random.PRNGKey(11)
    st_scan, out_scan = memory.checked_run_stream(cfg, memory.init(cfg, 3), xs, key)
    st = memory.init(cfg, 3)
    for t, kk in enumerate(jax.random.split(key, 12)):
        st, out = memory.checked_step(cfg, st, xs[t], kk)
    np.testing.assert_allclose(np.asarray(st.atoms), np.asarray(st_scan.atoms), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.reward), np.asarray(out_scan.reward[-1]), rtol=1e-5)


def test_smallest_k_matches_top_k_on_wide_rows():
    rng = np.random.default_rng(0)
    d = jnp.asarray(rng.exponential(size=(7, 5000)).astype(np.float32)).at[:, 100:900].set(jnp.inf)
    v, i = jax.jit(lambda x: memory.smallest_k(x, 10, block=64))(d)
    neg, j = jax.lax.top_k(-d, 10)
    np.testing.assert_array_equal(np.asarray(i), np.asarray(j))
    np.testing.assert_array_equal(np.asarray(v), -np.asarray(neg))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"memory_size": 4, "k": 10}, "below k"),
        ({"k": 0}, "k=0"),
        ({"eviction": "lru"}, "eviction"),
        ({"gamma": 1.5}, "gamma"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        memory.RecodeConfig(**kwargs)


def test_bad_embeddings_fail_at_the_boundary():
    cfg = memory.RecodeConfig(memory_size=16, k=2)
    st = memory.init(cfg, 4)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="size 3 but the memory holds embeddings of size 4"):
        memory.checked_step(cfg, st, np.zeros((2, 3), np.float32), key)
    with pytest.raises(ValueError, match="dtype int"):
        memory.checked_step(cfg, st, np.zeros((2, 4), np.int32), key)
    bad = np.zeros((3, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="1 of 3 rows contain NaN"):
        memory.checked_reward(cfg, st, bad)
    with pytest.raises(ValueError, match=r"expected \(batch, 4\)"):
        memory.checked_step(cfg, st, np.zeros(4, np.float32), key)
    with pytest.raises(ValueError, match="PRNG key"):
        memory.checked_step(cfg, st, np.zeros((1, 4), np.float32), 3)
    with pytest.raises(ValueError, match="dim"):
        memory.init(cfg, 0)


@pytest.mark.parametrize("dm2", [0.5, 50.0])  # small ball; a ball holding most of the memory
@pytest.mark.parametrize(
    "M, n",
    [(4096, 16), (5000, 300), (4999, 300), (4999, 7), (120, 5)],
    ids=["one-chunk", "chunks", "padded-chunks", "padded-one-chunk", "dense"],
)
def test_query_equals_dense_numpy_over_all_atoms(dm2, M, n):
    """The blocked scan (several chunks, padding when M has no divisor near the block size) and the dense
    path give the exact k nearest atoms and the kernel sum over every atom."""
    cfg = memory.RecodeConfig(memory_size=M, k=3)
    rng = np.random.default_rng(M + n)
    st = memory.init(cfg, 4)._replace(
        atoms=jnp.asarray(rng.normal(size=(M, 4)).astype(np.float32)),
        counts=jnp.asarray(rng.exponential(size=M).astype(np.float32)),
        filled=jnp.asarray(rng.random(M) < 0.9),
        dm2=jnp.float32(dm2),
        dm2_ready=jnp.bool_(True),
    )
    e = jnp.asarray(rng.normal(size=(n, 4)).astype(np.float32))
    knn_d2, knn_idx, count = jax.jit(lambda s, x: memory.query(cfg, s, x))(st, e)
    d2 = np.where(
        np.asarray(st.filled)[None], ((np.asarray(e)[:, None, :] - np.asarray(st.atoms)[None]) ** 2).sum(-1), np.inf
    )
    np.testing.assert_array_equal(np.asarray(knn_idx), np.argsort(d2, axis=1, kind="stable")[:, :3])
    # Rounding bounds of XLA's float32 evaluation against float64. Distances by the Gram expansion
    # |e|^2 - 2 e.a + |a|^2, a sum of 3d products: within gamma_{3d} of their absolute sum. The kernel
    # eps / (eps + d2 / dm2) moves by its slope k^2 / (eps dm2) (at the near end of d2's interval) times that, plus
    # 4u of itself (division, sum, division, eps's rounding); where d2 is within its bound of dm2 the indicator may
    # flip, so the whole kernel counts. (1 + c) and the product add 2u, the sum over M atoms gamma_M.
    u, eps = tolerances.unit_roundoff(np.float32), cfg.epsilon
    x, a, c = (np.asarray(t, np.float64) for t in (e, st.atoms, st.counts))
    filled = np.asarray(st.filled)[None]
    d2_64 = np.where(filled, ((x[:, None, :] - a[None]) ** 2).sum(-1), np.inf)
    d2_err = tolerances.gamma(3 * x.shape[1]) * (
        (x**2).sum(1)[:, None] + (a**2).sum(1)[None] + 2 * np.abs(x) @ np.abs(a).T
    )
    k = np.where(d2_64 < dm2, eps / (eps + d2_64 / dm2), 0.0)
    k_hi = np.where(d2_64 - d2_err < dm2, eps / (eps + np.maximum(d2_64 - d2_err, 0) / dm2), 0.0)
    flip = np.abs(d2_64 - dm2) <= d2_err
    k_err = k_hi**2 / (eps * dm2) * d2_err + 4 * u * k_hi + np.where(flip, k_hi, 0.0)
    terms = k * (1 + c)[None]
    count_b = ((k_err + 2 * u * k_hi) * (1 + c)[None]).sum(1) + tolerances.gamma(M) * (k_hi * (1 + c)[None]).sum(1)
    tolerances.assert_within(count, terms.sum(1), count_b, "kernel count")
    with pytest.raises(AssertionError, match="exceed their rounding bound"):  # each row's largest term left out
        tolerances.assert_within(count, terms.sum(1) - terms.max(1), count_b, "kernel count")
    idx = np.asarray(knn_idx)
    near = np.take_along_axis(d2_64, idx, 1)
    tolerances.assert_within(knn_d2, near, np.take_along_axis(d2_err, idx, 1), "k nearest squared distances")


def test_query_with_fewer_filled_atoms_than_k():
    """Blocks without a filled atom are never near: the missing neighbours are +inf."""
    M = 1000
    cfg = memory.RecodeConfig(memory_size=M, k=5)
    rng = np.random.default_rng(3)
    filled = np.zeros(M, bool)
    filled[[7, 500, 999]] = True
    st = memory.init(cfg, 2)._replace(atoms=jnp.asarray(rng.normal(size=(M, 2)).astype(np.float32)),
                                      filled=jnp.asarray(filled), dm2=jnp.float32(1.0))
    knn_d2, knn_idx, _ = jax.jit(lambda s, x: memory.query(cfg, s, x))(st, jnp.zeros((4, 2), jnp.float32))
    assert np.isinf(np.asarray(knn_d2)[:, 3:]).all() and np.isfinite(np.asarray(knn_d2)[:, :3]).all()
    assert (np.sort(np.asarray(knn_idx)[:, :3], axis=1) == [7, 500, 999]).all()
    assert (np.asarray(knn_idx) < M).all()


def test_count_mass_with_a_discount_too_strong_for_lazy_scaling():
    """gamma^-B underflows for gamma = 0.5, B = 128: the explicit per-embedding discount is used."""
    cfg = memory.RecodeConfig(memory_size=32, k=3, gamma=0.5, eta=0.3)
    st = memory.init(cfg, 3)
    xs = _stream(128 * 3, 3, seed=12).reshape(3, 128, 3)
    for t in range(3):
        st, _ = memory.checked_step(cfg, st, xs[t], jax.random.PRNGKey(t))
    assert float(jnp.sum(st.counts)) == pytest.approx(_count_mass_after(384, 0.5), rel=1e-4)


def test_large_memory_paths_equal_reference():
    """M = 4096 takes the chunked k-NN / kernel / evictee-neighbour paths; B = 1 must still equal Alg. 1."""
    M, d = 4096, 6
    cfg = memory.RecodeConfig(memory_size=M, k=4, kappa=0.3, tau=0.05, gamma=0.99, eta=0.7)
    rng = np.random.default_rng(5)
    atoms = rng.normal(size=(M, d)).astype(np.float32)
    counts = rng.exponential(2.0, size=M).astype(np.float32)
    st = memory.init(cfg, d)._replace(
        atoms=jnp.asarray(atoms),
        counts=jnp.asarray(counts),
        filled=jnp.ones(M, bool),
        dm2=jnp.float32(1.0),
        dm2_ready=jnp.bool_(True),
    )
    ref = ReferenceMemory(cfg, d)
    ref.atoms[:], ref.counts[:], ref.filled[:] = atoms, counts, True
    ref.dm2, ref.dm2_ready = 1.0, True
    key = jax.random.PRNGKey(8)
    n_ins = 0
    for t in range(40):
        e = (rng.normal(size=(1, d)) * 1.5).astype(np.float32)
        key, sk = jax.random.split(key)
        nz = memory.draw_noise(cfg, sk, 1)
        st, out = memory.checked_step(cfg, st, e, noise=nz)
        r, c, ins, slot = ref.step(e[0].astype(np.float64), float(nz.u[0]), np.asarray(nz.g, np.float64))
        assert (bool(out.inserted[0]), int(out.slot[0])) == (ins, slot)
        assert float(out.count[0]) == pytest.approx(c, rel=1e-3, abs=1e-5)
        n_ins += ins
    assert n_ins > 10
    np.testing.assert_allclose(np.asarray(st.counts), ref.counts, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.asarray(st.atoms), ref.atoms, atol=1e-4)


def test_pure_step_runs_inside_jit_and_scan_and_equals_the_checked_step():
    """The public core takes arrays and noise and has no Python-side checks, so it traces."""
    cfg = memory.RecodeConfig(memory_size=20, k=3, eta=0.3, tau=0.05)
    xs = jnp.asarray(_stream(8 * 6, 3, seed=4).reshape(6, 8, 3))
    noises = [memory.draw_noise(cfg, k, 8) for k in jax.random.split(jax.random.PRNGKey(5), 6)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *noises)

    @jax.jit
    def scan(st):
        return jax.lax.scan(lambda s, xn: memory.step(cfg, s, xn[0], xn[1]), st, (xs, stacked))

    st_scan, out_scan = scan(memory.init(cfg, 3))
    st = memory.init(cfg, 3)
    for t in range(6):
        st, out = memory.checked_step(cfg, st, np.asarray(xs[t]), noise=noises[t])
    np.testing.assert_array_equal(np.asarray(st.atoms), np.asarray(st_scan.atoms))
    np.testing.assert_array_equal(np.asarray(out.reward), np.asarray(out_scan.reward[-1]))
    upd = jax.jit(lambda s: memory.update(cfg, s, xs[0], noises[0]))(memory.init(cfg, 3))
    np.testing.assert_array_equal(
        np.asarray(upd.atoms), np.asarray(memory.checked_update(cfg, memory.init(cfg, 3), xs[0], noise=noises[0]).atoms)
    )
    r, n = jax.jit(lambda s, e: memory.reward(cfg, s, e))(st, xs[0])
    r2, n2 = memory.checked_reward(cfg, st, np.asarray(xs[0]))
    np.testing.assert_array_equal(np.asarray(r), np.asarray(r2))


def test_checked_step_rejects_mismatched_noise_and_missing_key():
    cfg = memory.RecodeConfig(memory_size=16, k=2)
    st = memory.init(cfg, 4)
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="noise shapes"):
        memory.checked_step(cfg, st, x, noise=memory.draw_noise(cfg, jax.random.PRNGKey(0), 3))
    with pytest.raises(ValueError, match="PRNG key"):
        memory.checked_step(cfg, st, x)
    with pytest.raises(ValueError, match="PRNG key"):
        memory.check_key(np.zeros(3))
    with pytest.raises(ValueError, match=r"expected \(T, batch, dim\)"):
        memory.checked_run_stream(cfg, st, x, jax.random.PRNGKey(0))


def test_sqdist_matches_numpy():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(7, 3)).astype(np.float32)
    want = ((x[:, None, :].astype(np.float64) - y[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(np.asarray(memory.sqdist(jnp.asarray(x), jnp.asarray(y))), want, rtol=1e-5, atol=1e-5)
