"""Gemma 3 (270M) in JAX: the forward pass and the model object.

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
  sliding window of 512 keys (key j is visible from query i iff ``i - 512 < j <= i``). The local
  layers compute only that band (:func:`banded_attention`: query blocks of 128 meet only the key
  blocks their window intersects), the global layers every causal score;
* GeGLU feed-forward: ``down(gelu_tanh(gate(x)) * up(x))``.

The weights, configuration and tokenizer come from :mod:`replicate.glasses.gemma_weights`; greedy
decoding with a KV cache is :mod:`replicate.glasses.generation`; the collapse probes are
:mod:`replicate.glasses.collapse`.

Usage::

    from replicate.glasses import gemma, generation
    model = gemma.load()                         # float32; load(dtype="bfloat16") for bf16 inference
    ids = model.tokenize("Can you copy the following number? 111")   # starts with <bos> (id 2)
    logits, hidden_states, attentions = model.forward(ids)
    # logits (seq, vocab); hidden_states (layers + 1, seq, width): [0] = scaled input embeddings,
    # [l] = residual stream after block l, [layers] = final RMS-normed representation (what the
    # head reads: the paper's y_n = norm_3(v_n^(L))); attentions (layers, heads, seq, seq).
    text = generation.generate(model, "The capital of France is", max_new_tokens=8)

``forward`` pads the sequence to the next power of two (at least 16) so a sweep over lengths
compiles once per bucket; padding sits after the real tokens, where the causal mask keeps it from
influencing them, and outputs are sliced back to the real length.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from replicate.glasses import gemma_weights
from replicate.glasses.gemma_weights import Gemma3Config

MIN_BUCKET = 16
ATTENTION_BLOCK = 128  # query block of the local layers' banded attention (a divisor of every bucket >= 128)


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


def apply_rope_tables(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate x (seq, heads, head_dim) by half-split RoPE; cos/sin (seq, head_dim)."""
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def project_qkv(cfg: Gemma3Config, lp, x, cos, sin):
    """Queries (seq, H, Dh), keys and values (seq, Hkv, Dh) of one layer for normed input x."""
    s = x.shape[0]
    q = (x @ lp["wq"]).reshape(s, cfg.n_heads, cfg.head_dim)
    k = (x @ lp["wk"]).reshape(s, cfg.n_kv_heads, cfg.head_dim)
    v = (x @ lp["wv"]).reshape(s, cfg.n_kv_heads, cfg.head_dim)
    q = apply_rope_tables(rms_norm(q, lp["q_norm"], cfg.rms_eps), cos, sin)
    k = apply_rope_tables(rms_norm(k, lp["k_norm"], cfg.rms_eps), cos, sin)
    return q, k, v


def softmax_attention(q, k, v, mask, scale):
    """Masked softmax attention of ``G`` query heads sharing one key/value head, over leading batch axes.

    q (..., Sq, G, Dh); k, v (..., Sk, Dh); mask (..., Sq, Sk) bool, broadcast over the G heads. The
    scores are one plain matmul ``(Sq*G, Dh) @ (Dh, Sk)`` per batch entry (the G heads stacked under
    each query row, no transposes); scaled in the input dtype, masked and softmaxed in float32.
    Returns the output (..., Sq, G, Dh) and the weights (..., Sq, G, Sk), both in q's dtype.
    """
    *batch, sq, group, dh = q.shape
    sk = k.shape[-2]
    scores = jnp.einsum("...qd,...sd->...qs", q.reshape(*batch, sq * group, dh), k) * jnp.asarray(scale, q.dtype)
    scores = scores.astype(jnp.float32).reshape(*batch, sq, group, sk)
    scores = jnp.where(mask[..., :, None, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    out = jnp.einsum("...qs,...sd->...qd", probs.reshape(*batch, sq * group, sk), v)
    return out.reshape(*batch, sq, group, dh), probs


def grouped_query_attention(cfg: Gemma3Config, q, k, v, mask):
    """Grouped-query attention with an explicit mask. q (Sq, H, Dh); k, v (Sk, Hkv, Dh); mask (Sq, Sk) bool.

    Returns the output (Sq, H*Dh) and the attention weights (H, Sq, Sk). Every score is computed, so
    the cost is Sq * Sk per head: the global layers' attention, and the local layers' where the
    sequence fits in the window (see :func:`banded_attention` for longer ones).
    """
    sq = q.shape[0]
    group = cfg.n_heads // cfg.n_kv_heads
    qg = q.reshape(sq, cfg.n_kv_heads, group, cfg.head_dim).transpose(1, 0, 2, 3)  # (Hkv, Sq, G, Dh)
    out, probs = softmax_attention(
        qg, k.transpose(1, 0, 2), v.transpose(1, 0, 2), mask[None], cfg.query_pre_attn_scalar**-0.5
    )
    out = out.transpose(1, 0, 2, 3).reshape(sq, cfg.n_heads * cfg.head_dim)
    return out, probs.transpose(0, 2, 1, 3).reshape(cfg.n_heads, sq, -1)


def window_mask(q_pos: np.ndarray, k_pos: np.ndarray, window: int, seq: int) -> np.ndarray:
    """(..., Sq, Sk) bool: key ``k`` is visible from query ``q`` in a sliding window of ``window`` keys,
    ``q - window < k <= q``, and is a real position (``0 <= k < seq``)."""
    q, k = q_pos[..., :, None], k_pos[..., None, :]
    return (q >= k) & (q - k < window) & (k >= 0) & (k < seq)


def band_geometry(seq: int, window: int, block: int) -> tuple[int, int, int]:
    """Static block layout of :func:`banded_attention`: (query blocks, head blocks, band).

    Query block i holds positions ``[i*block, (i+1)*block)``; it meets the ``band = k*block`` keys
    ``[(i+1)*block - band, (i+1)*block)``, the fewest whole blocks covering every key any of its
    queries may see (``q - window < key <= q``): ``k = ceil((block + window - 1) / block)``. The first
    ``k - 1`` blocks (the head blocks) would reach before position 0; they meet keys
    ``[0, (i+1)*block)`` instead, so no score outside the causal window's blocks is computed.
    """
    n_blocks = -(-seq // block)
    band = -(-(block + window - 1) // block) * block
    return n_blocks, min(band // block - 1, n_blocks), band


def band_to_full(band_probs: jax.Array, seq: int, block: int) -> jax.Array:
    """Scatter banded weights (..., n, block, band) into full rows (..., n * block, seq).

    Row a of block j holds keys ``j*block + c`` (c < band); shifting block j's rows by ``j*block`` is
    a pad, flatten and reshape (the skew trick): rows padded to ``width + block`` and re-read in rows
    of ``width`` put entry (j, c) at column ``j*block + c``. Columns from ``seq`` on are dropped.
    """
    *lead, n, _, band = band_probs.shape
    width = (n - 1) * block + band
    x = jnp.moveaxis(band_probs, -2, -3)  # (..., block, n, band)
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width + block - band)])
    x = x.reshape(*x.shape[:-2], n * (width + block))[..., : n * width]
    x = x.reshape(*x.shape[:-1], n, width)[..., :seq]
    return jnp.moveaxis(x, -3, -2).reshape(*lead, n * block, seq)


def banded_attention(cfg: Gemma3Config, q, k, v, *, window: int, block: int = ATTENTION_BLOCK):
    """Sliding-window grouped-query attention computing only the blocks the window meets: key j is
    visible from query i iff ``i - window < j <= i``.

    Equal to :func:`grouped_query_attention` with the sliding-window mask, at a cost of about
    ``seq * band`` scores per head instead of ``seq**2`` (``band`` = 640 keys for window 512 and block
    128; below the window, the causal triangle's blocks only). Queries go in blocks of ``block``
    (:func:`band_geometry`): each of the first few (head) blocks meets the keys from 0 to its end;
    all the others meet a band of the same width, gathered by static slicing and computed as one
    batched matmul. Static shapes, any ``seq`` (padded to whole blocks). q (S, H, Dh); k, v (S, Hkv,
    Dh). Returns the output (S, H*Dh) and the weights (H, S, S) scattered back to full rows (computed
    only if used).
    """
    seq = q.shape[0]
    group = cfg.n_heads // cfg.n_kv_heads
    n_blocks, n_head, band = band_geometry(seq, window, block)
    padded = n_blocks * block
    scale = cfg.query_pre_attn_scalar**-0.5
    pad = ((0, padded - seq), (0, 0), (0, 0))
    qb = jnp.pad(q, pad).reshape(n_blocks, block, cfg.n_kv_heads, group, cfg.head_dim).transpose(2, 0, 1, 3, 4)
    kh, vh = (jnp.pad(x, pad).transpose(1, 0, 2) for x in (k, v))  # (Hkv, padded, Dh)
    positions = np.arange(padded).reshape(n_blocks, block)
    outs, probs = [], []
    for i in range(n_head):  # (Hkv, block, G, Dh) against keys [0, (i+1)*block)
        keys = np.arange((i + 1) * block)
        mask = jnp.asarray(window_mask(positions[i], keys, window, seq))
        out, p = softmax_attention(qb[:, i], kh[:, : keys.size], vh[:, : keys.size], mask[None], scale)
        outs.append(out)
        probs.append(jnp.pad(p, ((0, 0), (0, 0), (0, 0), (0, padded - keys.size)))[..., :seq])
    if n_blocks > n_head:  # the rest: block i = n_head + j meets keys [j*block, j*block + band)
        n = n_blocks - n_head
        kb, vb = (x.reshape(cfg.n_kv_heads, n_blocks, block, cfg.head_dim) for x in (kh, vh))
        k_band, v_band = (jnp.concatenate([x[:, o : o + n] for o in range(band // block)], axis=2) for x in (kb, vb))
        keys = positions[:n, :1] + np.arange(band)  # (n, band)
        mask = jnp.asarray(window_mask(positions[n_head:], keys, window, seq))
        out, p = softmax_attention(qb[:, n_head:], k_band, v_band, mask[None], scale)  # (Hkv, n, block, G, .)
        outs.append(out.reshape(cfg.n_kv_heads, n * block, group, cfg.head_dim))
        probs.append(band_to_full(jnp.moveaxis(p, 3, 1), seq, block).transpose(0, 2, 1, 3))  # (Hkv, n*block, G, seq)
    out = jnp.concatenate(outs, axis=1)  # (Hkv, padded, G, Dh)
    out = out.transpose(1, 0, 2, 3).reshape(padded, cfg.n_heads * cfg.head_dim)[:seq]
    probs = jnp.concatenate(probs, axis=1).transpose(0, 2, 1, 3).reshape(cfg.n_heads, padded, seq)[:, :seq]
    return out, probs


def geglu_mlp(lp, x):
    """Gemma's GeGLU feed-forward ``down(gelu_tanh(gate(x)) * up(x))`` of one layer's parameters ``lp``."""
    return (jax.nn.gelu(x @ lp["w_gate"], approximate=True) * (x @ lp["w_up"])) @ lp["w_down"]


def decoder_block(cfg: Gemma3Config, lp, h, attn_fn):
    """One Gemma 3 decoder block; ``attn_fn(x) -> (out, probs)`` does the attention on normed x."""
    a, probs = attn_fn(rms_norm(h, lp["input_norm"], cfg.rms_eps))
    h = h + rms_norm(a @ lp["wo"], lp["post_attn_norm"], cfg.rms_eps)
    m = geglu_mlp(lp, rms_norm(h, lp["pre_ffw_norm"], cfg.rms_eps))
    h = h + rms_norm(m, lp["post_ffw_norm"], cfg.rms_eps)
    return h, probs


def masks_and_rope(cfg: Gemma3Config, q_pos, k_pos, dtype):
    """Causal and sliding-window masks (Sq, Sk) and the local/global RoPE (cos, sin) tables at ``q_pos``."""
    causal = q_pos[:, None] >= k_pos[None, :]
    local = causal & (q_pos[:, None] - k_pos[None, :] < cfg.sliding_window)
    cos_l, sin_l = rope_cos_sin(q_pos, cfg.rope_local_base, cfg.head_dim, dtype)
    cos_g, sin_g = rope_cos_sin(q_pos, cfg.rope_global_base, cfg.head_dim, dtype)
    return causal, local, (cos_l, sin_l), (cos_g, sin_g)


def global_layer_flags(cfg: Gemma3Config) -> jax.Array:
    """(layers,) bool: which layers attend globally (the others use the sliding window)."""
    return jnp.asarray([cfg.is_global(layer) for layer in range(cfg.n_layers)])


@partial(jax.jit, static_argnames=("cfg", "attentions", "all_logits"))
def forward_embeddings(params, emb, length, *, cfg: Gemma3Config, attentions: bool = True, all_logits: bool = True):
    """Jitted forward from input embeddings ``emb`` (seq, width) (already scaled by sqrt(width)).

    ``length`` (int scalar, may be traced) is the number of real tokens; positions from ``length``
    on are padding (harmless under the causal mask). Returns ``(logits, hidden_states, attentions)``
    with logits (seq, vocab) if ``all_logits`` else (vocab,) at position ``length - 1``;
    hidden_states (layers + 1, seq, width); attentions (layers, heads, seq, seq) or None.
    """
    dtype = emb.dtype
    seq = emb.shape[0]
    pos = jnp.arange(seq)
    causal, _, rl, rg = masks_and_rope(cfg, pos, pos, dtype)
    # Local layers compute only the key blocks their window meets (below the window, the causal
    # triangle's), global layers every causal score. Plain causal attention serves the local layers only
    # when the window hides nothing and the sequence fits one block (a window shorter than the sequence
    # must be applied even within one block: e.g. a model copy with an 8-token window).
    banded = seq > min(ATTENTION_BLOCK, cfg.sliding_window)

    def causal_attention(q, k, v):
        out, probs = grouped_query_attention(cfg, q, k, v, causal)
        return out, probs if attentions else None

    def window_attention(q, k, v):
        out, probs = banded_attention(cfg, q, k, v, window=cfg.sliding_window)
        return out, probs if attentions else None

    def body(h, xs):
        lp, is_global = xs
        cos = jnp.where(is_global, rg[0], rl[0])
        sin = jnp.where(is_global, rg[1], rl[1])

        def attn_fn(x):
            q, k, v = project_qkv(cfg, lp, x, cos, sin)
            if not banded:
                return causal_attention(q, k, v)
            return jax.lax.cond(is_global, causal_attention, window_attention, q, k, v)

        h, probs = decoder_block(cfg, lp, h, attn_fn)
        return h, (h, probs)

    h, (hs, probs) = jax.lax.scan(body, emb, (params["layers"], global_layer_flags(cfg)))
    y = rms_norm(h, params["final_norm"], cfg.rms_eps)
    hidden = jnp.concatenate([emb[None], hs[:-1], y[None]], axis=0)
    if all_logits:
        logits = y @ params["embed"].T
    else:
        logits = jax.lax.dynamic_index_in_dim(y, length - 1, keepdims=False) @ params["embed"].T
    return logits, hidden, probs


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
        self.tokenizer = tokenizer

    # -- tokenizer -------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids of ``text``; with ``<bos>`` (id 2) first, as Gemma expects, unless add_bos=False."""
        if not isinstance(text, str):
            raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ([self.config.bos_id] if add_bos else []) + list(ids)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.id_to_token(int(i)) for i in ids]

    # -- forward ---------------------------------------------------------------------------
    def check_ids(self, token_ids) -> np.ndarray:
        """``token_ids`` as an int32 array, or ValueError if it is not a non-empty 1-D sequence of valid ids."""
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
        ids = self.check_ids(token_ids)
        return self.params["embed"][jnp.asarray(ids)] * jnp.asarray(np.sqrt(self.config.width), self.dtype)

    def forward(
        self, token_ids, *, attentions: bool = True, all_logits: bool = True, pad: bool = True
    ) -> ForwardOutput:
        """Logits, hidden states and attention weights for one sequence (see module docstring)."""
        return self.forward_from_embeddings(
            self.embed(token_ids), attentions=attentions, all_logits=all_logits, pad=pad
        )

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

    def final_from_embeddings(self, emb) -> jax.Array:
        """Final (normed) representations y (seq, width) as a differentiable function of the input
        embeddings: what the sensitivity analysis differentiates (notebook 22)."""
        return self.forward_from_embeddings(emb, attentions=False, all_logits=False).hidden_states[-1]

    def astype(self, dtype: str) -> "Gemma3":
        """The same model with parameters cast to ``dtype`` ("float32" or "bfloat16"); shares the tokenizer."""
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype={dtype!r} is not supported; use 'float32' or 'bfloat16'")
        jd = jnp.dtype(dtype)
        return Gemma3(self.config, jax.tree_util.tree_map(lambda a: a.astype(jd), self.params), self.tokenizer, jd)


def load(dtype: str = "float32") -> Gemma3:
    """Load Gemma 3 270M (dequantised from Q4_K_M) as a :class:`Gemma3` in ``dtype`` ("float32" or "bfloat16")."""
    cfg, params, tokenizer = gemma_weights.load_weights(dtype)
    return Gemma3(cfg, params, tokenizer, jnp.dtype(dtype))
