"""Theory of 'Transformers need glasses!' (App. B) against NumPy transcriptions, brute force and known limits."""

import math

import numpy as np
import pytest

from replicate.glasses import theory

# App. C.3 / Fig. 9: an independent NumPy reproduction in the research notes (seeds 0-4), which
# matches the values read off the paper's figure to 2-3 digits.
FIG9_N = [500, 750, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 10000]
FIG9_NOTES = [0.0258, 0.0212, 0.0170, 0.0117, 0.0091, 0.0078, 0.0066, 0.0050, 0.0041, 0.0020]
FIG9_PAPER = [0.026, 0.020, 0.017, 0.012, 0.0093, 0.0075, 0.0067, 0.0052, 0.0039, 0.0021]


def np_softmax(x):
    e = np.exp(np.asarray(x, dtype=np.float64))  # plain transcription, no max-shift (bounded inputs)
    return e / e.sum()


def test_softmax_and_tv_match_plain_numpy():
    g = np.random.default_rng(0)
    x, y = g.normal(size=50), g.normal(size=50)
    np.testing.assert_allclose(theory.softmax(x), np_softmax(x), rtol=1e-12)
    tv = theory.total_variation(theory.softmax(x), theory.softmax(y))
    assert tv == pytest.approx(sum(abs(a - b) for a, b in zip(np_softmax(x), np_softmax(y))), rel=1e-12)
    assert 0 < tv <= 2  # the paper's TV has no 1/2, so it lies in [0, 2]
    assert theory.total_variation(theory.softmax(x), theory.softmax(x)) == 0
    with pytest.raises(ValueError, match="shapes differ"):
        theory.total_variation(np.ones(3) / 3, np.ones(4) / 4)


@pytest.mark.parametrize("seed", range(5))
def test_lemma_b1_inequality_and_vanishing(seed):
    g = np.random.default_rng(seed)
    for n in [2, 5, 50, 500]:
        a = g.uniform(-1, 1, size=n - 1)
        b, c = g.uniform(-1, 1, size=2)
        last, last_star = theory.lemma_b1_terms(a, b, c)
        assert last > last_star  # softmax(x)_n > softmax(x*)_{n+1}
    a = g.uniform(-1, 1, size=100_000)
    last, last_star = theory.lemma_b1_terms(a, 0.3, -0.2)
    assert last < math.e**2 / 100_000 and last - last_star < 1e-4  # both vanish, bounded logits: <= e^{M-m}/n


def test_lemma_b2_tv_vanishes_when_the_difference_is_confined():
    # x and x* differ only on a fixed prefix: the TV is O(k/n) and goes to 0 (Lemma 4.1).
    tvs = []
    for n in [100, 1000, 10_000, 100_000]:
        x = np.linspace(0, 1, n)
        xs = x.copy()
        xs[:10] += 0.5
        tvs.append(theory.lemma_b2_tv(x, xs))
    assert all(a > b for a, b in zip(tvs, tvs[1:]))
    assert tvs[-1] < 1e-4


def test_fig9_tv_decay_matches_reference_values():
    tv = theory.tv_decay(FIG9_N, range(5))
    assert tv.shape == (5, len(FIG9_N))
    mean = tv.mean(axis=0)
    np.testing.assert_allclose(mean, FIG9_NOTES, rtol=0.03, atol=1e-4)
    np.testing.assert_allclose(mean, FIG9_PAPER, rtol=0.10)  # values read off the paper's plot
    # Independent re-implementation of one cell with plain numpy.
    gen = np.random.default_rng(3)
    x = gen.uniform(0, 1, 1500)
    xs = x.copy()
    xs[:200] += gen.uniform(0, 0.1, 200)
    assert tv[3, 3] == pytest.approx(np.abs(np_softmax(x) - np_softmax(xs)).sum(), rel=1e-10)
    # crosses the bf16 epsilon 2^-7 between n = 2000 and 3000, as in the paper's figure
    assert mean[4] > 2**-7 > mean[6]
    with pytest.raises(ValueError, match="must be >= k"):
        theory.tv_decay([100], [0])


def test_prop_b4_alternating_limit():
    assert theory.PROP_B4_LIMIT == pytest.approx(0.9242343, abs=1e-7)
    for n in [2, 10, 1000, 100_000]:
        # exact at every even n: each 1 carries e/((n/2)(e+1)) and each 0 carries 1/((n/2)(e+1))
        assert theory.alternating_tv(n) == pytest.approx(theory.PROP_B4_LIMIT, rel=1e-10)
        x = np.tile([1.0, 0.0], n // 2)
        assert np.abs(np_softmax(x) - np_softmax(1 - x)).sum() == pytest.approx(theory.PROP_B4_LIMIT, rel=1e-10)
    with pytest.raises(ValueError):
        theory.alternating_tv(7)


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_path_count_formula_dp_bruteforce_and_matrix_power(layers):
    for n in range(1, 8):
        dp = theory.causal_path_count_dp(n, layers)
        power = np.linalg.matrix_power(np.tril(np.ones((n, n), dtype=np.int64)), layers)[n - 1]
        for i in range(1, n + 1):
            formula = theory.causal_path_count(n, i, layers)
            assert formula == theory.causal_path_count_bruteforce(n, i, layers) == dp[i - 1] == power[i - 1]
    assert theory.causal_path_count(50, 50, layers) == 1  # the last token has one path
    assert theory.causal_path_count(50, 1, layers) >= theory.causal_path_count(50, 25, layers)


def test_path_count_validation():
    with pytest.raises(ValueError, match="1-based"):
        theory.causal_path_count(5, 6, 2)
    with pytest.raises(ValueError, match="layers"):
        theory.causal_path_count(5, 1, 0)


def _random_causal_attention(n, g):
    logits = g.normal(size=(n, n))
    logits[np.triu_indices(n, 1)] = -np.inf
    return np.stack([np_softmax(row[np.isfinite(row)]).tolist() + [0.0] * (n - i - 1) for i, row in enumerate(logits)])


def test_lemmas_b6_b7_on_random_causal_attention():
    g = np.random.default_rng(1)
    a, b = _random_causal_attention(12, g), _random_causal_attention(12, g)
    assert theory.is_row_stochastic(a) and theory.is_row_stochastic(b)
    assert theory.is_row_stochastic(a @ b) and np.allclose(np.triu(a @ b, 1), 0)  # B.7
    eig = np.linalg.eigvals(a)
    assert np.max(np.abs(eig)) == pytest.approx(1.0) and np.sum(np.isclose(eig, 1.0)) == 1  # B.6


def test_oversquashing_bound_single_layer_and_composition():
    g = np.random.default_rng(2)
    lam0, lam1 = _random_causal_attention(6, g), _random_causal_attention(6, g)
    one = theory.oversquashing_bound([lam0], betas=2.0)
    np.testing.assert_allclose(one, lam0[-1] / 2.0 + np.eye(6)[-1])
    two = theory.oversquashing_bound([lam0, lam1], betas=[1.0, 1.0], constant=3.0)
    # hand-written nested sum over the intermediate position k: Σ_k (Λ1+I)_{n,k} (Λ0+I)_{k,i}
    ref = np.array([sum((lam1 + np.eye(6))[5, k] * (lam0 + np.eye(6))[k, i] for k in range(6)) for i in range(6)])
    np.testing.assert_allclose(two, 3.0 * ref)
    assert theory.bound_constant(3, sigma_psi=1.0, beta2=1.0, beta3=64.0) == pytest.approx(8 / 64)
    with pytest.raises(ValueError, match="square"):
        theory.oversquashing_bound([np.ones((3, 4))])
    with pytest.raises(ValueError, match="beta"):
        theory.layer_factor(lam0, beta=0.0)


def test_prop_b8_depth_limit():
    n = 10
    for lam in [theory.uniform_causal_attention(n), _random_causal_attention(n, np.random.default_rng(3))]:
        shallow = theory.depth_limit(lam, 1)
        assert shallow[-1, -1] > shallow[-1, 0]  # at depth 1 the last token still dominates its own output
        deep = theory.depth_limit(lam, 400)
        np.testing.assert_allclose(deep, theory.prop_b8_limit(n), atol=1e-8)
        # equals the bound with beta1=beta2=sigma=1, beta3^(1/L)=4: C = 2^L / 4^L = 2^-L
        L = 5
        np.testing.assert_allclose(
            theory.depth_limit(lam, L),
            theory.bound_constant(L, beta3=4.0**L) * theory.bound_matrix([lam] * L),
            rtol=1e-12,
        )
    # B.8 needs >= 2 non-zeros per row: with Λ = I (each token attends only to itself) there is no collapse
    np.testing.assert_allclose(theory.depth_limit(np.eye(n), 400), np.eye(n))
