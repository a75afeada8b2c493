"""A configurable decoder-only Transformer in Flax (linen), written to be read next to the paper.

"Transformers need glasses!" (Barbero et al., 2024, Sec. 2) studies a Pre-LN decoder::

    z_i^(l)   = v_i^(l) + W_o · Σ_{j≤i} α_ij^(l) W_v norm_1(v_j^(l))          (attention + residual)
    v_i^(l+1) = z_i^(l) + ψ^(l)(norm_2(z_i^(l)))                               (MLP + residual)
    y_i       = norm_3(v_i^(L))

(the paper drops W_v, W_o "by an abuse of notation"; we keep them, random or learnt). This module
returns *every* layer's residual stream v^(0..L), the attention matrices α^(l) and the final
representations y, because the paper's two phenomena are statements about those, not about logits.

Options (:class:`TransformerConfig`): LayerNorm or RMSNorm (or none); causal mask on/off; heads,
layers, width; positional encoding ``none`` (NoPE), ``sinusoidal`` (Vaswani et al. 2017), ``rope``
(Su et al. 2021, rotate-half convention), ``alibi`` (Press et al. 2022, geometric slopes 2^{-8h/H});
optional sliding-window attention (Gemma 2/3's local layers, App. C.6); compute dtype float32 /
bfloat16 / float16 (parameters stay float32; matmuls, residual stream and outputs use the compute
dtype, softmax and norms are computed in float32 and cast back, the usual mixed-precision recipe).

Where sinusoidal PEs enter is a choice (``sinusoidal_mode``):

* ``"input"``: added once to the input embeddings (the original Transformer). The residual stream
  then carries absolute position, so the last tokens of [v, v_a] and [v, v_a, v_a] differ by
  p_n − p_{n+1}, which does not decay: Thm 4.2's assumption "positional information decays with
  distance" fails by construction.
* ``"attention"`` (default): added to the queries and keys inside every attention layer, so it only
  shapes the attention logits (q_i + p_i)·(k_j + p_j). This is the reading under which App. C.3/C.4's
  synthetic sinusoidal models can collapse at all.

The App. C.3/C.4 synthetic setups (keys, queries and values sampled directly, one layer, hidden 64,
one head) are :class:`SyntheticConfig`, :func:`synthetic_qkv` and :func:`collapse_synthetic`; they use
the same attention core :func:`attend` as the Flax model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from replicate.glasses import collapse

PE_TYPES = ("none", "sinusoidal", "rope", "alibi")
NORMS = ("layer", "rms", "none")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


# ============================================================================ positional encodings


def sinusoidal_table(positions: jax.Array, dim: int, base: float = 10000.0) -> jax.Array:
    """Vaswani et al. (2017) PE: p[t, 2i] = sin(t / base^{2i/d}), p[t, 2i+1] = cos(t / base^{2i/d}).

    Returns (len(positions), dim), interleaved sin/cos exactly as in the original paper.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal PE needs an even dimension, got {dim}")
    i = jnp.arange(dim // 2, dtype=jnp.float32)
    angles = positions.astype(jnp.float32)[:, None] / base ** (2.0 * i / dim)
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(positions.shape[0], dim)


def apply_rope_at_positions(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary embedding (Su et al. 2021), rotate-half convention (GPT-NeoX, Gemma): the pairs are
    (x_j, x_{j+d/2}) rotated by angle t · base^{-2j/d}. ``x``: (..., seq, d); positions: (seq,)."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {d}")
    half = d // 2
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / d)
    angles = positions.astype(jnp.float32)[:, None] * freq  # (seq, half)
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def alibi_slopes(heads: int) -> jax.Array:
    """ALiBi head slopes m_h = 2^{-8h/H}, h = 1..H (Press et al. 2022; exact for powers of two)."""
    return 2.0 ** (-8.0 * jnp.arange(1, heads + 1, dtype=jnp.float32) / heads)


# ============================================================================ attention core


def attention_mask(q_pos: jax.Array, k_pos: jax.Array, *, causal: bool, window: int | None) -> jax.Array:
    """Boolean (m, s) mask: True where query q_pos[a] may attend to key k_pos[b]."""
    diff = q_pos[:, None] - k_pos[None, :]
    mask = jnp.ones(diff.shape, dtype=bool)
    if causal:
        mask &= diff >= 0
    if window is not None:
        mask &= jnp.abs(diff) < window  # the query plus the window-1 previous (and, non-causal, next) keys
    return mask


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    q_pos: jax.Array,
    k_pos: jax.Array,
    pe: str = "none",
    causal: bool = True,
    window: int | None = None,
    rope_base: float = 10000.0,
    sinusoidal_base: float = 10000.0,
    add_sinusoidal: bool = False,
    slopes: jax.Array | None = None,
    freeze_weights: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Scaled dot-product attention for H heads with the paper's PE options.

    q: (H, m, dh) queries at positions ``q_pos`` (m,); k, v: (H, s, dh) at ``k_pos`` (s,).
    Returns (output (H, m, dh), weights (H, m, s)); weights are float32, rows sum to one.
    Logits are (q·k)/√dh, plus −m_h·|i−j| for ALiBi; softmax runs in float32.
    ``freeze_weights`` stops gradients through the attention weights (Thm 5.1's assumption (ii):
    attention treated as independent of the input), leaving only the value path differentiable.
    """
    dh = q.shape[-1]
    if pe == "rope":
        q, k = apply_rope_at_positions(q, q_pos, rope_base), apply_rope_at_positions(k, k_pos, rope_base)
    elif pe == "sinusoidal" and add_sinusoidal:
        q = q + sinusoidal_table(q_pos, dh, sinusoidal_base).astype(q.dtype)
        k = k + sinusoidal_table(k_pos, dh, sinusoidal_base).astype(k.dtype)
    logits = jnp.einsum("hmd,hsd->hms", q, k).astype(jnp.float32) / math.sqrt(dh)
    if pe == "alibi":
        m = alibi_slopes(q.shape[0]) if slopes is None else slopes
        logits = logits - m[:, None, None] * jnp.abs(q_pos[:, None] - k_pos[None, :]).astype(jnp.float32)
    mask = attention_mask(q_pos, k_pos, causal=causal, window=window)
    logits = jnp.where(mask[None], logits, -jnp.inf)
    weights = jax.nn.softmax(logits, axis=-1)
    if freeze_weights:
        weights = jax.lax.stop_gradient(weights)
    out = jnp.einsum("hms,hsd->hmd", weights.astype(v.dtype), v)
    return out, weights


# ============================================================================ Flax model


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Every hyper-parameter of :class:`Transformer` (defaults: the paper's App. C.3/C.4 scale).

    width: residual width d (C.3/C.4: 64). heads: attention heads (C.3/C.4: 1). layers: L.
    vocab_size: token vocabulary (None: the model only takes embeddings and returns no logits).
    mlp_ratio: MLP hidden = mlp_ratio·width, GELU; 0 = attention-only layers.
    norm: "layer" (LayerNorm), "rms" (RMSNorm) or "none"; Pre-LN placement (Sec. 2).
    causal: causal mask (decoder-only); False gives bidirectional attention (Prop. B.9).
    pe: "none" | "sinusoidal" | "rope" | "alibi"; sinusoidal_mode: "attention" | "input" (module doc).
    window: sliding-window size (None: full attention).
    dtype: compute dtype, "float32" | "bfloat16" | "float16".
    init_std: std of weight matrices (None: 1/√width, i.e. N(0, 1/d) as in App. C.3).
    embed_std: std of the token embedding table (only with vocab_size).
    final_norm: apply norm_3 to v^(L) to get y (Sec. 2).
    freeze_attention: stop gradients through attention weights (Thm 5.1's assumption (ii)); the
    forward pass is unchanged.
    """

    width: int = 64
    heads: int = 1
    layers: int = 1
    vocab_size: int | None = None
    mlp_ratio: int = 4
    norm: str = "layer"
    causal: bool = True
    pe: str = "none"
    sinusoidal_mode: str = "attention"
    window: int | None = None
    dtype: str = "float32"
    init_std: float | None = None
    embed_std: float = 1.0
    final_norm: bool = True
    rope_base: float = 10000.0
    sinusoidal_base: float = 10000.0
    norm_eps: float = 1e-6
    freeze_attention: bool = False

    def __post_init__(self):
        if self.width < 1 or self.heads < 1 or self.layers < 1:
            raise ValueError(f"width, heads and layers must be >= 1; got {self.width}, {self.heads}, {self.layers}")
        if self.width % self.heads:
            raise ValueError(f"width={self.width} must be divisible by heads={self.heads}")
        if self.pe not in PE_TYPES:
            raise ValueError(f"pe={self.pe!r}: choose one of {PE_TYPES}")
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r}: choose one of {NORMS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}: choose one of {list(DTYPES)}")
        if self.sinusoidal_mode not in ("attention", "input"):
            raise ValueError(f"sinusoidal_mode={self.sinusoidal_mode!r}: choose 'attention' or 'input'")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 or None, got {self.window}")
        if self.pe in ("rope", "sinusoidal") and (self.width // self.heads) % 2:
            raise ValueError(f"{self.pe} needs an even head dimension; width/heads = {self.width // self.heads}")
        if self.mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be >= 0, got {self.mlp_ratio}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def weight_std(self) -> float:
        return self.init_std if self.init_std is not None else 1.0 / math.sqrt(self.width)


class TransformerOutput(NamedTuple):
    """hidden_states: (L+1, seq, width), v^(0) (after any input PE) … v^(L); attentions: (L, H, seq, seq)
    (float32); final: y = norm_3(v^(L)) (seq, width); logits: (seq, vocab) or None."""

    hidden_states: jax.Array
    attentions: jax.Array | None
    final: jax.Array
    logits: jax.Array | None


class Norm(nn.Module):
    """LayerNorm / RMSNorm in float32 with a learnable scale (initialised to 1), cast back."""

    kind: str
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x):
        if self.kind == "none":
            return x
        x32 = x.astype(jnp.float32)
        if self.kind == "layer":
            x32 = x32 - x32.mean(-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32**2, axis=-1, keepdims=True) + self.eps)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        return (y * scale).astype(x.dtype)


class Block(nn.Module):
    """One Pre-LN decoder layer: v + attn(norm_1(v)), then + MLP(norm_2(·))."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x, positions):
        cfg = self.cfg
        dense = lambda n, name: nn.Dense(  # noqa: E731
            n, use_bias=False, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
            kernel_init=nn.initializers.normal(cfg.weight_std), name=name,
        )
        seq = x.shape[0]
        h = Norm(cfg.norm, cfg.norm_eps, name="norm_1")(x)
        split = lambda t: t.reshape(seq, cfg.heads, cfg.head_dim).transpose(1, 0, 2)  # noqa: E731
        q, k, v = split(dense(cfg.width, "q")(h)), split(dense(cfg.width, "k")(h)), split(dense(cfg.width, "v")(h))
        out, weights = attend(
            q, k, v, q_pos=positions, k_pos=positions, pe=cfg.pe, causal=cfg.causal, window=cfg.window,
            rope_base=cfg.rope_base, sinusoidal_base=cfg.sinusoidal_base,
            add_sinusoidal=cfg.pe == "sinusoidal" and cfg.sinusoidal_mode == "attention",
            freeze_weights=cfg.freeze_attention,
        )
        x = x + dense(cfg.width, "o")(out.transpose(1, 0, 2).reshape(seq, cfg.width))
        if cfg.mlp_ratio:
            h = Norm(cfg.norm, cfg.norm_eps, name="norm_2")(x)
            h = dense(cfg.width, "down")(nn.gelu(dense(cfg.mlp_ratio * cfg.width, "up")(h)))
            x = x + h
        return x, weights


class Transformer(nn.Module):
    """Decoder-only Transformer returning residual streams, attention matrices and final representations.

    ``__call__(tokens)`` embeds tokens (needs ``vocab_size``); ``__call__(None, embeddings=e)`` starts
    from input embeddings e (seq, width), which is what sensitivity analysis differentiates.
    """

    cfg: TransformerConfig

    def setup(self):
        cfg = self.cfg
        if cfg.vocab_size is not None:
            self.embedding = nn.Embed(cfg.vocab_size, cfg.width, embedding_init=nn.initializers.normal(cfg.embed_std))
        self.blocks = [Block(cfg, name=f"block_{layer}") for layer in range(cfg.layers)]
        self.final_norm = Norm(cfg.norm if cfg.final_norm else "none", cfg.norm_eps)

    def embed(self, tokens):
        if self.cfg.vocab_size is None:
            raise ValueError("this model has no vocabulary (vocab_size=None); pass embeddings instead of tokens")
        return self.embedding(tokens).astype(self.cfg.compute_dtype)

    def __call__(self, tokens=None, *, embeddings=None, return_attentions: bool = True) -> TransformerOutput:
        cfg = self.cfg
        if (tokens is None) == (embeddings is None):
            raise ValueError("give exactly one of tokens or embeddings")
        x = self.embed(tokens) if embeddings is None else embeddings.astype(cfg.compute_dtype)
        seq = x.shape[0]
        positions = jnp.arange(seq)
        if cfg.pe == "sinusoidal" and cfg.sinusoidal_mode == "input":
            x = x + sinusoidal_table(positions, cfg.width, cfg.sinusoidal_base).astype(x.dtype)
        states, attns = [x], []
        for block in self.blocks:
            x, w = block(x, positions)
            states.append(x)
            attns.append(w)
        y = self.final_norm(x)
        logits = None
        if cfg.vocab_size is not None:
            logits = self.embedding.attend(y.astype(jnp.float32))  # tied read-out
        return TransformerOutput(jnp.stack(states), jnp.stack(attns) if return_attentions else None, y, logits)


class Model:
    """Parameters plus jitted entry points, mirroring the Gemma wrapper's API.

    ``forward(tokens)`` and ``forward_from_embeddings(emb)`` return (logits, hidden_states, attentions)
    like ``replicate.glasses.gemma``; :meth:`final` maps embeddings to y (seq, width) for sensitivity.
    """

    def __init__(self, cfg: TransformerConfig, params: Any):
        self.cfg, self.params = cfg, params
        self.module = Transformer(cfg)
        self._fwd_tokens = jax.jit(lambda p, t: self.module.apply(p, t))
        self._fwd_emb = jax.jit(lambda p, e: self.module.apply(p, None, embeddings=e))
        self._embed = jax.jit(lambda p, t: self.module.apply(p, t, method=Transformer.embed))

    @classmethod
    def init(cls, cfg: TransformerConfig, key: jax.Array, seq: int = 8) -> "Model":
        module = Transformer(cfg)
        if cfg.vocab_size is not None:
            params = module.init(key, jnp.zeros((seq,), jnp.int32))
        else:
            params = module.init(key, None, embeddings=jnp.zeros((seq, cfg.width), jnp.float32))
        return cls(cfg, params)

    def embed(self, tokens) -> jax.Array:
        return self._embed(self.params, jnp.asarray(tokens, jnp.int32))

    def run(self, tokens=None, *, embeddings=None) -> TransformerOutput:
        if embeddings is not None:
            return self._fwd_emb(self.params, jnp.asarray(embeddings))
        return self._fwd_tokens(self.params, jnp.asarray(tokens, jnp.int32))

    def forward(self, tokens):
        o = self.run(tokens)
        return o.logits, o.hidden_states, o.attentions

    def forward_from_embeddings(self, emb):
        o = self.run(embeddings=emb)
        return o.logits, o.hidden_states, o.attentions

    def final(self, emb: jax.Array) -> jax.Array:
        """y = norm_3(v^(L)) as a differentiable function of the input embeddings (not jitted)."""
        return self.module.apply(self.params, None, embeddings=emb, return_attentions=False).final


def attention_branch_gains(model: Model, hidden_states) -> np.ndarray:
    """Plug-in estimate of 1/β^(l) for each layer: how much one unit of attention weight carries.

    In Thm 5.1's proof the value path of layer l contributes Λ^(l)_ij · (gain of norm_1 at v_j) ·
    ‖W_v W_o‖ (the paper drops W_v, W_o and calls the norm's constant 1/β₁). We estimate the gain as
    ‖W_v^(l) W_o^(l)‖₂ · max(norm_1 scale) / median_j std(v_j^(l)) (LayerNorm's Jacobian at v is ≈
    scale/std(v) on the centred subspace; RMSNorm's uses the RMS instead). Returns (L,) gains g_l;
    use ``betas = 1/g`` in :func:`replicate.glasses.theory.bound_matrix`.
    """
    cfg = model.cfg
    hs = np.asarray(hidden_states, dtype=np.float64)
    out = []
    for layer in range(cfg.layers):
        p = model.params["params"][f"block_{layer}"]
        wvo = np.asarray(p["v"]["kernel"], np.float64) @ np.asarray(p["o"]["kernel"], np.float64)
        x = hs[layer]
        if cfg.norm == "layer":
            x = x - x.mean(-1, keepdims=True)
        scale = float(np.max(np.abs(np.asarray(p["norm_1"]["scale"])))) if cfg.norm != "none" else 1.0
        denom = float(np.median(np.sqrt((x**2).mean(-1)))) if cfg.norm != "none" else 1.0
        out.append(np.linalg.norm(wvo, 2) * scale / denom)
    return np.array(out)


# ============================================================================ App. C.3 / C.4 synthetic setups


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """The one-layer, one-head synthetic collapse experiments of App. C.3 (Fig. 8) and C.4 (Fig. 10).

    Queries, keys and values are sampled per token, q_i, k_i, v_i ~ N(0, std² I_d), d = ``width`` = 64.
    C.3: std = 1/√d ("N(0, 1/d)"), sinusoidal PE, no normalisation. C.4: std = 1, then
    ``normalise="layer"`` applies a LayerNorm (zero mean, unit variance per token) to q, k and v, our
    reading of "normalise appropriately to simulate the effects of LayerNorm". The output of the layer
    at the last position is z_n = Σ_j α_nj v_j + v_n (Sec. 2 with the residual; no W_v, W_o, MLP or
    final norm: "one attention layer"). Sinusoidal PEs are added to q and k (see module doc); RoPE
    rotates q and k; ALiBi (one head: slope 2^-8) biases the logits.
    """

    width: int = 64
    pe: str = "sinusoidal"
    std: float | None = None  # None: 1/sqrt(width)
    normalise: str = "none"  # "none" | "layer"
    dtype: str = "float32"
    rope_base: float = 10000.0
    sinusoidal_base: float = 10000.0

    def __post_init__(self):
        if self.pe not in PE_TYPES:
            raise ValueError(f"pe={self.pe!r}: choose one of {PE_TYPES}")
        if self.normalise not in ("none", "layer"):
            raise ValueError(f"normalise={self.normalise!r}: choose 'none' or 'layer'")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}: choose one of {list(DTYPES)}")
        if self.width % 2:
            raise ValueError(f"width must be even, got {self.width}")

    @property
    def sample_std(self) -> float:
        return self.std if self.std is not None else 1.0 / math.sqrt(self.width)


def pe_label(pe: str, sinusoidal_mode: str = "attention") -> str:
    """Display name of a positional encoding: "NoPE" for "none", and " (added to input)" for the
    sinusoidal PE added to the residual stream instead of the queries and keys."""
    return {"none": "NoPE"}.get(pe, pe) + (" (added to input)" if sinusoidal_mode == "input" else "")


FIG8_SETUP = SyntheticConfig(pe="sinusoidal")  # App. C.3
FIG10_SETUP = dict(std=1.0, normalise="layer")  # App. C.4, with pe in {"none", "sinusoidal", "rope", "alibi"}


def _layernorm(x, eps=1e-6):
    x = x - x.mean(-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.mean(x**2, -1, keepdims=True) + eps)


def synthetic_qkv(key: jax.Array, n: int, cfg: SyntheticConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Sample n tokens' (q, k, v), each (n, width), normalised as ``cfg.normalise`` says (float32)."""
    kq, kk, kv = jax.random.split(key, 3)
    q, k, v = (cfg.sample_std * jax.random.normal(s, (n, cfg.width), jnp.float32) for s in (kq, kk, kv))
    if cfg.normalise == "layer":
        q, k, v = _layernorm(q), _layernorm(k), _layernorm(v)
    return q, k, v


def _last_output(q_n, k, v, v_n, q_pos, cfg: SyntheticConfig):
    """z = Σ_j α_j v_j + v_n for one query q_n at position q_pos over keys/values at positions 0..len-1
    (keys after q_pos are masked by causality)."""
    dt = DTYPES[cfg.dtype]
    q_n, k, v, v_n = q_n.astype(dt), k.astype(dt), v.astype(dt), v_n.astype(dt)
    out, w = attend(
        q_n[None, None], k[None], v[None], q_pos=jnp.reshape(q_pos, (1,)), k_pos=jnp.arange(k.shape[0]),
        pe=cfg.pe, causal=True, rope_base=cfg.rope_base, sinusoidal_base=cfg.sinusoidal_base,
        add_sinusoidal=True, slopes=alibi_slopes(1),
    )
    return out[0, 0] + v_n, w[0, 0]


def synthetic_last_output(q, k, v, cfg: SyntheticConfig) -> tuple[jax.Array, jax.Array]:
    """One causal attention layer's output at the last position, z_n = Σ_j α_nj v_j + v_n, and α_n,:.

    Only the last query row is computed (O(n·d)), so n = 10⁴ is cheap. Computed in ``cfg.dtype``.
    """
    return _last_output(q[-1], k, v, v[-1], q.shape[0] - 1, cfg)


def repeat_last(x: jax.Array) -> jax.Array:
    """[x_1 … x_n] -> [x_1 … x_n x_n]: Thm 4.2's v* (the last token repeated)."""
    return jnp.concatenate([x, x[-1:]], axis=0)


@functools.partial(jax.jit, static_argnames=("n", "cfg"))
def collapse_synthetic_outputs(keys: jax.Array, n: int, cfg: SyntheticConfig) -> tuple[jax.Array, jax.Array]:
    """Last-token outputs z_n of [v, v_a] and z*_{n+1} of [v, v_a, v_a] for a batch of PRNG keys
    (keys: (S, 2)); returns two (S, width) arrays in ``cfg.dtype``. One compile per (n, cfg)."""

    def one(key):
        q, k, v = synthetic_qkv(key, n, cfg)
        a, _ = synthetic_last_output(q, k, v, cfg)
        b, _ = synthetic_last_output(repeat_last(q), repeat_last(k), repeat_last(v), cfg)
        return a, b

    return jax.vmap(one)(keys)


@functools.partial(jax.jit, static_argnames=("n_max", "cfg"))
def _synthetic_curve(keys, ns, n_max: int, cfg: SyntheticConfig):
    def per_seed(key):
        q, k, v = synthetic_qkv(key, n_max, cfg)

        def per_n(n):
            # [v]: the first n tokens; keys past position n-1 are masked by causality.
            a, _ = _last_output(q[n - 1], k, v, v[n - 1], n - 1, cfg)
            # [v, v_a]: position n holds a copy of token n-1.
            idx = jnp.minimum(jnp.arange(n_max + 1), n - 1)
            b, _ = _last_output(q[n - 1], k[idx], v[idx], v[n - 1], n, cfg)
            return a, b

        return jax.vmap(per_n)(ns)

    return jax.vmap(per_seed)(keys)


def collapse_synthetic_curve(keys: jax.Array, ns, cfg: SyntheticConfig) -> tuple[jax.Array, jax.Array]:
    """Last-token outputs for every seed and length in one compiled call: (S, len(ns), width) twice.

    Each seed samples max(ns) tokens once; length n uses its first n (common random numbers across
    n, like a growing sequence). Numerically the same computation as :func:`collapse_synthetic_outputs`
    on the prefix (tested), with the extra keys masked out.
    """
    ns = [int(n) for n in ns]
    if not ns or min(ns) < 1:
        raise ValueError(f"ns must be a non-empty list of lengths >= 1, got {ns}")
    return _synthetic_curve(keys, jnp.asarray(ns, jnp.int32), max(ns), cfg)


def collapse_synthetic(key: jax.Array, n: int, cfg: SyntheticConfig) -> dict[str, float]:
    """‖z_n − z*_{n+1}‖ for a random length-n sequence and the same sequence with its last token repeated.

    Returns the L1, L2 and L∞ norms of the difference (float, computed in float32 from outputs in
    ``cfg.dtype``) and ``identical``: whether the two outputs are bit-identical in ``cfg.dtype``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    a, b = collapse_synthetic_outputs(jnp.asarray(key)[None], n, cfg)
    return collapse.representation_difference(a[0], b[0])


def collapse_synthetic_with_rounding(keys: jax.Array, ns, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 8/10 curves with bf16's resolution: per seed and length, the L1/L2/L∞ norms of z_n − z*_{n+1}
    computed in ``cfg.dtype`` (S, len(ns), 3) and the rounding error of the same outputs computed in
    bfloat16, max(‖z_bf16 − z‖∞, ‖z*_bf16 − z*‖∞) (S, len(ns)); both float64.

    Below the rounding error, bf16 cannot resolve the two sequences.
    """
    cfg16 = dataclasses.replace(cfg, dtype="bfloat16")
    a, b = (np.asarray(t, np.float64) for t in collapse_synthetic_curve(keys, ns, cfg))  # (S, len(ns), d)
    a16, b16 = (np.asarray(t.astype(jnp.float32), np.float64) for t in collapse_synthetic_curve(keys, ns, cfg16))
    return collapse.difference_norms(a, b), collapse.rounding_error(a, b, a16, b16)


# ============================================================================ token constructions (Fig. 1a)


def ones_then_zero(k: int) -> np.ndarray:
    """Fig. 1(a)'s sequence 1^k 0 as token ids (1 = "1", 0 = "0")."""
    return np.array([1] * k + [0], dtype=np.int32)


def collapse_token_pair(construction: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The two token sequences compared at length n.

    ``"repeat_last"`` (Thm 4.2): a fixed-pattern prefix ending in token 0, [v, v_a] vs [v, v_a, v_a];
    here v = 1^{n-1}, v_a = 0, i.e. 1^{n-1}0 vs 1^{n-1}00.
    ``"extra_one"`` (Fig. 1a): 1^{n-1}0 vs 1^n 0 (an extra 1 before the final 0).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if construction == "repeat_last":
        return ones_then_zero(n - 1), np.concatenate([ones_then_zero(n - 1), [0]]).astype(np.int32)
    if construction == "extra_one":
        return ones_then_zero(n - 1), ones_then_zero(n)
    raise ValueError(f"construction={construction!r}: choose 'repeat_last' or 'extra_one'")


def final_at_positions(model: Model, tokens: np.ndarray, positions: np.ndarray) -> jax.Array:
    """y at ``positions[b]`` of each row of a (B, N) token batch (one compile for all rows).

    For a causal model, position t's output ignores everything after t, so sequences of different
    lengths can be right-padded to a common N and read at their own last position: exact, not an
    approximation (masked keys get weight exactly 0).
    """
    if not model.cfg.causal:
        raise ValueError("final_at_positions pads sequences on the right, which is only exact for causal models")
    tokens, positions = jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32)
    if tokens.ndim != 2 or positions.shape != tokens.shape[:1]:
        raise ValueError(f"tokens must be (B, N) and positions (B,); got {tokens.shape} and {positions.shape}")
    return _final_at(model.module, model.params, tokens, positions)


def _final_at(module, params, tokens, positions):
    return _compiled_final_at(module.cfg)(params, tokens, positions)


@functools.lru_cache(maxsize=64)
def _compiled_final_at(cfg: TransformerConfig):
    """One jitted batch reader per configuration (configs are frozen, hence hashable), so models
    that differ only in their parameters (seeds) share one compilation."""
    module = Transformer(cfg)
    return jax.jit(
        lambda p, toks, pos: jax.lax.map(
            lambda tp: module.apply(p, tp[0], return_attentions=False).final[tp[1]], (toks, pos)
        )
    )


def token_final_pairs(model: Model, construction: str, ns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Final-token representations y of the two sequences of :func:`collapse_token_pair` for each n:
    two (len(ns), width) arrays in the model's compute dtype."""
    pairs = [collapse_token_pair(construction, n) for n in ns]
    width = max(len(b) for _, b in pairs)
    rows, pos = [], []
    for a, b in pairs:
        for s in (a, b):
            rows.append(np.pad(s, (0, width - len(s))))
            pos.append(len(s) - 1)
    ys = np.asarray(final_at_positions(model, np.stack(rows), np.array(pos)))
    return ys[0::2], ys[1::2]
