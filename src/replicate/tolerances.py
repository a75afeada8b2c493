"""Float tolerances from rounding analysis, for tests that compare two implementations of one computation.

Two float32 programs that add the same terms in different orders (a blocked kernel against a dense one,
XLA on one CPU against XLA on another) agree only up to rounding. A test tolerance must come from a
bound on that rounding, not from the difference one machine happened to show. The bounds here are the
classical first-order ones (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., ch. 3-4):

* a sum of ``n`` terms in any order, any blocking, with or without FMA, is within
  ``gamma(n) * sum |x_i|`` of the exact sum, ``gamma(n) = n u / (1 - n u)`` with ``u`` the unit roundoff;
* so two such evaluations differ by at most twice that.

They hold for every summation order, so they pass on any CPU, and they scale with the reduction length
and the magnitudes involved, so they stay tight enough to catch a real error (a wrong mask, a missing
term): tests show that next to each use.
"""

from __future__ import annotations

import numpy as np

# Relative error of one call to exp in float32, in units of the roundoff u. XLA:CPU's and NumPy's float32
# exp are accurate to ~1-2 ulp (2-4 u); 8 u leaves a margin for other libms.
EXP_ULPS = 8.0


def unit_roundoff(dtype) -> float:
    """``u``: half the spacing of ``dtype`` at 1 (float32: 2**-24 ~ 6.0e-8; bfloat16: 2**-8)."""
    import ml_dtypes  # knows bfloat16 as well as NumPy's float types

    return float(ml_dtypes.finfo(np.dtype(dtype)).eps) / 2


def gamma(n, dtype=np.float32) -> np.ndarray | float:
    """``gamma_n = n u / (1 - n u)``: the relative error bound of an ``n``-term sum or dot product.

    ``n`` may be an array (one reduction length per output element). Raises when ``n u >= 1`` (no bound).
    """
    u = unit_roundoff(dtype)
    nu = np.asarray(n, np.float64) * u
    if np.any(nu >= 1):
        raise ValueError(f"no rounding bound for a reduction of length {np.max(n)} in {np.dtype(dtype)}: n*u >= 1")
    out = nu / (1 - nu)
    return float(out) if np.ndim(out) == 0 else out


def sum_bound(abs_terms_sum, n, dtype=np.float32):
    """Bound on ``|computed - exact|`` of a sum of ``n`` terms whose absolute values sum to ``abs_terms_sum``."""
    return gamma(n, dtype) * np.asarray(abs_terms_sum, np.float64)


def matmul_bound(a, b, dtype=np.float32) -> np.ndarray:
    """Bound on ``|computed - exact|`` of ``a @ b`` evaluated in ``dtype``, element-wise: ``gamma_k |a| @ |b|``.

    Each element is a dot product of length ``k`` (the inner dimension), so Higham's eq. (3.13),
    ``|fl(AB) - AB| <= gamma_k |A| |B|``, holds for every summation order and blocking, with or without FMA.
    ``a`` and ``b`` are the exact operands (exactly representable in ``dtype``; rounding them first is the
    caller's to add). Two evaluations of one product differ by at most twice this.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return gamma(a.shape[-1], dtype) * (np.abs(a) @ np.abs(b))


def attention_bounds(q, k, v, mask, scale: float, dtype=np.float32, score_err=None) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on how far two ``dtype`` evaluations of masked softmax attention may differ, element-wise.

    ``q`` (H, Sq, D), ``k`` and ``v`` (H, Sk, D) (key/value heads already repeated per query head),
    ``mask`` (Sq, Sk) bool, ``scale`` multiplying the scores. Returns ``(out_bound (H, Sq, D),
    prob_bound (H, Sq, Sk))``: any two implementations that compute ``s = scale * q.k`` (a dot of length
    D), ``p = softmax(s)`` over the visible keys and ``out = p @ v`` (a sum over the visible keys), each
    in ``dtype`` and in any summation order, differ by at most these (first order in ``u``):

    * scores: ``|ds_ij| <= gamma_D scale sum_d |q_id k_jd| + u |s_ij|`` (the dot, then the scaling);
    * weights: ``p_j = exp(s_j - m) / Z`` moves by at most ``|ds_j| + max_k |ds_k|`` (relative) from the
      scores, ``u |s_j - m|`` from the subtraction, ``EXP_ULPS u`` from exp (numerator and ``Z``'s terms),
      ``gamma_n`` from ``Z``'s sum of ``n`` visible terms and ``u`` from the division;
    * output: ``|d out_d| <= sum_j |dp_j| |v_jd| + gamma_n sum_j p_j |v_jd|``.

    Masked entries get bound 0: both sides must give exactly 0 there, so a wrong mask fails at once.

    ``score_err`` (broadcastable to (H, Sq, Sk)), if given, is added to ``|ds_ij|``: a bound on how far each
    evaluation's scores may move because its inputs are rounded before the dot (e.g. positional encodings
    computed in ``dtype``, with ``q``, ``k`` then the exact encoded values).
    """
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    mask = np.asarray(mask, bool)
    u = unit_roundoff(dtype)
    d = q.shape[-1]
    n = np.maximum(mask.sum(-1), 1)[None, :, None]  # visible keys per query row
    s = scale * np.einsum("hqd,hkd->hqk", q, k)
    ds = gamma(d, dtype) * scale * np.einsum("hqd,hkd->hqk", np.abs(q), np.abs(k)) + u * np.abs(s)
    if score_err is not None:
        ds = ds + np.asarray(score_err, np.float64)
    ds = np.where(mask, ds, 0.0)
    s_masked = np.where(mask, s, -np.inf)
    m = s_masked.max(-1, keepdims=True)
    shift = np.where(mask, np.abs(s - m), 0.0)
    rel = (ds + ds.max(-1, keepdims=True) + u * (shift + shift.max(-1, keepdims=True))
           + 2 * EXP_ULPS * u + gamma(n, dtype) + u)
    p = np.where(mask, np.exp(s_masked - m), 0.0)
    p /= p.sum(-1, keepdims=True)
    dp = rel * p
    dout = np.einsum("hqk,hkd->hqd", dp, np.abs(v)) + gamma(n, dtype) * np.einsum("hqk,hkd->hqd", p, np.abs(v))
    # Each evaluation is within the bound of the exact value, so two evaluations are within twice it.
    return 2 * dout, 2 * np.where(mask, dp, 0.0)


def assert_within(actual, desired, bound, what: str = "values") -> None:
    """Assert ``|actual - desired| <= bound`` element-wise, reporting the worst element's ratio to its bound."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    bound = np.broadcast_to(np.asarray(bound, np.float64), actual.shape)
    err = np.abs(actual - desired)
    bad = err > bound
    if bad.any():
        ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1), np.inf)
        i = np.unravel_index(np.argmax(ratio), ratio.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements exceed their rounding bound; worst at {i}: "
            f"|{actual[i]:.9g} - {desired[i]:.9g}| = {err[i]:.3g} > bound {bound[i]:.3g}"
        )
