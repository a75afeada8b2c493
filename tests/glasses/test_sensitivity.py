"""Per-position Jacobian norms against finite differences, jax.jacrev, closed forms and causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import rng, tolerances, verdicts
from replicate.glasses import sensitivity, theory, transformer


@pytest.fixture(scope="module")
def small():
    cfg = transformer.TransformerConfig(width=8, heads=2, layers=2, pe="rope", mlp_ratio=2)
    model = transformer.Model.init(cfg, rng.key(0))
    emb = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    return model, emb


def test_exact_norms_match_finite_differences(small):
    model, emb = small
    exact = sensitivity.jacobian_norms(model.final, emb)
    final = jax.jit(model.final)
    fd = sensitivity.jacobian_norms_fd(lambda e: np.asarray(final(jnp.asarray(e, jnp.float32))), emb, eps=1e-2)
    np.testing.assert_allclose(exact, fd, rtol=2e-2, atol=1e-4)
    assert np.all(exact > 0)


def test_block_matches_jacrev_and_spectral_norm(small):
    model, emb = small
    block = sensitivity.jacobian_block(model.final, emb, position=3, chunk=3)  # chunking across 8 outputs (3+3+2)
    ref = np.asarray(jax.jit(jax.jacrev(lambda e: model.final(e)[3]))(jnp.asarray(emb)))
    # Same VJPs, vmapped over 3 (or 2) basis cotangents instead of 8: XLA may sum each backward dot in another
    # order. First-order estimate (normwise: every cotangent on the way taken as large as the largest Jacobian
    # entry): each backward reduction of length n_i adds <= gamma_{n_i} max|J|, over the reductions of the
    # final norm and, per layer, norms, projections and MLP (width each, the MLP's hidden layer), attention over
    # the sequence (values and softmax) and the head dimension (scores); two evaluations: twice that.
    cfg = model.cfg
    n_path = cfg.width + cfg.layers * (7 * cfg.width + cfg.mlp_ratio * cfg.width + 2 * emb.shape[0] + cfg.head_dim)
    tol = 2 * tolerances.gamma(n_path) * np.abs(ref).max()
    tolerances.assert_within(block, ref, tol, "chunked Jacobian block")
    with pytest.raises(AssertionError, match="exceed their rounding bound"):  # rows assembled one chunk off
        tolerances.assert_within(np.roll(block, 3, axis=0), ref, tol, "chunked Jacobian block")
    spec = sensitivity.jacobian_norms(model.final, emb, position=3, ord="2")
    np.testing.assert_allclose(spec, [np.linalg.svd(ref[:, i, :], compute_uv=False)[0] for i in range(5)], rtol=1e-5)


def test_causality_gives_exact_zeros(small):
    model, emb = small
    norms = sensitivity.jacobian_norms(model.final, emb, position=2)
    assert np.all(norms[3:] == 0) and np.all(norms[:3] > 0)


def test_probe_estimate_is_close_to_exact(small):
    model, emb = small
    exact = sensitivity.jacobian_norms(model.final, emb)
    est = sensitivity.jacobian_norms(model.final, emb, method="probes", probes=2048, key=rng.key(1), chunk=512)
    np.testing.assert_allclose(est, exact, rtol=0.1)


def test_linear_closed_forms():
    a = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    f = lambda e: e @ a  # noqa: E731  position-wise: only i = n matters
    norms = sensitivity.jacobian_norms(f, np.ones((5, 4), np.float32))
    # Exact: the VJP of e @ a with a basis cotangent picks a's entries (products with 0 and 1, sums with
    # zeros), and both norms are taken in float64.
    np.testing.assert_allclose(norms, [0, 0, 0, 0, np.linalg.norm(a.astype(np.float64))], rtol=1e-12)
    # y = L v with L lower-triangular mixing: ∂y_n/∂v_i = L_{n,i} I_d, norm = |L_{n,i}| sqrt(d)
    lam = theory.uniform_causal_attention(5).astype(np.float32)
    g = lambda e: jnp.asarray(lam) @ e  # noqa: E731
    np.testing.assert_allclose(
        sensitivity.jacobian_norms(g, np.ones((5, 3), np.float32)), lam[-1] * np.sqrt(3), rtol=1e-6
    )


def test_frozen_attention_layer_obeys_the_bound():
    """Thm 5.1 with its assumption (ii), attention treated as constant: one attention-only layer,
    no norms, y = v + (Λ v W_v) W_o  =>  ∂y_n/∂v_i = δ_ni I + Λ_ni W_v W_o, so
    ‖∂y_n/∂v_i‖_2 <= max(1, ‖W_v W_o‖_2) · (Λ_ni + δ_ni) (the bound with β = 1)."""
    cfg = transformer.TransformerConfig(
        width=8, heads=1, layers=1, pe="rope", norm="none", mlp_ratio=0, final_norm=False
    )
    model = transformer.Model.init(cfg, rng.key(3))
    emb = jnp.asarray(np.random.default_rng(3).normal(size=(6, 8)).astype(np.float32))
    lam = np.asarray(model.run(embeddings=emb).attentions[0, 0], np.float64)
    p = model.params["params"]["block_0"]
    wv, wo = (np.asarray(p[n]["kernel"], np.float64) for n in ("v", "o"))
    frozen = lambda e: e + jnp.asarray(lam, jnp.float32) @ e @ jnp.asarray(wv @ wo, jnp.float32)  # noqa: E731
    measured = sensitivity.jacobian_norms(frozen, emb, ord="2")
    c = max(1.0, np.linalg.norm(wv @ wo, 2))
    bound = c * theory.oversquashing_bound([lam])
    assert np.all(measured <= bound + 1e-5)
    np.testing.assert_allclose(measured[:-1], lam[-1, :-1] * np.linalg.norm(wv @ wo, 2), rtol=1e-4)


def test_validation(small):
    model, emb = small
    with pytest.raises(ValueError, match="outside"):
        sensitivity.jacobian_norms(model.final, emb, position=9)
    with pytest.raises(ValueError, match="key"):
        sensitivity.jacobian_norms(model.final, emb, method="probes")
    with pytest.raises(ValueError, match="method"):
        sensitivity.jacobian_norms(model.final, emb, method="fd")
    with pytest.raises(ValueError, match=r"\(seq, width\)"):
        sensitivity.jacobian_norms(model.final, emb[0])
    np.testing.assert_allclose(sensitivity.normalised_profile([1.0, 3.0]), [0.25, 0.75])


def test_frozen_attention_model_jacobian_is_the_value_path():
    """With freeze_attention, the model's Jacobian is exactly Thm 5.1's linearisation:
    ∂y_n/∂v_i = δ_ni I + Λ_ni (W_v W_o)ᵀ for one attention-only layer without norms."""
    cfg = transformer.TransformerConfig(
        width=8, heads=1, layers=1, pe="alibi", norm="none", mlp_ratio=0, final_norm=False, freeze_attention=True
    )
    model = transformer.Model.init(cfg, rng.key(4))
    emb = jnp.asarray(np.random.default_rng(4).normal(size=(6, 8)).astype(np.float32))
    lam = np.asarray(model.run(embeddings=emb).attentions[0, 0], np.float64)
    p = model.params["params"]["block_0"]
    wvo = np.asarray(p["v"]["kernel"], np.float64) @ np.asarray(p["o"]["kernel"], np.float64)
    block = sensitivity.jacobian_block(model.final, emb)  # (out, seq, in)
    for i in range(6):
        np.testing.assert_allclose(block[:, i, :], (float(i == 5) * np.eye(8) + lam[5, i] * wvo).T, atol=1e-5)
    full = transformer.Model(transformer.TransformerConfig(**{**cfg.__dict__, "freeze_attention": False}), model.params)
    assert np.abs(sensitivity.jacobian_block(full.final, emb) - block).max() > 1e-4  # attention's own gradient is real
    np.testing.assert_array_equal(full.run(embeddings=emb).final, model.run(embeddings=emb).final)  # same forward


def test_compare_with_bound():
    lam = theory.uniform_causal_attention(5)
    attn = np.stack([lam, lam])[:, None]  # (L=2, H=1, 5, 5)
    measured = theory.oversquashing_bound([lam, lam]) * 3.0
    out = sensitivity.compare_with_bound(measured, attn)
    assert out["c_emp"] == pytest.approx(3.0) and out["spearman"] == pytest.approx(1.0)
    np.testing.assert_array_equal(out["paths"], [5, 4, 3, 2, 1])
    assert out["first_last_paths"] == 5.0
    with pytest.raises(ValueError, match="expected"):
        sensitivity.compare_with_bound(measured[:3], attn)


def test_model_jacobian_norms_matches_generic(small):
    model, emb = small
    np.testing.assert_allclose(
        sensitivity.model_jacobian_norms(model, emb), sensitivity.jacobian_norms(model.final, emb), rtol=1e-5
    )
    assert np.all(sensitivity.model_jacobian_norms(model, emb, position=2)[3:] == 0)  # causal
    gains = transformer.attention_branch_gains(model, model.run(embeddings=emb).hidden_states)
    assert gains.shape == (2,) and np.all(gains > 0)


# ----------------------------------------------------------------------------- notebook 22's verdict rules

REP, PART, NOT, INC = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED, verdicts.INCONCLUSIVE


def test_worst_over_depths_pairs_seeds_by_index():
    vals = {1: [0.5, 3.0], 2: [2.0, 1.5], 4: [1.8, 2.5]}
    assert sensitivity.worst_over_depths(vals, [2, 4]) == [1.8, 1.5]
    assert sensitivity.worst_over_depths(vals, [1, 2, 4], higher_is_better=False) == [2.0, 3.0]
    with pytest.raises(ValueError, match="same number of seeds"):
        sensitivity.worst_over_depths({1: [1.0], 2: [1.0, 2.0]}, [1, 2])
    with pytest.raises(ValueError, match="no values for depths"):
        sensitivity.worst_over_depths(vals, [8])


@pytest.mark.parametrize("values, label", [
    ({2: [2.0, 2.1, 1.9], 4: [2.5, 2.4, 2.6]}, REP),
    ({2: [1.5, 0.9, 1.2], 4: [2.0, 2.0, 2.0]}, PART),  # mean above 1, interval not
    ({2: [0.8, 0.9, 0.85], 4: [2.0, 2.0, 2.0]}, NOT),  # fails at one depth
    ({2: [2.0], 4: [2.0]}, INC),  # one seed: no interval
])
def test_position_row_reaches_every_outcome_and_ignores_one_layer(values, label):
    r = sensitivity.position_row("NoPE", {1: [0.1] * len(values[2]), **values}, "figures/f.png")
    assert r["verdict"] == label and verdicts.recompute(r) == label
    assert "NoPE" in r["claim"] and "L=1" not in r["ours"]  # one layer: one path per position, not judged


@pytest.mark.parametrize("values, label", [
    ({1: [0.95, 0.97, 0.96], 16: [0.7, 0.72, 0.68]}, REP),
    ({1: [0.95, 0.97, 0.96], 16: [0.9, 0.3, 0.6]}, PART),
    ({1: [0.95, 0.97, 0.96], 16: [-0.4, -0.3, -0.5]}, NOT),  # ALiBi-like: anti-correlated when deep
    ({1: [0.95], 16: [0.9]}, INC),
])
def test_attention_row_reaches_every_outcome(values, label):
    r = sensitivity.attention_row("ALiBi", values, "figures/f.png")
    assert r["verdict"] == label and verdicts.recompute(r) == label
    assert f"{sensitivity.SPEARMAN_MIN:g}" in r["rule"]


def test_growth_shares():
    share, gb = sensitivity.growth_shares({1: [0.01, 0.1], 8: [1.0, 1.0]}, {1: [0.01, 0.01], 8: [100.0, 0.001]})
    assert share[0] == pytest.approx(0.5) and np.isnan(share[1])  # bound shrinks for seed 1: no share
    assert gb == pytest.approx([4.0, -1.0])
    with pytest.raises(ValueError, match="same >= 2 depths"):
        sensitivity.growth_shares({1: [1.0]}, {1: [1.0]})


@pytest.mark.parametrize("measured, bound, label", [
    ({1: [0.03, 0.02, 0.04], 16: [3e3, 2e3, 4e3]}, {1: [0.02] * 3, 16: [4e4] * 3}, REP),  # most of the bound's growth
    ({1: [0.03, 0.02, 0.04], 16: [3e3, 1.0, 4e2]}, {1: [0.02] * 3, 16: [4e4] * 3}, PART),
    ({1: [0.03, 0.02, 0.04], 16: [0.16, 0.15, 0.17]}, {1: [0.02] * 3, 16: [4e4] * 3}, NOT),  # x5 against x1e6
    ({1: [0.03, 0.02, 0.04], 16: [0.16, 0.15, 0.17]}, {1: [0.02] * 3, 16: [0.01] * 3}, INC),  # bound does not grow
    ({1: [0.03], 16: [3e3]}, {1: [0.02], 16: [4e4]}, INC),  # one seed
])
def test_growth_row_reaches_every_outcome(measured, bound, label):
    r = sensitivity.growth_row("RoPE", measured, bound, 9.3e13, "figures/f.png")
    assert r["verdict"] == label and verdicts.recompute(r) == label
    assert r["controls"][0]["passed"] == (bound[16][0] > bound[1][0])


def test_propb8_distance_and_row():
    lam = theory.uniform_causal_attention(12)
    assert sensitivity.propb8_distance(lam, 0) == 1.0  # identity row vs e_1
    assert sensitivity.propb8_distance(lam, 256) < 1e-12
    assert sensitivity.propb8_distance(lam, 4) > sensitivity.propb8_distance(lam, 8) > 0  # approaches the limit
    cases = [([1e-9, 2e-9, 1e-9], 1e-12, REP), ([1e-4, 1.5e-3, 2e-4], 1e-12, PART), ([0.1, 0.2, 0.15], 1e-12, NOT),
             ([1e-9, 1e-9], 0.5, INC), ([1e-9], 1e-12, INC)]
    for measured, uniform, label in cases:
        r = sensitivity.propb8_row(measured, uniform, 256, "figures/f.png", what="NoPE, RoPE, ALiBi")
        assert r["verdict"] == label and verdicts.recompute(r) == label, (measured, uniform)
