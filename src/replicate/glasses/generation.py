"""Greedy decoding for Gemma 3 (:mod:`replicate.glasses.gemma`) with a key/value cache, and text prompting.

:func:`greedy_decode` is the jitted core: prefill the (bucket-padded) prompt, keep every layer's keys
and values in a cache of static size, then one token at a time, attending over the cache with the
same masks (causal, 512-key sliding window on local layers) and RoPE tables as the forward pass.
:func:`generate_ids` validates and pads; :func:`generate` goes from a text prompt to text (what
:func:`replicate.glasses.tasks.evaluate` calls, e.g. ``functools.partial(generation.generate, model)``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from replicate.glasses import gemma, gemma_weights


@partial(jax.jit, static_argnames=("cfg", "cache_len", "max_new_tokens"))
def greedy_decode(params, prompt, length, *, cfg: gemma_weights.Gemma3Config, cache_len: int, max_new_tokens: int):
    """Greedy decoding with a KV cache of static size ``cache_len``.

    ``prompt`` (P,) int32 padded to a bucket; ``length`` real tokens. Returns (max_new_tokens,) ids.
    """
    dtype = params["embed"].dtype
    scale = jnp.asarray(np.sqrt(cfg.width), dtype)
    p = prompt.shape[0]
    flags = gemma.global_layer_flags(cfg)

    # Prefill: run the prompt, keep each layer's keys/values.
    pos = jnp.arange(p)
    causal, local, rl, rg = gemma.masks_and_rope(cfg, pos, pos, dtype)

    def prefill_body(h, xs):
        lp, is_global = xs
        mask = jnp.where(is_global, causal, local)
        cos = jnp.where(is_global, rg[0], rl[0])
        sin = jnp.where(is_global, rg[1], rl[1])
        kv = {}

        def attn_fn(x):
            q, k, v = gemma.project_qkv(cfg, lp, x, cos, sin)
            kv["k"], kv["v"] = k, v
            return gemma.grouped_query_attention(cfg, q, k, v, mask)

        h, _ = gemma.decoder_block(cfg, lp, h, attn_fn)
        return h, (kv["k"], kv["v"])

    h, (k_pre, v_pre) = jax.lax.scan(prefill_body, params["embed"][prompt] * scale, (params["layers"], flags))
    pad = ((0, 0), (0, cache_len - p), (0, 0), (0, 0))
    k_cache, v_cache = jnp.pad(k_pre, pad), jnp.pad(v_pre, pad)  # (L, cache_len, Hkv, Dh)
    y = gemma.rms_norm(jax.lax.dynamic_index_in_dim(h, length - 1, keepdims=False), params["final_norm"], cfg.rms_eps)
    first = jnp.argmax((y @ params["embed"].T).astype(jnp.float32)).astype(jnp.int32)

    k_pos = jnp.arange(cache_len)

    def step(carry, _):
        tok, t, k_cache, v_cache = carry
        q_pos = t[None]
        causal1, local1, rl1, rg1 = gemma.masks_and_rope(cfg, q_pos, k_pos, dtype)

        def layer_body(h, xs):
            lp, is_global, kc, vc = xs
            mask = jnp.where(is_global, causal1, local1)
            cos = jnp.where(is_global, rg1[0], rl1[0])
            sin = jnp.where(is_global, rg1[1], rl1[1])
            new = {}

            def attn_fn(x):
                q, k, v = gemma.project_qkv(cfg, lp, x, cos, sin)
                kc2 = jax.lax.dynamic_update_slice(kc, k, (t, 0, 0))
                vc2 = jax.lax.dynamic_update_slice(vc, v, (t, 0, 0))
                new["k"], new["v"] = kc2, vc2
                return gemma.grouped_query_attention(cfg, q, kc2, vc2, mask)

            h, _ = gemma.decoder_block(cfg, lp, h, attn_fn)
            return h, (new["k"], new["v"])

        h = params["embed"][tok][None] * scale
        h, (k_cache, v_cache) = jax.lax.scan(layer_body, h, (params["layers"], flags, k_cache, v_cache))
        y = gemma.rms_norm(h[0], params["final_norm"], cfg.rms_eps)
        nxt = jnp.argmax((y @ params["embed"].T).astype(jnp.float32)).astype(jnp.int32)
        return (nxt, t + 1, k_cache, v_cache), tok

    _, toks = jax.lax.scan(step, (first, length.astype(jnp.int32), k_cache, v_cache), None, length=max_new_tokens)
    return toks


def generate_ids(model: gemma.Gemma3, token_ids, max_new_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
    """Greedy continuation ids of ``token_ids`` (KV cache; compiled per (prompt bucket, max_new_tokens))."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    cfg = model.config
    ids = model.check_ids(token_ids)
    n = ids.size
    p = gemma.bucket_length(n)
    cache_len = gemma.bucket_length(p + max_new_tokens)
    if cache_len > cfg.max_positions:
        raise ValueError("prompt + max_new_tokens exceeds the model's context")
    prompt = np.full(p, cfg.pad_id, np.int32)
    prompt[:n] = ids
    toks = np.asarray(
        greedy_decode(
            model.params, jnp.asarray(prompt), jnp.int32(n), cfg=cfg, cache_len=cache_len, max_new_tokens=max_new_tokens
        )
    ).tolist()
    if stop_at_eos and cfg.eos_id in toks:
        toks = toks[: toks.index(cfg.eos_id)]
    return toks


def generate(model: gemma.Gemma3, prompt: str, max_new_tokens: int = 32) -> str:
    """Greedy continuation of the text ``prompt`` (BOS added), decoded to text."""
    return model.decode(generate_ids(model, model.tokenize(prompt), max_new_tokens))
