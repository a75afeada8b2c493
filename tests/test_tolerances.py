"""replicate.tolerances: the rounding bounds hold for float32 sums and products in any order, and are tight
enough that one dropped term exceeds them."""

import math

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from replicate import tolerances


def test_unit_roundoff():
    assert tolerances.unit_roundoff(np.float32) == 2.0**-24
    assert tolerances.unit_roundoff(np.float64) == 2.0**-53
    assert tolerances.unit_roundoff(ml_dtypes.bfloat16) == 2.0**-8
    assert tolerances.gamma(10) == pytest.approx(10 * 2.0**-24, rel=1e-6)
    np.testing.assert_allclose(tolerances.gamma(np.array([1, 10])), [tolerances.gamma(1), tolerances.gamma(10)])
    with pytest.raises(ValueError, match="no rounding bound"):
        tolerances.gamma(2**24)


def _float32_sums(x: np.ndarray) -> dict[str, float]:
    """The float32 sum of ``x`` in several orders: sequential (forward, backward, by increasing and decreasing
    magnitude), NumPy's pairwise, blocked (row sums then their sum), and XLA's."""
    x32 = x.astype(np.float32)
    by_mag = x32[np.argsort(np.abs(x32))]
    n = len(x32)
    block = next(b for b in (7, 5, 3, 2, 1) if n % b == 0)
    return {
        "forward": np.cumsum(x32)[-1],  # cumsum adds sequentially
        "backward": np.cumsum(x32[::-1])[-1],
        "increasing": np.cumsum(by_mag)[-1],
        "decreasing": np.cumsum(by_mag[::-1])[-1],
        "pairwise": np.sum(x32),
        "blocked": np.sum(x32.reshape(-1, block).sum(1)),
        "xla": float(jnp.sum(jnp.asarray(x32))),
    }


@pytest.mark.parametrize("n", [10, 100, 1000, 10_000])
@pytest.mark.parametrize("kind", ["normal", "positive", "spread"])
def test_sum_bound_holds_in_any_order(n, kind):
    rng = np.random.default_rng(n)
    x = {
        "normal": rng.normal(size=n),
        "positive": rng.exponential(size=n),
        "spread": rng.normal(size=n) * 10.0 ** rng.uniform(-4, 4, n),  # magnitudes over 8 decades
    }[kind].astype(np.float32).astype(np.float64)  # exactly representable terms
    exact = math.fsum(x)
    bound = tolerances.sum_bound(np.abs(x).sum(), n)
    sums = _float32_sums(x)
    for order, s in sums.items():
        tolerances.assert_within(s, exact, bound, f"{order} float32 sum of {n} {kind} terms")
    values = np.array(list(sums.values()), np.float64)
    assert values.max() - values.min() <= 2 * bound  # two orders differ by at most twice the bound


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_sum_bound_is_not_absurdly_loose(n):
    # Dropping the largest term of a sum of normal terms moves it by far more than twice the bound, so a
    # test that compares two reductions with this tolerance still fails a reduction that misses a term.
    x = np.random.default_rng(n).normal(size=n).astype(np.float32).astype(np.float64)
    bound = 2 * tolerances.sum_bound(np.abs(x).sum(), n)
    dropped = x[np.argmax(np.abs(x))]
    assert abs(dropped) > 10 * bound
    with pytest.raises(AssertionError, match="exceed their rounding bound"):
        tolerances.assert_within(math.fsum(x) - dropped, math.fsum(x), bound, "sum missing a term")
    # ... and for positive terms even a typical (median) term exceeds it.
    p = np.random.default_rng(n).exponential(size=n).astype(np.float32).astype(np.float64)
    assert np.median(p) > 2 * tolerances.sum_bound(p.sum(), n) * (10 if n <= 100 else 1)


def test_matmul_bound_holds_for_numpy_and_xla():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 300)).astype(np.float32)
    b = (rng.normal(size=(300, 12)) * 10.0 ** rng.uniform(-2, 2, (300, 1))).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)  # the products are exact in float64; sums to ~1e-16
    bound = tolerances.matmul_bound(a, b)
    tolerances.assert_within(a @ b, exact, bound, "NumPy float32 matmul")
    tolerances.assert_within(np.asarray(jnp.asarray(a) @ jnp.asarray(b)), exact, bound, "XLA float32 matmul")
    tolerances.assert_within(np.asarray(jnp.asarray(a) @ jnp.asarray(b)), a @ b, 2 * bound, "XLA vs NumPy")
    # one inner term left out exceeds twice the bound
    with pytest.raises(AssertionError, match="exceed their rounding bound"):
        tolerances.assert_within(a[:, 1:] @ b[1:], exact, 2 * bound, "matmul missing a term")


def test_assert_within_reports_the_worst_element():
    tolerances.assert_within([1.0, 2.0], [1.0, 2.0 + 1e-9], 1e-8)
    with pytest.raises(AssertionError, match=r"1 of 2 elements .* \|2 - 2\.1\|"):
        tolerances.assert_within([1.0, 2.0], [1.0, 2.1], [1e-8, 1e-3], "pair")
    with pytest.raises(AssertionError, match="exceed"):
        tolerances.assert_within([0.0, 1e-30], [0.0, 0.0], 0.0)  # bound 0: exact equality required
