"""The Perceiver actor-critic network of PAC (Springenberg et al. 2024, arXiv 2402.05546, Fig. 2).

Architecture, as the paper's Fig. 2 caption describes it (the method section could not be read here; its section
number and the details below that the caption does not state are our reading, unverified), reduced to the
modalities we have (proprioception and task identity; no images, no language):

1. **Per-modality tokenisation.** Every proprioceptive scalar becomes one token
   ``e_d = o_d * w_d + p_d + m_P`` (a learned value projection ``w_d`` and position embedding ``p_d``
   per observation dimension ``d``, plus a learned *proprioception* modality embedding ``m_P``). The
   task identity becomes one token ``E_task[k] + m_T`` (a learned table; our stand-in for the paper's
   language instruction tokens). Tasks with fewer observation dimensions than the widest task are
   zero-padded and the padded tokens are *masked* out of the encoder's cross-attention.
2. **Encoder.** A learned latent array ``z_0`` (``num_latents x d_model``) cross-attends to the input
   tokens ``e_I``; ``num_self_attention`` pre-LayerNorm latent self-attention blocks follow (``z_M``).
3. **Policy decoder.** Learned queries ``q_pi`` (one per action dimension; the Fig. 2 caption speaks of
   "a learnable query q_pi", so one query per action dimension is our reading) cross-attend to ``z_M`` and
   output, per action dimension, the logits of a categorical distribution over ``num_action_bins``
   equally spaced bins in [-1, 1] (the paper discretises continuous actions and outputs "the logits of
   action distributions", Fig. 2 caption).
4. **Critic decoder.** The action enters *late*, as in the paper ("a query q_Q based on the encoded
   actions to cross-attend z_M", Fig. 2): the discretised action is embedded as
   ``q_Q + sum_d E_act[d, bin_d]`` (a learned query plus one learned embedding per (dimension, bin), i.e.
   a linear map of the concatenated one-hot action), and this query cross-attends to ``z_M``. Its
   output gives the logits of a *distributional* (categorical) Q-function over ``num_value_bins``
   atoms in ``[v_min, v_max]`` (Fig. 2: "action-specific logits of the distributional Q-function").
   Because the action is only in the query, Q can be evaluated for many actions per state at the
   cost of one small cross-attention each (this is why the paper fuses the action late).

Sizes are configurable from ``pico`` (notebook 32's isoFLOP grid at ``cpu``) and ``tiny`` (CI) to about the paper's
smallest model (see :data:`SIZES`).
The paper's models reach about 1B parameters (abstract); its model-size table (smallest model's
latent count and width) could not be checked here, so the ``paper_s`` preset is an approximation in
width/depth only (not verified), and our token count is tiny anyway. The numbers of action bins and
value atoms and the value range are likewise our choices (not verified against the paper).

Parameter counts of the presets (:func:`size_table`; 24 observation dims, 6 action dims, 4 tasks, 21 action
bins, 51 value atoms, as in notebooks 31/32 at ``cpu``; ``tests/pac`` checks this table):

======== ======= ======= ===== ====== ==========
size     d_model latents heads blocks parameters
======== ======= ======= ===== ====== ==========
pico     8       2       1     1      5,712
nano     16      2       2     1      17,496
micro    24      4       2     1      35,472
tiny     32      4       2     1      59,560
xs       48      8       2     2      154,632
s        64      8       4     2      267,592
m        128     16      4     3      1,225,928
l        256     16      8     4      5,600,840
xl       512     32      8     4      22,219,848
paper_s  768     32      12    6      64,020,552
======== ======= ======= ===== ====== ==========
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from replicate.params import ParameterError

Array = jax.Array
#: Compute dtypes of :class:`PerceiverConfig` (mixed precision: parameters always float32).
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class PerceiverConfig:
    """Hyper-parameters of the Perceiver actor-critic (paper Fig. 2; values our choice; sizes: see :data:`SIZES`).

    Attributes:
        obs_dim: widest proprioceptive observation over all tasks (narrower tasks are padded + masked).
        action_dim: widest action over all tasks (narrower tasks are padded + masked).
        num_tasks: number of task identities (one task token each).
        d_model: token/latent width.
        num_latents: size of the learned latent array ``z_0``.
        num_heads: attention heads (all attention modules).
        num_self_attention: latent self-attention blocks after the encoder cross-attention.
        mlp_ratio: hidden width of every MLP block, as a multiple of ``d_model``.
        num_action_bins: bins per action dimension in [-1, 1] (policy and critic action encoding).
        num_value_bins: atoms of the categorical Q distribution.
        v_min, v_max: support of the categorical Q distribution.
        compute_dtype: ``"float32"`` or ``"bfloat16"``: the dtype of activations and matrix products (mixed
            precision: parameters, and so gradients and optimizer state, stay float32; LayerNorm statistics
            and attention softmaxes are computed in float32; the policy and Q logits are returned in float32).
    """

    obs_dim: int
    action_dim: int
    num_tasks: int
    d_model: int = 64
    num_latents: int = 8
    num_heads: int = 2
    num_self_attention: int = 2
    mlp_ratio: int = 4
    num_action_bins: int = 11
    num_value_bins: int = 51
    v_min: float = 0.0
    v_max: float = 100.0
    compute_dtype: str = "float32"

    def __post_init__(self):
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ParameterError(
                f"PerceiverConfig.compute_dtype={self.compute_dtype!r}; choose one of {COMPUTE_DTYPES}")
        for name in ("obs_dim", "action_dim", "num_tasks", "d_model", "num_latents", "num_heads", "mlp_ratio"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"PerceiverConfig.{name}={getattr(self, name)} must be >= 1")
        if self.num_self_attention < 0:
            raise ParameterError(f"PerceiverConfig.num_self_attention={self.num_self_attention} must be >= 0")
        if self.d_model % self.num_heads:
            raise ParameterError(f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}; change one")
        if self.num_action_bins < 2 or self.num_value_bins < 2:
            raise ParameterError(f"num_action_bins={self.num_action_bins} and num_value_bins={self.num_value_bins} "
                                 "must be >= 2 (NUM_ACTION_BINS, NUM_VALUE_BINS)")
        if not self.v_max > self.v_min:
            raise ParameterError(f"v_max={self.v_max} must exceed v_min={self.v_min}")

    @property
    def dtype(self) -> jnp.dtype:
        """The compute dtype as a JAX dtype."""
        return jnp.dtype(self.compute_dtype)

    @property
    def action_bins(self) -> Array:
        """Bin centres in [-1, 1], shape ``(num_action_bins,)``."""
        return jnp.linspace(-1.0, 1.0, self.num_action_bins)

    @property
    def value_atoms(self) -> Array:
        """Atoms of the categorical Q distribution, shape ``(num_value_bins,)``."""
        return jnp.linspace(self.v_min, self.v_max, self.num_value_bins)

    def num_input_tokens(self) -> int:
        return self.obs_dim + 1


#: Size presets: (d_model, num_latents, num_heads, num_self_attention). ``pico``..``xs`` for the CPU isoFLOP sweep of
#: notebook 32 (small enough that its compute-optimal size falls inside the grid at CPU budgets); ``tiny`` is also
#: for CI and notebook 31; ``s``, ``m`` for larger CPU runs; ``l``, ``xl`` for a GPU; ``paper_s`` is a guess at the
#: width/depth of the paper's smallest model (its size table could not be retrieved: not verified).
SIZES: dict[str, dict[str, int]] = {
    "pico": dict(d_model=8, num_latents=2, num_heads=1, num_self_attention=1),
    "nano": dict(d_model=16, num_latents=2, num_heads=2, num_self_attention=1),
    "micro": dict(d_model=24, num_latents=4, num_heads=2, num_self_attention=1),
    "tiny": dict(d_model=32, num_latents=4, num_heads=2, num_self_attention=1),
    "xs": dict(d_model=48, num_latents=8, num_heads=2, num_self_attention=2),
    "s": dict(d_model=64, num_latents=8, num_heads=4, num_self_attention=2),
    "m": dict(d_model=128, num_latents=16, num_heads=4, num_self_attention=3),
    "l": dict(d_model=256, num_latents=16, num_heads=8, num_self_attention=4),
    "xl": dict(d_model=512, num_latents=32, num_heads=8, num_self_attention=4),
    "paper_s": dict(d_model=768, num_latents=32, num_heads=12, num_self_attention=6),
}


def make_config(size: str, **kwargs: Any) -> PerceiverConfig:
    """A :class:`PerceiverConfig` from a size preset name (see :data:`SIZES`) plus task dimensions."""
    if size not in SIZES:
        raise ParameterError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    return PerceiverConfig(**{**SIZES[size], **kwargs})


class MLP(nn.Module):
    hidden: int
    out: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.out, dtype=self.dtype)(nn.gelu(nn.Dense(self.hidden, dtype=self.dtype)(x)))


def _attention(num_heads: int, dtype) -> nn.MultiHeadDotProductAttention:
    return nn.MultiHeadDotProductAttention(num_heads=num_heads, deterministic=True, dtype=dtype,
                                           force_fp32_for_softmax=True)


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention ``q <- q + Attn(LN q, LN kv)`` then ``q <- q + MLP(LN q)``; ``kv_mask`` (B, K) bool."""

    num_heads: int
    mlp_ratio: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, q, kv, kv_mask=None):
        d, dt = q.shape[-1], self.dtype
        mask = None if kv_mask is None else kv_mask[:, None, None, :]
        q = q + _attention(self.num_heads, dt)(nn.LayerNorm(dtype=dt)(q), nn.LayerNorm(dtype=dt)(kv), mask=mask)
        return q + MLP(self.mlp_ratio * d, d, dt)(nn.LayerNorm(dtype=dt)(q))


class SelfAttentionBlock(nn.Module):
    num_heads: int
    mlp_ratio: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z):
        d, dt = z.shape[-1], self.dtype
        h = nn.LayerNorm(dtype=dt)(z)
        z = z + _attention(self.num_heads, dt)(h, h)
        return z + MLP(self.mlp_ratio * d, d, dt)(nn.LayerNorm(dtype=dt)(z))


class PerceiverActorCritic(nn.Module):
    """PAC network. ``encode`` -> ``z_M``; ``policy_logits(z_M)``; ``q_logits(z_M, action_bins)``.

    Shapes (B = batch): ``obs`` (B, obs_dim) float, ``obs_mask`` (B, obs_dim) bool, ``task`` (B,) int,
    ``action_idx`` (B, action_dim) int bin indices, ``action_mask`` (B, action_dim) bool.
    """

    cfg: PerceiverConfig

    def setup(self):
        c, dt = self.cfg, self.cfg.dtype
        init = nn.initializers.normal(0.02)
        self.obs_value_w = self.param("obs_value_w", init, (c.obs_dim, c.d_model))
        self.obs_pos = self.param("obs_pos", init, (c.obs_dim, c.d_model))
        self.modality = self.param("modality", init, (2, c.d_model))  # 0: proprioception, 1: task
        self.task_embed = nn.Embed(c.num_tasks, c.d_model, embedding_init=init)
        self.latents = self.param("latents", init, (c.num_latents, c.d_model))
        self.encoder = CrossAttentionBlock(c.num_heads, c.mlp_ratio, dt)
        self.blocks = [SelfAttentionBlock(c.num_heads, c.mlp_ratio, dt) for _ in range(c.num_self_attention)]
        self.final_ln = nn.LayerNorm(dtype=dt)
        self.policy_queries = self.param("policy_queries", init, (c.action_dim, c.d_model))
        self.policy_decoder = CrossAttentionBlock(c.num_heads, c.mlp_ratio, dt)
        self.policy_head = nn.Dense(c.num_action_bins, kernel_init=nn.initializers.zeros, dtype=dt)
        self.q_query = self.param("q_query", init, (c.d_model,))
        self.action_embed = self.param("action_embed", init, (c.action_dim, c.num_action_bins, c.d_model))
        self.q_decoder = CrossAttentionBlock(c.num_heads, c.mlp_ratio, dt)
        self.q_head = nn.Dense(c.num_value_bins, kernel_init=nn.initializers.zeros, dtype=dt)

    def tokens(self, obs, obs_mask, task):
        """Input tokens ``e_I`` (B, obs_dim + 1, d) and their mask (B, obs_dim + 1)."""
        obs = jnp.where(obs_mask, obs, 0.0)
        proprio = obs[..., None] * self.obs_value_w + self.obs_pos + self.modality[0]
        task_tok = self.task_embed(task)[:, None, :] + self.modality[1]
        mask = jnp.concatenate([obs_mask, jnp.ones(task.shape + (1,), bool)], axis=-1)
        return jnp.concatenate([proprio, task_tok], axis=1).astype(self.cfg.dtype), mask

    def encode(self, obs, obs_mask, task):
        """Latent encoding ``z_M`` (B, num_latents, d)."""
        e, mask = self.tokens(obs, obs_mask, task)
        z = jnp.broadcast_to(self.latents.astype(self.cfg.dtype), (obs.shape[0],) + self.latents.shape)
        z = self.encoder(z, e, mask)
        for blk in self.blocks:
            z = blk(z)
        return self.final_ln(z)

    def policy_logits(self, z, action_mask):
        """Per-dimension action logits (B, action_dim, num_action_bins); padded dimensions are uniform (0)."""
        q = jnp.broadcast_to(self.policy_queries.astype(z.dtype), (z.shape[0],) + self.policy_queries.shape)
        logits = self.policy_head(self.policy_decoder(q, z)).astype(jnp.float32)
        return jnp.where(action_mask[..., None], logits, 0.0)

    def q_logits(self, z, action_idx, action_mask):
        """Logits of the categorical Q distribution (B, num_value_bins) for discretised actions ``action_idx``."""
        c = self.cfg
        onehot = jax.nn.one_hot(action_idx, c.num_action_bins) * action_mask[..., None]  # (B, A, K)
        query = self.q_query + jnp.einsum("bak,akd->bd", onehot, self.action_embed)
        out = self.q_decoder(query[:, None, :].astype(z.dtype), z)[:, 0]
        return self.q_head(out).astype(jnp.float32)

    def __call__(self, obs, obs_mask, task, action_idx, action_mask):
        z = self.encode(obs, obs_mask, task)
        return self.policy_logits(z, action_mask), self.q_logits(z, action_idx, action_mask)


# ----------------------------------------------------------------------------------------------
# Action and value representations (paper Fig. 2 caption: action logits, categorical distributional critic).


def discretise_actions(actions: Array, num_bins: int) -> Array:
    """Continuous actions in [-1, 1] -> nearest bin index in ``0..num_bins-1`` (int32)."""
    a = jnp.clip(actions, -1.0, 1.0)
    return jnp.round((a + 1.0) * 0.5 * (num_bins - 1)).astype(jnp.int32)


def undiscretise_actions(idx: Array, num_bins: int) -> Array:
    """Bin index -> bin centre in [-1, 1]."""
    return idx.astype(jnp.float32) * (2.0 / (num_bins - 1)) - 1.0


def q_mean(q_logits: Array, atoms: Array) -> Array:
    """Expected value of the categorical Q distribution, ``sum_i softmax(logits)_i z_i``."""
    return jnp.sum(jax.nn.softmax(q_logits, axis=-1) * atoms, axis=-1)


def param_count(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def init_params(cfg: PerceiverConfig, key: Array, *, abstract: bool = False):
    """Initialise the network's parameters with dummy inputs of batch 1 (``abstract``: shapes only)."""
    model = PerceiverActorCritic(cfg)
    obs = jnp.zeros((1, cfg.obs_dim))
    om = jnp.ones((1, cfg.obs_dim), bool)
    am = jnp.ones((1, cfg.action_dim), bool)
    args = (obs, om, jnp.zeros((1,), jnp.int32), jnp.zeros((1, cfg.action_dim), jnp.int32), am)
    if abstract:
        return model, jax.eval_shape(model.init, key, *args)
    return model, _jitted_init(model)(key, *args)


@functools.lru_cache(maxsize=32)
def _jitted_init(model: PerceiverActorCritic):
    """One jitted ``model.init`` per network (equal configs give equal modules), so the runs of a sweep compile
    it once instead of once per run."""
    return jax.jit(model.init)


#: Methods whose training compute :func:`train_flops_per_sample` counts (the names of
#: :func:`replicate.pac.experiment.methods`).
FLOP_METHODS = ("BC", "PAC")


def size_table(obs_dim: int = 24, action_dim: int = 6, num_tasks: int = 4, num_action_bins: int = 21,
               num_value_bins: int = 51) -> list[dict[str, int | str]]:
    """One row per preset of :data:`SIZES`: its hyper-parameters and parameter count (from the abstract shapes
    of :func:`init_params`; no memory is allocated) for these task dimensions."""
    rows = []
    for size, preset in SIZES.items():
        cfg = make_config(size, obs_dim=obs_dim, action_dim=action_dim, num_tasks=num_tasks,
                          num_action_bins=num_action_bins, num_value_bins=num_value_bins)
        _, params = init_params(cfg, jax.random.PRNGKey(0), abstract=True)
        rows.append({"size": size, **preset, "params": param_count(params)})
    return rows


def forward_flops(cfg: PerceiverConfig) -> dict[str, float]:
    """Forward FLOPs per sample of each part of the network: ``encoder`` (input cross-attention and the
    latent self-attention blocks), ``policy`` (policy decoder and head) and ``critic`` (one Q-decoder pass for
    one action: action-query embedding, cross-attention, head).

    FLOPs = 2 x multiply-adds of every matrix product (projections, attention scores and weighted sums, MLPs,
    heads, the one-hot action embedding); element-wise work (LayerNorm, softmax, GELU) is not counted.
    """
    d, n, t, a = cfg.d_model, cfg.num_latents, cfg.num_input_tokens(), cfg.action_dim
    h = cfg.mlp_ratio * d

    def xattn(nq, nk):  # q, o projections (nq) + k, v projections (nk) + scores + weighted sum + MLP
        return 2 * (2 * nq * d * d + 2 * nk * d * d + 2 * nq * nk * d + 2 * nq * d * h)

    return {
        "encoder": float(xattn(n, t) + cfg.num_self_attention * xattn(n, n)),
        "policy": float(xattn(a, n) + 2 * a * d * cfg.num_action_bins),
        "critic": float(2 * a * cfg.num_action_bins * d + xattn(1, n) + 2 * d * cfg.num_value_bins),
    }


def train_flops_per_sample(cfg: PerceiverConfig, pac_cfg: Any = None, method: str = "PAC") -> float:
    """Training FLOPs per sample of one update of ``method``: the one count used by
    :func:`replicate.pac.experiment.run`, notebook 32's isoFLOP budgets and ``benchmarks/pac_train_step.py``.

    With ``F = forward_flops(cfg)`` and ``M = pac_cfg.num_policy_samples`` (``pac_cfg`` a
    :class:`replicate.pac.losses.PACConfig`; needed for PAC only); forward + backward = 3 x forward
    (Kaplan et al. 2020; our accounting, not verified as the paper's):

    * ``BC``:  ``3 (F_enc + F_pol)`` (encoder and policy decoder, forward and backward).
    * ``PAC``: ``3 (F_enc + F_pol + F_critic)`` (online network on ``s``, critic on the data action)
      ``+ 2 (F_enc + F_pol) + 2 M F_critic`` (target network, forward only: encoder and policy on ``s`` and
      on ``s'``, the critic for the ``M`` sampled actions at ``s`` and at ``s'``)
      ``+ 2 V^2`` (the C51 projection of the bootstrap distribution, ``V`` value atoms).

    This is what :func:`replicate.pac.losses.pac_loss` computes (checked in ``tests/pac`` against XLA's cost
    analysis of the compiled loss and gradient).
    """
    if method not in FLOP_METHODS:
        raise ParameterError(f"method={method!r} must be one of {FLOP_METHODS}")
    f = forward_flops(cfg)
    if method == "BC":
        return 3.0 * (f["encoder"] + f["policy"])
    if pac_cfg is None:
        raise ParameterError("train_flops_per_sample(method='PAC') needs pac_cfg (for num_policy_samples)")
    m = pac_cfg.num_policy_samples
    online = 3.0 * (f["encoder"] + f["policy"] + f["critic"])
    target = 2.0 * (f["encoder"] + f["policy"]) + 2.0 * m * f["critic"] + 2.0 * cfg.num_value_bins**2
    return online + target
