"""Greedy decoding with the KV cache (replicate.glasses.generation) against our uncached forward and
transformers' ``generate`` on the same GGUF weights."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from replicate.glasses import gemma, generation

pytestmark = [pytest.mark.lm, pytest.mark.slow]
torch = pytest.importorskip("torch")


def test_generate_kv_cache_matches_forward_and_transformers(gemma_model, gemma_reference):
    model = gemma_model
    reference = gemma_reference
    prompt = "The capital of France is"
    ids = model.tokenize(prompt)
    new = generation.generate_ids(model, ids, 6, stop_at_eos=False)
    # Our uncached forward, one token at a time.
    seq = list(ids)
    for _ in range(6):
        seq.append(int(np.asarray(model.forward(seq, attentions=False, all_logits=False).logits).argmax()))
    assert new == seq[len(ids) :]
    with torch.no_grad():
        ref = reference.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)
    assert new == ref[0, len(ids) :].tolist()
    assert isinstance(generation.generate(model, prompt, 4), str)


def test_generate_past_sliding_window(gemma_model):
    model = gemma_model
    # The cached local layers must drop keys more than `sliding_window` back. Checked cheaply with a
    # copy of the model whose window is 8 tokens (same weights): KV-cache decoding must equal the
    # uncached forward (whose window handling the transformers comparison above covers at 512).
    small = gemma.Gemma3(
        dataclasses.replace(model.config, sliding_window=8), model.params, model.tokenizer, model.dtype
    )
    ids = small.tokenize("1 2 3 4 5 6 7 8 9 10 11")
    new = generation.generate_ids(small, ids, 6, stop_at_eos=False)
    seq = list(ids)
    for _ in range(6):
        seq.append(int(np.asarray(small.forward(seq, attentions=False, all_logits=False).logits).argmax()))
    assert new == seq[len(ids) :]
    assert small.forward(ids, attentions=False, all_logits=False).logits.shape == (model.config.vocab_size,)
    # and the window matters: the full model's attention differs
    assert not np.allclose(
        np.asarray(small.forward(ids).hidden_states[-1]), np.asarray(model.forward(ids).hidden_states[-1])
    )


def test_bfloat16_runs_and_agrees_roughly():
    bf = gemma.load(dtype="bfloat16")
    ids = bf.tokenize("The capital of France is")
    out = bf.forward(ids, attentions=False)
    assert out.logits.dtype == jnp.bfloat16 and out.hidden_states.dtype == jnp.bfloat16
    assert generation.generate_ids(bf, ids, 3, stop_at_eos=False)[:1] == [
        int(np.asarray(out.logits[-1]).astype(np.float32).argmax())
    ]
