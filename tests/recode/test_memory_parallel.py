"""RECODE's parallel batch update (``RecodeConfig.update = "parallel"``) against the sequential update,
the NumPy transcription of Algorithm 1, hand-computed merges, invariants, and count tracking on
non-stationary streams (notebook 10's grid-world stream)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import tolerances
from replicate.recode import experiments, memory
from replicate.recode.reference import ReferenceMemory
from replicate.recode.streams import GridStream


def drifting_stream(T, d, seed):
    """A centre that drifts and a spread that grows (as in test_memory)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    centre = np.stack([np.sin(t[:, 0] / 60.0), np.cos(t[:, 0] / 90.0)] + [np.zeros(T)] * (d - 2), axis=1) * 3
    return (centre + rng.normal(size=(T, d)) * (0.5 + t / T)).astype(np.float32)


def parallel(cfg):
    return dataclasses.replace(cfg, update="parallel")


def test_update_field_is_validated_and_sequential_is_the_default():
    assert memory.RecodeConfig().update == "sequential"
    assert memory.UPDATE_RULES == ("sequential", "parallel")
    with pytest.raises(ValueError, match="update='batched'"):
        memory.RecodeConfig(update="batched")


@pytest.mark.parametrize("eviction", ["inverse_square", "smallest"])
def test_batch_of_one_equals_sequential_and_reference(eviction):
    """B = 1: same decisions and slots as the sequential update and Alg. 1 at every step, same d_m^2
    and atom set, atoms and counts to float32 rounding (the merged count is gamma c + 1 here,
    (c + 1/gamma) gamma in the sequential update)."""
    cfg = memory.RecodeConfig(memory_size=24, k=4, kappa=0.5, tau=0.05, gamma=0.98, eta=0.8, eviction=eviction)
    xs = drifting_stream(260, 3, seed=1)
    seq, par = memory.init(cfg, 3), memory.init(cfg, 3)
    ref = ReferenceMemory(cfg, 3)
    key = jax.random.PRNGKey(0)
    n_ins = 0
    for t in range(xs.shape[0]):
        key, sk = jax.random.split(key)
        nz = memory.draw_noise(cfg, sk, 1)
        e = jnp.asarray(xs[t : t + 1])
        seq, out_s = memory.step(cfg, seq, e, nz)
        par, out_p = memory.step(parallel(cfg), par, e, nz)
        r, c, ins, slot = ref.step(xs[t].astype(np.float64), float(nz.u[0]), np.asarray(nz.g, np.float64))
        decision_p = (bool(out_p.inserted[0]), int(out_p.slot[0]))
        assert decision_p == (bool(out_s.inserted[0]), int(out_s.slot[0])) == (ins, slot)
        # the states differ by rounding only, so the next rewards do too
        assert float(out_p.reward[0]) == pytest.approx(float(out_s.reward[0]), rel=1e-4)
        assert float(out_p.nearest_d2[0]) == pytest.approx(float(out_s.nearest_d2[0]), rel=1e-4, abs=1e-6)
        assert float(out_p.count[0]) == pytest.approx(c, rel=2e-4, abs=1e-4)
        n_ins += ins
    assert n_ins > 40  # evictions and hand-overs were exercised
    assert float(par.dm2) == float(seq.dm2)
    np.testing.assert_array_equal(np.asarray(par.filled), np.asarray(seq.filled))
    np.testing.assert_array_equal(np.asarray(par.born), np.asarray(seq.born))
    np.testing.assert_allclose(np.asarray(par.atoms), np.asarray(seq.atoms), rtol=1e-5, atol=1e-5)
    # Counts: per step the sequential update rounds at most 4 times (c gamma, + 1, / and * gamma^1), the parallel
    # one twice; earlier errors are scaled by gamma, plus 1 or hand-overs of positive counts, none of which grows
    # a relative error. So each side is within 4u T relative after T steps, and they differ by at most 8u T.
    rtol = 8 * tolerances.unit_roundoff(np.float32) * xs.shape[0]
    np.testing.assert_allclose(np.asarray(par.counts), np.asarray(seq.counts), rtol=rtol, atol=0)
    with pytest.raises(AssertionError):  # one discount too many (or a lost + 1) is far outside
        np.testing.assert_allclose(np.asarray(par.counts) * cfg.gamma, np.asarray(seq.counts), rtol=rtol, atol=0)
    np.testing.assert_allclose(np.asarray(par.atoms), ref.atoms, atol=1e-4)
    np.testing.assert_allclose(np.asarray(par.counts), ref.counts, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("discount_per", ["embedding", "call"])
def test_merges_are_exact_discounted_running_means(discount_per):
    """Three embeddings merge into one atom (eta = 0): position and count are the discounted weighted
    means B sequential merges give (hand-computed), and the sequential update agrees."""
    gamma = 0.9
    cfg = memory.RecodeConfig(memory_size=8, k=2, eta=0.0, gamma=gamma, tau=0.1, free_fill=False,
                              discount_per=discount_per, update="parallel")
    atoms = np.zeros((8, 2), np.float32)
    atoms[0], atoms[1] = [0.0, 0.0], [100.0, 0.0]
    st = memory.init(cfg, 2)._replace(
        atoms=jnp.asarray(atoms), counts=jnp.asarray([2.0, 5.0] + [0.0] * 6, jnp.float32),
        filled=jnp.asarray([True, True] + [False] * 6), dm2=jnp.float32(1e4), dm2_ready=jnp.bool_(True))
    e = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]], np.float32)
    noise = memory.draw_noise(cfg, jax.random.PRNGKey(0), 3)
    new, out = memory.step(cfg, st, jnp.asarray(e), noise)
    assert not bool(out.inserted.any()) and list(np.asarray(out.slot)) == [0, 0, 0]
    if discount_per == "embedding":
        pre, w = gamma**3, gamma ** np.array([2.0, 1.0, 0.0])
    else:
        pre, w = gamma, np.ones(3)
    c0 = pre * 2.0 + w.sum()
    f0 = (w[:, None] * e).sum(0) / c0  # the atom starts at the origin
    np.testing.assert_allclose(np.asarray(new.atoms[0]), f0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(new.counts[:2]), [c0, pre * 5.0], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(new.atoms[1]), atoms[1])
    seq, _ = memory.step(dataclasses.replace(cfg, update="sequential"), st, jnp.asarray(e), noise)
    # Both compute the discounted mean f0 = sum_b w_b e_b / c0 (the atom starts at 0): the parallel update in one
    # segment sum (weights by pow, ULPS u each; products, sums, a division), the sequential one in three merges
    # (each a pow for its unit, the count's product and sum, the mean's product, two sums and a division). To
    # first order each of these K = 3 (ULPS + 7) + (2 ULPS + 7) roundings moves the atom by at most
    # u (sum_b w_b |e_b| + c0 |f0|) / c0 (a merge's rounding is carried on with its weight's share c_b / c0 <= 1).
    # The other atoms are untouched by both: exact.
    u, ulps = tolerances.unit_roundoff(np.float32), tolerances.EXP_ULPS
    bound = np.zeros((8, 2))
    bound[0] = (3 * (ulps + 7) + 2 * ulps + 7) * u * ((w[:, None] * np.abs(e)).sum(0) + c0 * np.abs(f0)) / c0
    tolerances.assert_within(seq.atoms, new.atoms, bound, "sequential vs parallel merges")
    with pytest.raises(AssertionError, match="exceed their rounding bound"):  # one embedding's weight lost
        tolerances.assert_within(seq.atoms[0], (w[1:, None] * e[1:]).sum(0) / c0, bound[0], "merges")
    np.testing.assert_allclose(np.asarray(seq.counts), np.asarray(new.counts), rtol=1e-5)


def test_near_duplicates_in_a_batch_create_one_atom():
    cfg = memory.RecodeConfig(memory_size=16, k=2, eta=1.0, kappa=1.0, tau=0.1, update="parallel")
    st = memory.init(cfg, 2)
    three = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    st, _ = memory.checked_step(cfg, st, three, jax.random.PRNGKey(0))
    far = np.array([[50.0, 50.0]], np.float32) + np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32) * 1e-3
    st2, out = memory.checked_step(cfg, st, far, jax.random.PRNGKey(1))
    assert int(out.inserted.sum()) == 1  # the other 7 merge into the atom created by the first
    assert int(jnp.sum(st2.filled)) == int(jnp.sum(st.filled)) + 1
    new = int(np.asarray(out.slot)[np.asarray(out.inserted)][0])
    assert set(np.asarray(out.slot).tolist()) == {new}
    np.testing.assert_allclose(np.asarray(st2.atoms[new]), far.mean(0), atol=1e-3)  # the mean of all 8
    assert float(st2.counts[new]) == pytest.approx(sum(cfg.gamma**i for i in range(8)), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"memory_size": 16, "gamma": 0.995},  # B = 64 > M: every atom can be evicted in one call
        {"memory_size": 48, "gamma": 0.9, "discount_per": "call"},
        {"memory_size": 48, "gamma": 0.995, "max_insertions": 3},
        {"memory_size": 48, "gamma": 0.995, "free_fill": False, "eviction": "uniform"},
        {"memory_size": 32, "gamma": 0.5},  # gamma^(B-1-b) underflows for early embeddings
    ],
)
def test_invariants(kwargs):
    """Total count mass = discounted number of embeddings (merges add, hand-overs move, all decay);
    atoms <= capacity; counts >= 0; each insertion takes its own slot; no embedding is dropped."""
    cfg = memory.RecodeConfig(k=5, tau=0.02, eta=0.5, update="parallel", **kwargs)
    B, T = 64, 16
    xs = drifting_stream(B * T, 4, seed=2).reshape(T, B, 4) * 3.0
    st = memory.init(cfg, 4)
    mass = 0.0
    n_ins = dropped = 0
    key = jax.random.PRNGKey(3)
    for t in range(T):
        key, sk = jax.random.split(key)
        st, out = memory.checked_step(cfg, st, xs[t], sk)
        mass = mass * cfg.gamma**B + sum(cfg.gamma**i for i in range(B)) if cfg.discount_per == "embedding" \
            else mass * cfg.gamma + B
        slots = np.asarray(out.slot)
        ins = np.asarray(out.inserted)
        assert (slots >= 0).all() and (slots < cfg.memory_size).all()
        assert len(set(slots[ins].tolist())) == int(ins.sum())
        n_ins += int(ins.sum())
        dropped += int(out.dropped_insertions)
        counts = np.asarray(st.counts)
        assert counts.min() >= 0.0 and np.isfinite(np.asarray(st.atoms)).all()
        assert int(jnp.sum(st.filled)) <= cfg.memory_size
        assert float(counts.sum()) == pytest.approx(mass, rel=1e-4)
        assert (counts[~np.asarray(st.filled)] == 0).all()
    if cfg.max_insertions is None:
        assert n_ins > cfg.memory_size  # atoms were evicted and their counts handed over
    else:
        assert dropped > 0 and n_ins <= cfg.max_insertions * T


def test_run_stream_and_vmap_use_the_parallel_update():
    """The config field reaches run_stream (lax.scan) and the pure step inside jit/vmap."""
    cfg = memory.RecodeConfig(memory_size=20, k=3, eta=0.3, tau=0.05, update="parallel")
    xs = drifting_stream(8 * 12, 3, seed=9).reshape(12, 8, 3)
    key = jax.random.PRNGKey(11)
    st_scan, out_scan = memory.checked_run_stream(cfg, memory.init(cfg, 3), xs, key)
    st = memory.init(cfg, 3)
    for t, kk in enumerate(jax.random.split(key, 12)):
        st, out = memory.checked_step(cfg, st, xs[t], kk)
    np.testing.assert_allclose(np.asarray(st.atoms), np.asarray(st_scan.atoms), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.reward), np.asarray(out_scan.reward[-1]), rtol=1e-5)
    seq, _ = memory.checked_run_stream(dataclasses.replace(cfg, update="sequential"), memory.init(cfg, 3), xs, key)
    assert not np.allclose(np.asarray(seq.atoms), np.asarray(st_scan.atoms))  # B = 8: the two updates differ


def embedding_truth(cells, n_cells, gamma, points):
    """Counts per cell after calls [0, p), discounted once per embedding (row-major order)."""
    out = []
    for p in points:
        flat = cells[:p].reshape(-1)
        w = gamma ** (len(flat) - 1 - np.arange(len(flat)))
        out.append(np.bincount(flat, weights=w, minlength=n_cells))
    return np.array(out)


def track(cfg, gs, seeds, n_points):
    """Mean Spearman correlation (over seeds and points) of RECODE's pseudo-counts of every cell with
    the true discounted counts, and the final number of atoms per seed, for both updates."""
    stream = experiments.build_stream(gs, seeds)
    points = experiments.checkpoints(stream.cells.shape[0], n_points)
    if cfg.discount_per == "call":
        truth = experiments.true_counts(stream.cells, gs.n_cells, cfg.gamma, points, per="call")
    else:
        truth = embedding_truth(stream.cells, gs.n_cells, cfg.gamma, points)
    res = {}
    for update in memory.UPDATE_RULES:
        counts, _, states = experiments.run_recode(dataclasses.replace(cfg, update=update), stream, points,
                                                   jax.random.PRNGKey(0))
        rho = experiments.correlations(counts, truth)
        res[update] = (float(rho.mean()), np.asarray(jnp.sum(states.filled, axis=-1)), float(jnp.sum(states.counts)))
    return res


@pytest.mark.slow
@pytest.mark.parametrize("memory_size", [96, 512])  # fewer atoms than cells (evictions) / more (free)
def test_parallel_tracks_counts_like_sequential_on_a_long_drifting_stream(memory_size):
    """64 actors on a 12 x 12 grid whose goal moves through 4 phases (600 calls, 38k embeddings),
    per-embedding discount: rank correlation with the true counts within 0.05 of the sequential
    update's, number of atoms within 15%."""
    gs = GridStream(size=12, n_actors=64, episode_len=24, n_episodes=24, n_phases=4, embed_dim=16, seed=0)
    cfg = memory.RecodeConfig(memory_size=memory_size, k=10, gamma=0.99995, eta=0.1)
    res = track(cfg, gs, (0, 1), 4)
    (rho_s, atoms_s, mass_s), (rho_p, atoms_p, mass_p) = res["sequential"], res["parallel"]
    assert rho_s > 0.8  # the sequential update tracks the counts at all
    assert abs(rho_p - rho_s) <= 0.05, res
    np.testing.assert_allclose(atoms_p, atoms_s, rtol=0.15)
    assert mass_p == pytest.approx(mass_s, rel=1e-4)


def test_parallel_tracks_counts_like_sequential_on_notebook_10s_stream():
    """Notebook 10's stream and memory at its smoke profile (16 actors, 64 atoms, per-call discount)."""
    gs = GridStream(size=10, n_actors=16, episode_len=20, n_episodes=48, n_phases=4, embed_dim=32, noise=0.05, seed=0)
    cfg = memory.RecodeConfig(memory_size=64, k=10, kappa=0.5, gamma=0.999, eta=0.1, discount_per="call")
    res = track(cfg, gs, (0, 1), 6)
    (rho_s, atoms_s, _), (rho_p, atoms_p, _) = res["sequential"], res["parallel"]
    assert rho_s > 0.6
    assert abs(rho_p - rho_s) <= 0.05, res
    np.testing.assert_allclose(atoms_p, atoms_s, rtol=0.15)
