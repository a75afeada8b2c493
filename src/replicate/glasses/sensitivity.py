"""Per-position sensitivity ‖∂y_n/∂v_i^(0)‖ of a model's final representation to its input embeddings.

Theorem 5.1 of "Transformers need glasses!" bounds ‖∂y_n/∂v_i^(0)‖ by C·[Π_l (Λ^(l)/β + I)]_{n,i};
the paper measures nothing of the kind ("understanding how to directly measure over-squashing" is
left as future work). This module measures it with reverse-mode autodiff, for any function
``f: (seq, width) -> (seq, width_out)`` from input embeddings to final representations: the synthetic
models of :mod:`replicate.glasses.transformer` (``Model.final``) or Gemma 3 via
``lambda e: model.forward_from_embeddings(e)[1][-1]``.

* :func:`jacobian_norms` (``method="exact"``): one ``jax.vjp`` of y_n, then the VJP applied to every
  basis cotangent e_c (in chunks, so memory stays at ``chunk`` backward passes), giving the full
  block ∂y_n/∂v (width_out, seq, width_in) and its Frobenius (or spectral) norm per input position.
* ``method="probes"``: Hutchinson's estimator, ‖J_i‖_F² = E_u ‖uᵀ J_i‖² for u ~ N(0, I), with
  ``probes`` random cotangents: unbiased for the squared norm, cheap for wide models.

No finite differences here (they are the tests' independent reference).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _vjp_at(f: Callable, emb: jax.Array, position: int):
    emb = jnp.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be (seq, width), got shape {emb.shape}")
    seq = emb.shape[0]
    if not -seq <= position < seq:
        raise ValueError(f"position {position} is outside a sequence of length {seq}")
    y, vjp_fn = jax.vjp(lambda e: f(e)[position], emb)
    return y, vjp_fn


def jacobian_block(f: Callable, emb: jax.Array, *, position: int = -1, chunk: int = 64) -> np.ndarray:
    """The full Jacobian ∂y_position/∂emb, shape (width_out, seq, width_in), float32 NumPy.

    Built from VJPs with the basis cotangents, ``chunk`` at a time (vmapped).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    y, vjp_fn = _vjp_at(f, emb, position)
    d_out = y.shape[-1]
    apply = jax.jit(jax.vmap(lambda c: vjp_fn(c)[0]))
    eye = jnp.eye(d_out, dtype=y.dtype)
    rows = [np.asarray(apply(eye[s : s + chunk]), dtype=np.float32) for s in range(0, d_out, chunk)]
    return np.concatenate(rows, axis=0)


def jacobian_norms(
    f: Callable,
    emb: jax.Array,
    *,
    position: int = -1,
    method: str = "exact",
    ord: str = "fro",
    probes: int = 32,
    key: jax.Array | None = None,
    chunk: int = 64,
) -> np.ndarray:
    """‖∂y_position/∂v_i‖ for every input position i: a length-seq float64 array.

    method "exact": Frobenius (``ord="fro"``) or spectral (``ord="2"``) norm of each (width_out, width_in)
    block. method "probes": Hutchinson estimate of the Frobenius norm from ``probes`` Gaussian
    cotangents (needs ``key``).
    """
    if method == "exact":
        jac = jacobian_block(f, emb, position=position, chunk=chunk).astype(np.float64)
        if ord == "fro":
            return np.sqrt(np.sum(jac**2, axis=(0, 2)))
        if ord == "2":
            return np.array([np.linalg.norm(jac[:, i, :], 2) for i in range(jac.shape[1])])
        raise ValueError(f"ord={ord!r}: choose 'fro' or '2'")
    if method == "probes":
        if key is None:
            raise ValueError("method='probes' needs a PRNG key (replicate.rng.key(seed))")
        if probes < 1:
            raise ValueError(f"probes must be >= 1, got {probes}")
        if ord != "fro":
            raise ValueError("method='probes' estimates the Frobenius norm only; use ord='fro'")
        y, vjp_fn = _vjp_at(f, emb, position)
        apply = jax.jit(jax.vmap(lambda c: vjp_fn(c)[0]))
        total = np.zeros(jnp.asarray(emb).shape[0])
        for s, sub in enumerate(range(0, probes, chunk)):
            m = min(chunk, probes - sub)
            u = jax.random.normal(jax.random.fold_in(key, s), (m, y.shape[-1]), dtype=y.dtype)
            g = np.asarray(apply(u), dtype=np.float64)  # (m, seq, width_in)
            total += np.sum(g**2, axis=(0, 2))
        return np.sqrt(total / probes)
    raise ValueError(f"method={method!r}: choose 'exact' or 'probes'")


def jacobian_norms_fd(f: Callable, emb: np.ndarray, *, position: int = -1, eps: float = 1e-3) -> np.ndarray:
    """Central finite-difference Frobenius norms (float64 NumPy inputs): a slow reference for tests only."""
    emb = np.asarray(emb, dtype=np.float64)
    seq, width = emb.shape
    norms = np.zeros(seq)
    for i in range(seq):
        sq = 0.0
        for c in range(width):
            plus, minus = emb.copy(), emb.copy()
            plus[i, c] += eps
            minus[i, c] -= eps
            col = (
                np.asarray(f(plus), dtype=np.float64)[position] - np.asarray(f(minus), dtype=np.float64)[position]
            ) / (2 * eps)
            sq += float(np.sum(col**2))
        norms[i] = np.sqrt(sq)
    return norms


def model_jacobian_norms(model, emb, *, position: int = -1) -> np.ndarray:
    """Exact per-position Frobenius norms ‖∂y_position/∂v_i‖ for a :class:`replicate.glasses.transformer.Model`.

    Same quantity as :func:`jacobian_norms` (tested), but jitted once per (configuration, position)
    with the parameters as an argument, so many seeds of one architecture share one compilation.
    """
    emb = jnp.asarray(emb, jnp.float32)
    if emb.ndim != 2 or emb.shape[1] != model.cfg.width:
        raise ValueError(f"embeddings must be (seq, {model.cfg.width}), got {emb.shape}")
    if not -emb.shape[0] <= position < emb.shape[0]:
        raise ValueError(f"position {position} is outside a sequence of length {emb.shape[0]}")
    return np.asarray(_compiled_model_norms(model.cfg, position)(model.params, emb), dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _compiled_model_norms(cfg, position: int):
    from replicate.glasses.transformer import Transformer

    module = Transformer(cfg)

    def norms(params, e):
        y = lambda x: module.apply(params, None, embeddings=x, return_attentions=False).final[position]  # noqa: E731
        jac = jax.jacrev(y)(e).astype(jnp.float32)  # (width_out, seq, width_in)
        return jnp.sqrt(jnp.sum(jac**2, axis=(0, 2)))

    return jax.jit(norms)


def head_mean_attention(attentions) -> list[np.ndarray]:
    """(L, H, n, n) attention weights -> L row-stochastic (n, n) matrices, averaged over heads.

    The paper's bound is single-head; with H heads y depends on the heads' mixture, and the head
    mean is the row-stochastic matrix that plays Λ^(l)'s role in the layer's linearised value path
    (up to the per-head W_v W_o factors, absorbed into C).
    """
    a = np.asarray(attentions, dtype=np.float64)
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attentions must be (layers, heads, n, n), got {a.shape}")
    return list(a.mean(axis=1))


def compare_with_bound(measured: np.ndarray, attentions, *, position: int = -1, beta: float = 1.0) -> dict:
    """Measured sensitivities beside Thm 5.1's bound shape and the causal path count.

    Returns the bound [Π_l (Λ̄^(l)/β + I)]_{n,:} (C = 1), the path counts C(n−i+L−1, L−1) (for the
    output at the last position), the empirical constant C_emp = max_i measured_i / bound_i (the
    smallest C for which the bound holds at every position), the Spearman rank correlation between
    measured and bound over input positions, and first/last ratios of each.
    """
    from scipy.stats import spearmanr

    from replicate.glasses import theory

    lams = head_mean_attention(attentions)
    measured = np.asarray(measured, dtype=np.float64)
    n, layers = lams[0].shape[0], len(lams)
    if measured.shape != (n,):
        raise ValueError(f"measured has shape {measured.shape}; expected ({n},) to match the attention")
    bound = theory.oversquashing_bound(lams, position=position, betas=beta)
    pos = n + position if position < 0 else position
    paths = np.array(
        [theory.causal_path_count(pos + 1, i + 1, layers) if i <= pos else 0 for i in range(n)], dtype=np.float64
    )
    valid = slice(0, pos + 1)
    rho = spearmanr(measured[valid], bound[valid]).statistic if pos >= 2 else float("nan")
    return {
        "bound": bound,
        "paths": paths,
        "c_emp": float(np.max(measured[valid] / bound[valid])),
        "spearman": float(rho),
        "first_last_measured": float(measured[0] / measured[pos]),
        "first_last_bound": float(bound[0] / bound[pos]),
        "first_last_paths": float(paths[0] / paths[pos]),
    }


def normalised_profile(norms: np.ndarray) -> np.ndarray:
    """Sensitivities divided by their sum (a distribution over input positions), for shape comparisons."""
    norms = np.asarray(norms, dtype=np.float64)
    total = norms.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("sensitivities must be finite with a positive sum")
    return norms / total
