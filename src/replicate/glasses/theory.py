"""The theory of "Transformers need glasses!" (Barbero et al., NeurIPS 2024, arXiv 2406.04267) as functions.

Representational collapse (Sec. 4, App. B.1):

* :func:`total_variation`: the paper's δ(μ, ν) = Σ_x |μ(x) − ν(x)| (the plain L1 distance; the paper
  says it drops the usual ½).
* :func:`lemma_b1_terms`: Lemma B.1, softmax([a c])_n > softmax([a b c])_{n+1}, both → 0.
* :func:`lemma_b2_tv` and :func:`tv_decay`: Lemma B.2 (Lemma 4.1), and its numerical check in App. C.3
  (Fig. 9): x ~ U[0,1]^n, x* = x plus U[0, 0.1] noise on the first k = 200 entries.
* :func:`alternating_tv`, :data:`PROP_B4_LIMIT`: Prop. B.4, the alternating counterexample whose
  total variation tends to 2(e−1)/(e+1) ≈ 0.924, not 0.

Over-squashing (Sec. 5, App. B.2):

* :func:`causal_path_count`: the number of paths i ≤ k₁ ≤ … ≤ k_{L−1} ≤ n from input token i to the
  output at n through L causal layers, C(n−i+L−1, L−1) (derived in the research notes; the paper's
  Fig. 1(b) draws the paths but gives no formula). :func:`causal_path_count_dp` counts them by
  dynamic programming and :func:`causal_path_count_bruteforce` by enumeration.
* :func:`oversquashing_bound`: Theorem 5.1 / B.5 in matrix form,
  ‖∂y_n/∂v_i^(0)‖ ≤ C · [Λ̄^(L−1) ⋯ Λ̄^(0)]_{n,i}, Λ̄^(l) = Λ^(l)/β + I, built from measured attention
  matrices Λ^(l). The paper prints three mutually inconsistent forms of Λ̄ and C (β₂ in the main
  text, β₁ in the proof, (α+δ)/β in the statement of B.5); we use the proof's per-layer form, which
  is the one Prop. B.8 uses, with :func:`bound_constant` for C.
* :func:`depth_limit`, :func:`prop_b8_limit`: Prop. B.8 (5.2): with β₁ = β₂ = σ_ψ = 1, β₃^{1/L} = 4
  and the same Λ in every layer, the bound is ([½(Λ + I)]^L)_{n,i}, which tends to a matrix whose first
  column is ones and whose other entries are zero: y_n ends up depending on the first token only.
* :func:`uniform_causal_attention`: the attention matrix of NoPE attention with constant logits,
  Λ_ij = 1/i for j ≤ i (the generic case B.8's assumption "≥ 2 non-zeros per row" covers).

Everything here is plain NumPy/SciPy (float64): these are exact statements, not model code.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
from scipy.special import comb, logsumexp

from replicate.rng import numpy_rng

#: Prop. B.4: lim δ(softmax(1,0,1,0,…), softmax(0,1,0,1,…)) = 2(e−1)/(e+1).
PROP_B4_LIMIT = 2.0 * (math.e - 1.0) / (math.e + 1.0)


# --------------------------------------------------------------------------------------------- softmax / TV


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(x - logsumexp(x, axis=axis, keepdims=True))


def total_variation(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """The paper's total variation δ(p, q) = Σ |p − q| (App. B.1: "we ignore the usual ½")."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(
            f"total_variation: shapes differ, {p.shape} vs {q.shape}; compare distributions on the same support"
        )
    return np.sum(np.abs(p - q), axis=axis)


def lemma_b1_terms(a: np.ndarray, b: float, c: float) -> tuple[float, float]:
    """Lemma B.1: for x = [a c] and x* = [a b c], return (softmax(x)_n, softmax(x*)_{n+1}).

    The lemma says the first is strictly larger than the second, and that both vanish as n grows
    (with bounded entries).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    x = np.concatenate([a, [c]])
    xs = np.concatenate([a, [b, c]])
    return float(softmax(x)[-1]), float(softmax(xs)[-1])


def lemma_b2_tv(x: np.ndarray, x_star: np.ndarray) -> float:
    """Lemma B.2: δ(softmax(x), softmax(x*)) for two logit vectors of the same length."""
    return float(total_variation(softmax(x), softmax(x_star)))


def tv_decay(ns: Sequence[int], seeds: Sequence[int], *, k: int = 200, noise: float = 0.1) -> np.ndarray:
    """App. C.3 / Fig. 9: total variation between softmax(x) and softmax(x*) for each n and seed.

    x ~ U[0, 1]^n and x* = x + u with u_i ~ U[0, noise] on the first ``k`` entries and 0 elsewhere.
    Returns an array of shape (len(seeds), len(ns)). Each (seed, n) uses a fresh generator
    ``replicate.rng.numpy_rng(seed)`` (common random numbers across n: the same seed shares its first
    draws at every length, so a curve's points differ by the length, not by resampling noise).
    """
    ns = [int(n) for n in ns]
    if not ns or min(ns) < k:
        raise ValueError(f"tv_decay: every n must be >= k={k} (noise goes on the first k entries); got {ns}")
    if noise < 0:
        raise ValueError(f"tv_decay: noise must be >= 0, got {noise}")
    out = np.empty((len(seeds), len(ns)))
    for s_i, seed in enumerate(seeds):
        for n_i, n in enumerate(ns):
            gen = numpy_rng(int(seed))
            x = gen.uniform(0.0, 1.0, size=n)
            x_star = x.copy()
            x_star[:k] += gen.uniform(0.0, noise, size=k)
            out[s_i, n_i] = lemma_b2_tv(x, x_star)
    return out


def alternating_tv(n: int) -> float:
    """Prop. B.4: δ(softmax(1,0,1,0,…), softmax(0,1,0,1,…)) for sequences of (even) length n."""
    if n < 2 or n % 2:
        raise ValueError(f"alternating_tv: n must be even and >= 2, got {n}")
    x = np.tile([1.0, 0.0], n // 2)
    return lemma_b2_tv(x, 1.0 - x)


# --------------------------------------------------------------------------------------------- paths


def causal_path_count(n: int, i: int, layers: int) -> int:
    """Paths from input position ``i`` to the output at position ``n`` (1-based, i ≤ n) through
    ``layers`` causal attention layers: non-decreasing i = k₀ ≤ k₁ ≤ … ≤ k_L = n, i.e. C(n−i+L−1, L−1).

    Self-loops (a token attending to itself, or the residual) count as a path step. It is 1 for
    i = n and ≈ n^{L−1}/(L−1)! for i = 1.
    """
    _check_path_args(n, i, layers)
    return int(comb(n - i + layers - 1, layers - 1, exact=True))


def causal_path_count_dp(n: int, layers: int) -> np.ndarray:
    """All path counts to position n at once, by dynamic programming: row n of T^L with T the
    lower-triangular all-ones (causal) adjacency. Returns an int array of length n (index i−1)."""
    _check_path_args(n, 1, layers)
    counts = np.zeros(n, dtype=object)  # exact big integers
    counts[n - 1] = 1  # paths of length 0 end at n
    for _ in range(layers):
        # one more step backwards: a node j can precede every node k >= j
        counts = np.cumsum(counts[::-1])[::-1]
    return counts


def causal_path_count_bruteforce(n: int, i: int, layers: int) -> int:
    """Enumerate every sequence (k₁, …, k_{L−1}) with i ≤ k₁ ≤ … ≤ k_{L−1} ≤ n (for tests; small n, L)."""
    _check_path_args(n, i, layers)
    total = 0
    for ks in itertools.product(range(i, n + 1), repeat=layers - 1):
        path = (i, *ks, n)
        total += all(path[t] <= path[t + 1] for t in range(layers))
    return total


def _check_path_args(n: int, i: int, layers: int) -> None:
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if not 1 <= i <= n:
        raise ValueError(f"positions are 1-based with 1 <= i <= n; got i={i}, n={n}")


# --------------------------------------------------------------------------------------------- bound


def _check_attention(lam: np.ndarray, name: str = "attention") -> np.ndarray:
    lam = np.asarray(lam, dtype=np.float64)
    if lam.ndim != 2 or lam.shape[0] != lam.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {lam.shape}; average or pick heads first")
    return lam


def layer_factor(lam: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """Λ̄ = Λ/β + I: one layer's factor in the sensitivity bound (proof of Thm B.5, p. 17)."""
    if beta <= 0:
        raise ValueError(f"beta (LayerNorm constant) must be > 0, got {beta}")
    lam = _check_attention(lam)
    return lam / beta + np.eye(lam.shape[0])


def bound_matrix(attentions: Sequence[np.ndarray], betas: float | Sequence[float] = 1.0) -> np.ndarray:
    """Π_l Λ̄^(l) = Λ̄^(L−1) ⋯ Λ̄^(0) for per-layer attention matrices (input layer first)."""
    if len(attentions) == 0:
        raise ValueError("need at least one layer's attention matrix")
    betas = [float(betas)] * len(attentions) if np.isscalar(betas) else list(betas)
    if len(betas) != len(attentions):
        raise ValueError(f"{len(betas)} betas for {len(attentions)} layers")
    out = None
    for lam, beta in zip(attentions, betas):
        f = layer_factor(lam, beta)
        out = f if out is None else f @ out
    return out


def bound_constant(layers: int, *, sigma_psi: float = 1.0, beta2: float = 1.0, beta3: float = 1.0) -> float:
    """C = (1/β₃) Π_{l=1}^{L} (σ_ψ/β₂ + 1) from the proof of Thm B.5 (same constants in every layer)."""
    return float((sigma_psi / beta2 + 1.0) ** layers / beta3)


def oversquashing_bound(
    attentions: Sequence[np.ndarray], *, position: int = -1, betas: float | Sequence[float] = 1.0, constant: float = 1.0
) -> np.ndarray:
    """Thm 5.1 in matrix form: C · [Π_l (Λ^(l)/β + I)]_{n, :} for the output at ``position``.

    Returns one bound per input position i (length n). The paper's assumptions (ii): attention weights
    are treated as constants, so this bounds the Jacobian through the value path only.
    """
    return constant * bound_matrix(attentions, betas)[position]


def uniform_causal_attention(n: int) -> np.ndarray:
    """Λ_ij = 1/i for j ≤ i (1-based): causal attention with equal logits (NoPE at zero logits)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]


def depth_limit(lam: np.ndarray, layers: int) -> np.ndarray:
    """Prop. B.8: the bound ([½(Λ + I)]^L) for the same attention matrix Λ in every layer."""
    lam = _check_attention(lam)
    if layers < 0:
        raise ValueError(f"layers must be >= 0, got {layers}")
    return np.linalg.matrix_power(0.5 * (lam + np.eye(lam.shape[0])), layers)


def prop_b8_limit(n: int) -> np.ndarray:
    """The L → ∞ limit of :func:`depth_limit`: ψφᵀ with ψ = 1 and φ = e₁, i.e. first column ones."""
    out = np.zeros((n, n))
    out[:, 0] = 1.0
    return out


def is_row_stochastic(m: np.ndarray, atol: float = 1e-9) -> bool:
    """Lemma B.7 check: non-negative entries, rows summing to one."""
    m = np.asarray(m, dtype=np.float64)
    return bool(np.all(m >= -atol) and np.allclose(m.sum(axis=-1), 1.0, atol=atol))
