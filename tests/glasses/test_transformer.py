"""The Flax decoder against a plain NumPy transcription, invariants of attention, Prop. B.9, and the
App. C.3/C.4 synthetic layer against NumPy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import rng, tolerances
from replicate.glasses import transformer

U = tolerances.unit_roundoff(np.float32)
ULPS = tolerances.EXP_ULPS  # accuracy assumed of float32 exp, pow, sin and cos, in units of U

# ----------------------------------------------------------------------------- NumPy reference


def np_norm(x, kind, scale, eps=1e-6):
    if kind == "none":
        return x
    if kind == "layer":
        x = x - x.mean(-1, keepdims=True)
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * scale


def np_sinusoidal(n, d, base=10000.0):
    p = np.zeros((n, d))
    for t in range(n):
        for i in range(d // 2):
            p[t, 2 * i] = math.sin(t / base ** (2 * i / d))
            p[t, 2 * i + 1] = math.cos(t / base ** (2 * i / d))
    return p


def np_rope(x, base=10000.0):  # x: (n, d); rotate pairs (j, j + d/2) by t * base^(-2j/d)
    n, d = x.shape
    out = x.copy()
    for t in range(n):
        for j in range(d // 2):
            th = t * base ** (-2 * j / d)
            a, b = x[t, j], x[t, j + d // 2]
            out[t, j], out[t, j + d // 2] = a * math.cos(th) - b * math.sin(th), a * math.sin(th) + b * math.cos(th)
    return out


def np_gelu(x):  # tanh approximation, flax.linen.gelu's default
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def np_forward(params, cfg, x):
    """Plain NumPy, loops over heads, float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)["params"]
    n = x.shape[0]
    if cfg.pe == "sinusoidal" and cfg.sinusoidal_mode == "input":
        x = x + np_sinusoidal(n, cfg.width)
    states, attns = [x], []
    for layer in range(cfg.layers):
        b = p[f"block_{layer}"]
        h = np_norm(x, cfg.norm, b["norm_1"]["scale"] if cfg.norm != "none" else None)
        q, k, v = h @ b["q"]["kernel"], h @ b["k"]["kernel"], h @ b["v"]["kernel"]
        heads_out, heads_w = [], []
        for hh in range(cfg.heads):
            sl = slice(hh * cfg.head_dim, (hh + 1) * cfg.head_dim)
            qh, kh, vh = q[:, sl], k[:, sl], v[:, sl]
            if cfg.pe == "rope":
                qh, kh = np_rope(qh), np_rope(kh)
            if cfg.pe == "sinusoidal" and cfg.sinusoidal_mode == "attention":
                qh, kh = qh + np_sinusoidal(n, cfg.head_dim), kh + np_sinusoidal(n, cfg.head_dim)
            s = qh @ kh.T / math.sqrt(cfg.head_dim)
            w = np.zeros((n, n))
            for i in range(n):
                allowed = [
                    j
                    for j in range(n)
                    if (not cfg.causal or j <= i) and (cfg.window is None or abs(i - j) < cfg.window)
                ]
                logits = np.array(
                    [
                        s[i, j] - (2 ** (-8 * (hh + 1) / cfg.heads) * abs(i - j) if cfg.pe == "alibi" else 0)
                        for j in allowed
                    ]
                )
                e = np.exp(logits - logits.max())
                w[i, allowed] = e / e.sum()
            heads_w.append(w)
            heads_out.append(w @ vh)
        x = x + np.concatenate(heads_out, axis=1) @ b["o"]["kernel"]
        if cfg.mlp_ratio:
            h = np_norm(x, cfg.norm, b["norm_2"]["scale"] if cfg.norm != "none" else None)
            x = x + np_gelu(h @ b["up"]["kernel"]) @ b["down"]["kernel"]
        states.append(x)
        attns.append(np.stack(heads_w))
    fs = p["final_norm"]["scale"] if (cfg.final_norm and cfg.norm != "none") else None
    y = np_norm(x, cfg.norm if cfg.final_norm else "none", fs)
    return np.stack(states), np.stack(attns), y


CASES = [
    dict(pe="none"),
    dict(pe="sinusoidal"),
    dict(pe="sinusoidal", sinusoidal_mode="input"),
    dict(pe="rope"),
    dict(pe="alibi", heads=2),
    dict(pe="rope", norm="rms", heads=2, layers=2),
    dict(pe="none", causal=False, layers=2),
    dict(pe="rope", window=3, layers=2),
    dict(pe="alibi", norm="none", mlp_ratio=0, final_norm=False),
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_forward_matches_numpy(kw):
    cfg = transformer.TransformerConfig(width=8, **{"layers": 1, "heads": 1, **kw})
    model = transformer.Model.init(cfg, rng.key(0))
    x = np.random.default_rng(1).normal(size=(7, 8))
    out = model.run(embeddings=x.astype(np.float32))
    states, attns, y = np_forward(model.params, cfg, x)
    np.testing.assert_allclose(out.hidden_states, states, rtol=2e-4, atol=2e-5)
    # Softmax weights carry a relative error (no cancellation): |dw_j| <= w_j (|ds_j| + max_k |ds_k| + (2 ULPS
    # + n + 2) u) for score errors ds, so no atol is needed (masked weights are exact zeros on both sides). The
    # scores' error, from the float32 input cast, norms, projections (width 8), RoPE and a first layer feeding
    # the second, is ~1e-6 to first order; rtol 2e-4 allows 100 times that (a full-model forward: no tighter
    # bound without transcribing the whole model's rounding).
    np.testing.assert_allclose(out.attentions, attns, rtol=2e-4, atol=0)
    np.testing.assert_allclose(out.final, y, rtol=2e-4, atol=2e-5)
    assert out.hidden_states.shape == (cfg.layers + 1, 7, 8) and out.attentions.shape == (cfg.layers, cfg.heads, 7, 7)


@pytest.mark.parametrize("pe", transformer.PE_TYPES)
def test_attention_invariants(pe):
    cfg = transformer.TransformerConfig(width=16, heads=2, layers=2, pe=pe, window=5)
    out = transformer.Model.init(cfg, rng.key(1)).run(
        embeddings=np.random.default_rng(0).normal(size=(12, 16)).astype(np.float32)
    )
    a = np.asarray(out.attentions)
    # Rows are distributions: softmax divides n computed exps by their float32 sum (gamma_{n-1} from that sum,
    # u from each division) and the row sum here adds gamma_{n-1} more, whatever the order: |sum - 1| <= 2 gamma_n,
    # n the visible keys of the row (at most the window of 5).
    visible = np.minimum(np.arange(12) + 1, 5)
    tolerances.assert_within(a.sum(-1), 1.0, 2 * tolerances.gamma(visible), "attention row sums")
    assert np.all(a >= 0)
    i, j = np.indices((12, 12))
    assert np.all(a[..., j > i] == 0)  # causal mask: exact zeros
    assert np.all(a[..., i - j >= 5] == 0)  # sliding window of 5
    assert np.all(a[..., (j <= i) & (i - j < 5)] > 0)


def test_tokens_and_embeddings_paths_agree_and_logits():
    cfg = transformer.TransformerConfig(width=16, heads=2, layers=2, vocab_size=5, pe="rope")
    model = transformer.Model.init(cfg, rng.key(2))
    toks = np.array([1, 2, 3, 0, 4, 4], np.int32)
    logits, hs, at = model.forward(toks)
    logits2, hs2, at2 = model.forward_from_embeddings(model.embed(toks))
    np.testing.assert_array_equal(hs, hs2)
    np.testing.assert_array_equal(logits, logits2)
    assert logits.shape == (6, 5)
    table = np.asarray(model.params["params"]["embedding"]["embedding"])
    np.testing.assert_allclose(logits, np.asarray(model.run(toks).final) @ table.T, rtol=1e-5, atol=1e-5)


def test_prop_b9_no_pe_no_mask_cannot_count():
    """Prop. B.9: without PE and causal mask, '10' and '1100' give identical representations."""
    cfg = transformer.TransformerConfig(width=16, heads=2, layers=3, vocab_size=2, pe="none", causal=False)
    model = transformer.Model.init(cfg, rng.key(3))
    a = model.run(np.array([1, 0], np.int32))
    b = model.run(np.array([1, 1, 0, 0], np.int32))
    for layer in range(cfg.layers + 1):
        np.testing.assert_allclose(a.hidden_states[layer, 0], b.hidden_states[layer, 0], atol=1e-5)  # the '1's
        np.testing.assert_allclose(a.hidden_states[layer, 1], b.hidden_states[layer, 3], atol=1e-5)  # the '0's
    np.testing.assert_allclose(a.final[-1], b.final[-1], atol=1e-5)
    # a causal mask (or a PE) breaks the symmetry
    causal = transformer.Model(transformer.TransformerConfig(**{**cfg.__dict__, "causal": True}), model.params)
    assert (
        np.abs(
            np.asarray(
                causal.run(np.array([1, 0], np.int32)).final[-1]
                - causal.run(np.array([1, 1, 0, 0], np.int32)).final[-1]
            )
        ).max()
        > 1e-3
    )
    rope = transformer.Model(transformer.TransformerConfig(**{**cfg.__dict__, "pe": "rope"}), model.params)
    assert (
        np.abs(
            np.asarray(
                rope.run(np.array([1, 0], np.int32)).final[-1] - rope.run(np.array([1, 1, 0, 0], np.int32)).final[-1]
            )
        ).max()
        > 1e-3
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_runs_close_to_float32(dtype):
    base = transformer.TransformerConfig(width=32, heads=2, layers=2, pe="rope")
    m32 = transformer.Model.init(base, rng.key(4))
    mlo = transformer.Model(transformer.TransformerConfig(**{**base.__dict__, "dtype": dtype}), m32.params)
    x = np.random.default_rng(0).normal(size=(10, 32)).astype(np.float32)
    lo, hi = mlo.run(embeddings=x), m32.run(embeddings=x)
    assert lo.final.dtype == jnp.dtype(dtype) and lo.hidden_states.dtype == jnp.dtype(dtype)
    err = np.abs(np.asarray(lo.final, np.float32) - np.asarray(hi.final)).max()
    assert 0 < err < 0.1  # different (fewer bits), but close


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        transformer.TransformerConfig(width=10, heads=3)
    with pytest.raises(ValueError, match="pe="):
        transformer.TransformerConfig(pe="learned")
    with pytest.raises(ValueError, match="even head dimension"):
        transformer.TransformerConfig(width=6, heads=2, pe="rope")
    with pytest.raises(ValueError, match="vocab"):
        transformer.Model.init(transformer.TransformerConfig(width=8), rng.key(0)).run(np.array([0, 1], np.int32))


# ----------------------------------------------------------------------------- synthetic App. C.3/C.4


def np_synthetic_last(q, k, v, pe):
    n, d = q.shape
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    if pe == "sinusoidal":
        q, k = q + np_sinusoidal(n, d), k + np_sinusoidal(n, d)
    if pe == "rope":
        q, k = np_rope(q), np_rope(k)
    s = k @ q[-1] / math.sqrt(d)
    if pe == "alibi":
        s = s - 2.0**-8 * (n - 1 - np.arange(n))
    w = np.exp(s - s.max())
    w /= w.sum()
    return w @ v + v[-1], w


def np_pe_bound(x, positions, pe, base=10000.0):
    """``x`` (n, d) with the PE ``pe`` of the synthetic layer applied exactly (float64, as np_rope and
    np_sinusoidal), and a bound on how far transformer's float32 evaluation of it may be from that.

    Angles: pow (ULPS u) then one product or division (u), a relative error; sin/cos add ULPS u max(1, |angle|)
    (range reduction loses accuracy in proportion to the argument). RoPE then rounds two products and a sum of
    pairs (2u (|x1| + |x2|)), the sinusoidal PE one sum (u |x + p|)."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    t = np.asarray(positions, np.float64)[:, None]
    if pe == "rope":
        th = t * base ** (-2 * np.arange(d // 2) / d)
        d_trig = (ULPS + 1) * U * th + ULPS * U * np.maximum(1, th)
        x1, x2 = x[:, : d // 2], x[:, d // 2 :]
        out = np.concatenate([x1 * np.cos(th) - x2 * np.sin(th), x1 * np.sin(th) + x2 * np.cos(th)], 1)
        err = (np.abs(x1) + np.abs(x2)) * (d_trig + 2 * U)
        return out, np.concatenate([err, err], 1)
    if pe == "sinusoidal":
        th = t / base ** (2 * np.arange(d // 2) / d)
        d_trig = (ULPS + 1) * U * th + ULPS * U * np.maximum(1, th)
        out = x + np.stack([np.sin(th), np.cos(th)], -1).reshape(n, d)
        return out, np.repeat(d_trig, 2, axis=1) + U * np.abs(out)
    return x, np.zeros_like(x)


def synthetic_bounds(q_n, k, v, q_pos, pe):
    """The synthetic layer's output z = sum_j w_j v_j + v_n and weights w (transformer._last_output: query
    ``q_n`` at ``q_pos`` over the keys and values ``k``, ``v`` at positions 0..len-1, all visible, v_n their
    last value), exactly (float64), and bounds on how far two float32 evaluations may differ, element-wise:
    :func:`replicate.tolerances.attention_bounds` with the PE's rounding (:func:`np_pe_bound`) as extra score
    error, plus the rounding of the residual sum. Returns ``(z, w, z_bound, w_bound)``."""
    n, d = k.shape
    v = np.asarray(v, np.float64)
    qe, dq = np_pe_bound(np.asarray(q_n)[None], [q_pos], pe)
    ke, dk = np_pe_bound(k, np.arange(n), pe)
    scale = 1 / math.sqrt(d)
    score_err = scale * (dq @ np.abs(ke).T + np.abs(qe) @ dk.T)  # (1, n)
    if pe == "alibi":  # the bias as one more dimension, scale q.k = s - m |i - j|; m = 2^-8 comes from pow
        bias = 2.0**-8 * (q_pos - np.arange(n))
        qe, ke = np.concatenate([qe, np.ones((1, 1))], 1), np.concatenate([ke, -bias[:, None] / scale], 1)
        score_err = score_err + ULPS * U * bias
    out_b, w_b = tolerances.attention_bounds(
        qe[None], ke[None], v[None], np.ones((1, n), bool), scale, np.float32, score_err=score_err[None]
    )
    s = scale * (ke @ qe[0])
    w = np.exp(s - s.max())
    w /= w.sum()
    z = w @ v + v[-1]
    return z, w, out_b[0, 0] + 2 * U * np.abs(z), w_b[0, 0]


@pytest.mark.parametrize("pe", transformer.PE_TYPES)
@pytest.mark.parametrize("normalise", ["none", "layer"])
def test_synthetic_layer_matches_numpy(pe, normalise):
    cfg = transformer.SyntheticConfig(pe=pe, std=1.0 if normalise == "layer" else None, normalise=normalise)
    q, k, v = transformer.synthetic_qkv(rng.key(5), 40, cfg)
    if normalise == "layer":
        np.testing.assert_allclose(np.asarray(q).mean(-1), 0, atol=1e-5)
        np.testing.assert_allclose(np.asarray(q).std(-1), 1, atol=1e-4)
    else:
        assert 0.8 < float(jnp.linalg.norm(q, axis=-1).mean()) < 1.2  # N(0, 1/d): unit norm on average
    z, w = transformer.synthetic_last_output(q, k, v, cfg)
    z_ref, w_ref = np_synthetic_last(q, k, v, pe)
    # float32 (XLA) against float64 (NumPy): within the rounding bounds of the PE, scores, softmax and sums
    z_exact, w_exact, z_b, w_b = synthetic_bounds(q[-1], k, v, 39, pe)
    np.testing.assert_allclose(z_exact, z_ref, rtol=1e-12)  # the bounds' own transcription is the reference's
    tolerances.assert_within(w, w_ref, w_b, "synthetic attention weights")
    tolerances.assert_within(z, z_ref, z_b, "synthetic layer output")
    # ... and tight enough to fail a layer that drops the first token
    with pytest.raises(AssertionError, match="exceed their rounding bound"):
        tolerances.assert_within(z, np_synthetic_last(q[1:], k[1:], v[1:], pe)[0], z_b, "synthetic layer output")


def test_synthetic_collapse_decreases_and_bf16_identity():
    cfg = transformer.SyntheticConfig(pe="none", std=1.0, normalise="layer")
    a, b = transformer.collapse_synthetic_curve(rng.seed_keys(range(4)), [10, 100, 1000], cfg)
    d = np.abs(np.asarray(a) - np.asarray(b)).sum(-1).mean(0)
    assert d[0] > d[1] > d[2] > 0
    assert d[1] / d[2] > 5  # NoPE: Θ(1/n) (research notes' derivation)
    one = transformer.collapse_synthetic(rng.key(0), 3, cfg)
    assert not one["identical"] and one["linf"] <= one["l2"] <= one["l1"]


def test_collapse_token_pairs():
    a, b = transformer.collapse_token_pair("extra_one", 4)
    assert a.tolist() == [1, 1, 1, 0] and b.tolist() == [1, 1, 1, 1, 0]
    a, b = transformer.collapse_token_pair("repeat_last", 4)
    assert a.tolist() == [1, 1, 1, 0] and b.tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError):
        transformer.collapse_token_pair("other", 3)


def test_padded_batch_equals_single_runs():
    cfg = transformer.TransformerConfig(width=8, heads=2, layers=2, vocab_size=2, pe="rope", mlp_ratio=1)
    model = transformer.Model.init(cfg, rng.key(6))
    ya, yb = transformer.token_final_pairs(model, "extra_one", [3, 7])
    for t, n in enumerate([3, 7]):
        a, b = transformer.collapse_token_pair("extra_one", n)
        np.testing.assert_allclose(ya[t], model.run(a).final[-1], atol=1e-5)
        np.testing.assert_allclose(yb[t], model.run(b).final[-1], atol=1e-5)
    keys = rng.seed_keys([0, 1])
    za, zb = transformer.collapse_synthetic_outputs(keys, 9, transformer.SyntheticConfig(pe="alibi"))
    one = transformer.collapse_synthetic(rng.key(1), 9, transformer.SyntheticConfig(pe="alibi"))
    assert one["l1"] == pytest.approx(float(np.abs(np.asarray(za[1]) - np.asarray(zb[1])).sum()), rel=1e-6)


@pytest.mark.parametrize("pe", ["sinusoidal", "rope", "alibi"])  # the position-dependent paths
def test_synthetic_curve_equals_prefix_runs(pe):
    cfg = transformer.SyntheticConfig(pe=pe)
    keys = rng.seed_keys([0, 1])
    a, b = transformer.collapse_synthetic_curve(keys, [3, 8], cfg)
    q, k, v = transformer.synthetic_qkv(keys[1], 8, cfg)  # the second seed: checks the vmap over keys too
    for t, n in enumerate([3, 8]):
        za, _ = transformer.synthetic_last_output(q[:n], k[:n], v[:n], cfg)
        zb, _ = transformer.synthetic_last_output(*(transformer.repeat_last(x[:n]) for x in (q, k, v)), cfg)
        # The curve attends over all max(ns) (+1) keys with the later ones masked, the prefix run over n (+1):
        # other reduction lengths, so the outputs agree to the rounding bounds of two float32 evaluations.
        _, _, za_b, _ = synthetic_bounds(q[n - 1], k[:n], v[:n], n - 1, pe)
        _, _, zb_b, _ = synthetic_bounds(q[n - 1], *(np.asarray(transformer.repeat_last(x[:n])) for x in (k, v)), n, pe)
        tolerances.assert_within(a[1, t], za, za_b, f"curve vs prefix run, n={n}")
        tolerances.assert_within(b[1, t], zb, zb_b, f"curve vs prefix run (last token repeated), n={n}")


def test_rope_at_positions_matches_numpy():
    x = np.asarray(jax.random.normal(rng.key(9), (2, 7, 8)), np.float32)  # (heads, seq, d)
    out = np.asarray(transformer.apply_rope_at_positions(jnp.asarray(x), jnp.arange(7), 100.0))
    for h in range(2):
        np.testing.assert_allclose(out[h], np_rope(x[h].astype(np.float64), base=100.0), atol=1e-5)


def test_pe_label():
    assert transformer.pe_label("none") == "NoPE" and transformer.pe_label("rope") == "rope"
    assert transformer.pe_label("sinusoidal", "input") == "sinusoidal (added to input)"


def test_collapse_synthetic_with_rounding_matches_direct_runs():
    cfg = transformer.SyntheticConfig(pe="rope", std=1.0, normalise="layer")
    keys = rng.seed_keys([0, 1])
    diffs, noise = transformer.collapse_synthetic_with_rounding(keys, [4, 9], cfg)
    assert diffs.shape == (2, 2, 3) and noise.shape == (2, 2)
    for s in range(2):
        for t, n in enumerate([4, 9]):
            za, zb = (np.asarray(z[s], np.float64) for z in transformer.collapse_synthetic_outputs(keys, n, cfg))
            d = za - zb
            # The curve's outputs (keys past n masked) and these (n keys) agree to the rounding bounds of two
            # float32 evaluations, so d does to dd = their sum, and each norm of d to the same norm of dd.
            q, k, v = (np.asarray(x) for x in transformer.synthetic_qkv(keys[s], n, cfg))
            _, _, za_b, _ = synthetic_bounds(q[-1], k, v, n - 1, cfg.pe)
            _, _, zb_b, _ = synthetic_bounds(q[-1], np.concatenate([k, k[-1:]]), np.concatenate([v, v[-1:]]), n, cfg.pe)
            dd = za_b + zb_b
            norms = np.array([np.abs(d).sum(), np.linalg.norm(d), np.abs(d).max()])
            tolerances.assert_within(diffs[s, t], norms, [dd.sum(), np.linalg.norm(dd), dd.max()], "norms of z - z*")
            cfg16 = transformer.SyntheticConfig(pe="rope", std=1.0, normalise="layer", dtype="bfloat16")
            a16, b16 = (
                np.asarray(z[s].astype(jnp.float32), np.float64)
                for z in transformer.collapse_synthetic_outputs(keys, n, cfg16)
            )
            ref = max(np.abs(a16 - za).max(), np.abs(b16 - zb).max())
            np.testing.assert_allclose(noise[s, t], ref, rtol=0.05, atol=2e-3)
    assert np.all(noise > 0) and np.all(noise < 0.1)  # bf16 rounds outputs of size ~1 by ~2^-8
