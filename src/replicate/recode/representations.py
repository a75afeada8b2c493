"""Representation learners whose encoder f_theta(o) feeds RECODE: AP and CASM (Flax + optax).

* **AP** (action prediction, NGU's one-step inverse dynamics; RECODE Sec. 4, Eq. 4): an encoder
  ``f_theta`` and a classifier ``g_phi`` trained jointly to maximise
  ``log p(a_t | f_theta(o_t), f_theta(o_{t+1}))``. NGU feeds the classifier the concatenation.
* **CASM** (coupled action-state masking; RECODE Sec. 4, Fig. 2): a causally-masked transformer over
  the interleaved sequence ``f(o_0), a_0, f(o_1), a_1, ...`` where at every timestep exactly one of
  ``o_t`` and ``a_t`` is given and the other is replaced by a learned mask token. The transformer
  outputs are projected down to the embedding size and "the difference between the two" goes into
  an MLP classifier ``g_phi`` that predicts the masked actions by maximum likelihood. We read "the
  two" as the projected outputs at the observation slots of ``t+1`` and ``t`` (the multi-step analogue
  of AP's ``g(f(o_t), f(o_{t+1}))``: the output at ``o_{t+1}``'s slot has seen everything up to it,
  never ``a_t`` itself since that one is masked). ``N = 4`` masks are sampled per trajectory (Sec. 4).
  RECODE clusters the transformer *inputs* ``f_theta(o_t)``, so no trajectory information leaks into
  the embedding. Sizes (layers, heads, width, sequence length, mask probability) are in the paper's
  appendix, which we could not read here: they are :class:`CASMConfig` fields with small defaults (our choice).

Both give ``embed(params, observations) -> (B, embed_dim)`` for the memory.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from replicate.nn.mlp import MLP
from replicate.params import ParameterError


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    step: jax.Array


def _check_obs(obs, obs_dim: int, name: str = "observations"):
    obs = jnp.asarray(obs)
    if not jnp.issubdtype(obs.dtype, jnp.floating):
        raise ValueError(f"{name} have dtype {obs.dtype}; expected floating point (cast with .astype(np.float32))")
    if obs.shape[-1] != obs_dim:
        raise ValueError(f"{name} have feature size {obs.shape[-1]}; the model was built for obs_dim={obs_dim}")
    return obs.astype(jnp.float32)


# ----------------------------------------------------------------------------------------------
# AP


@dataclasses.dataclass(frozen=True)
class APConfig:
    obs_dim: int
    n_actions: int
    embed_dim: int = 32
    hidden: tuple[int, ...] = (128,)
    classifier_hidden: tuple[int, ...] = (128,)
    learning_rate: float = 5e-4

    def __post_init__(self) -> None:
        if self.n_actions < 2 or self.obs_dim < 1 or self.embed_dim < 1:
            raise ParameterError(f"APConfig: need n_actions >= 2, obs_dim >= 1 and embed_dim >= 1, got {self}")


class APModel(nn.Module):
    cfg: APConfig

    def setup(self):
        self.encoder = MLP((*self.cfg.hidden, self.cfg.embed_dim))
        self.classifier = MLP((*self.cfg.classifier_hidden, self.cfg.n_actions))

    def embed(self, o):
        return self.encoder(o)

    def __call__(self, o, o_next):
        return self.classifier(jnp.concatenate([self.encoder(o), self.encoder(o_next)], axis=-1))


def init_ap(cfg: APConfig, key: jax.Array) -> TrainState:
    x = jnp.zeros((1, cfg.obs_dim), jnp.float32)
    params = APModel(cfg).init(key, x, x)
    return TrainState(params, optax.adam(cfg.learning_rate).init(params), jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, static_argnums=0)
def ap_train_step(cfg: APConfig, state: TrainState, obs: jax.Array, actions: jax.Array, next_obs: jax.Array):
    """One Adam step on a batch of transitions (o_t, a_t, o_{t+1}); returns (state, {loss, accuracy}).

    ``obs``, ``next_obs`` (B, obs_dim) float32, ``actions`` (B,) int32. Pure and jitted (``cfg`` static);
    :func:`checked_ap_train_step` validates first."""
    model = APModel(cfg)

    def loss_fn(p):
        logits = model.apply(p, obs, next_obs)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, actions).mean()  # Eq. (4)
        return loss, jnp.mean(jnp.argmax(logits, -1) == actions)

    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optax.adam(cfg.learning_rate).update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), {
        "loss": loss,
        "accuracy": acc,
    }


def checked_ap_train_step(cfg: APConfig, state: TrainState, obs, actions, next_obs):
    """:func:`ap_train_step` after validating dtypes and shapes."""
    obs, next_obs = _check_obs(obs, cfg.obs_dim), _check_obs(next_obs, cfg.obs_dim, "next observations")
    actions = jnp.asarray(actions, jnp.int32)
    if actions.shape != obs.shape[:1] or next_obs.shape != obs.shape:
        raise ValueError(f"shapes do not match: obs {obs.shape}, actions {actions.shape}, next_obs {next_obs.shape}")
    return ap_train_step(cfg, state, obs, actions, next_obs)


@functools.partial(jax.jit, static_argnums=0)
def ap_embed(cfg: APConfig, params, obs) -> jax.Array:
    """f_theta(o): the embedding RECODE clusters."""
    return APModel(cfg).apply(params, obs, method=APModel.embed)


# ----------------------------------------------------------------------------------------------
# CASM


@dataclasses.dataclass(frozen=True)
class CASMConfig:
    obs_dim: int
    n_actions: int
    embed_dim: int = 32
    encoder_hidden: tuple[int, ...] = (128,)
    model_dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    seq_len: int = 16
    p_mask_action: float = 0.5  # probability that a timestep gives o_t and masks a_t
    n_masks: int = 4  # masks sampled per trajectory (Sec. 4)
    classifier_hidden: tuple[int, ...] = (128,)
    learning_rate: float = 3e-4

    def __post_init__(self) -> None:
        if self.model_dim % self.n_heads:
            raise ParameterError(f"CASMConfig: model_dim={self.model_dim} must be divisible by n_heads={self.n_heads}")
        if not 0 < self.p_mask_action <= 1:
            raise ParameterError(f"CASMConfig: p_mask_action={self.p_mask_action} must be in (0, 1]")
        if self.seq_len < 2 or self.n_masks < 1 or self.n_actions < 2:
            raise ParameterError(f"CASMConfig: need seq_len >= 2, n_masks >= 1, n_actions >= 2, got {self}")


class _Block(nn.Module):
    dim: int
    heads: int

    @nn.compact
    def __call__(self, x, mask):
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.dim)(h, h, mask=mask)
        h = nn.LayerNorm()(x)
        return x + nn.Dense(self.dim)(nn.gelu(nn.Dense(4 * self.dim)(h)))


class CASMModel(nn.Module):
    cfg: CASMConfig

    def setup(self):
        c = self.cfg
        self.encoder = MLP((*c.encoder_hidden, c.embed_dim))
        self.obs_in = nn.Dense(c.model_dim)
        self.act_in = nn.Embed(c.n_actions, c.model_dim)
        self.mask_obs = self.param("mask_obs", nn.initializers.normal(0.02), (c.model_dim,))
        self.mask_act = self.param("mask_act", nn.initializers.normal(0.02), (c.model_dim,))
        self.pos = self.param("pos", nn.initializers.normal(0.02), (2 * c.seq_len, c.model_dim))
        self.blocks = [_Block(c.model_dim, c.n_heads) for _ in range(c.n_layers)]
        self.norm = nn.LayerNorm()
        self.proj = nn.Dense(c.embed_dim)
        self.classifier = MLP((*c.classifier_hidden, c.n_actions))

    def embed(self, o):
        return self.encoder(o)

    def __call__(self, obs, actions, act_masked):
        """obs (N, T, obs_dim), actions (N, T), act_masked (N, T) bool (True: a_t masked, o_t given).

        Returns logits (N, T-1, n_actions) for a_0..a_{T-2}."""
        n, t = actions.shape
        e = self.encoder(obs)  # transformer inputs f(o_t): what RECODE clusters
        o_tok = jnp.where(act_masked[..., None], self.obs_in(e), self.mask_obs)
        a_tok = jnp.where(act_masked[..., None], self.mask_act, self.act_in(actions))
        x = jnp.stack([o_tok, a_tok], axis=2).reshape(n, 2 * t, -1) + self.pos[: 2 * t]
        causal = nn.make_causal_mask(jnp.ones((n, 2 * t)))
        for blk in self.blocks:
            x = blk(x, causal)
        z = self.proj(self.norm(x))[:, 0::2]  # projected outputs at the observation slots
        return self.classifier(z[:, 1:] - z[:, :-1])


def sample_masks(cfg: CASMConfig, key: jax.Array, n: int) -> jax.Array:
    """(n, T) bool: True where a_t is masked (and o_t given), False where o_t is masked (a_t given)."""
    return jax.random.bernoulli(key, cfg.p_mask_action, (n, cfg.seq_len))


def init_casm(cfg: CASMConfig, key: jax.Array) -> TrainState:
    obs = jnp.zeros((1, cfg.seq_len, cfg.obs_dim), jnp.float32)
    act = jnp.zeros((1, cfg.seq_len), jnp.int32)
    params = CASMModel(cfg).init(key, obs, act, jnp.ones((1, cfg.seq_len), bool))
    return TrainState(params, optax.adam(cfg.learning_rate).init(params), jnp.zeros((), jnp.int32))


def casm_loss(cfg: CASMConfig, params, obs, actions, masks, valid=None) -> tuple[jax.Array, jax.Array]:
    """CASM's loss (cross-entropy on the masked actions ``masks[:, :-1]``, weighted by ``valid``) and accuracy.

    Pure (jit it with ``cfg`` static). ``obs`` (N, T, obs_dim), ``actions``/``masks``/``valid`` (N, T)."""
    logits = CASMModel(cfg).apply(params, obs, actions, masks)
    target = actions[:, :-1]
    w = masks[:, :-1].astype(jnp.float32)  # loss on the masked actions only
    if valid is not None:  # a_t that did not lead to o_{t+1} (an episode ended in between) carries no loss
        w = w * valid[:, :-1].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    denom = jnp.maximum(w.sum(), 1.0)
    acc = jnp.sum((jnp.argmax(logits, -1) == target) * w) / denom
    return jnp.sum(ce * w) / denom, acc


@functools.partial(jax.jit, static_argnums=0)
def casm_train_step(cfg: CASMConfig, state: TrainState, obs: jax.Array, actions: jax.Array, key: jax.Array, valid=None):
    """One Adam step on trajectories ``obs`` (B, T, obs_dim) float32, ``actions`` (B, T) int32, N masks each.

    ``valid`` (B, T) bool, optional: ``valid[b, t]`` is False when ``a_t`` did not lead to ``o_{t+1}``
    (a window of an agent's rollout that crosses an episode end); such actions carry no loss.
    Pure and jitted (``cfg`` static); :func:`checked_casm_train_step` validates first.
    """
    b = obs.shape[0]
    rep = cfg.n_masks
    obs_r = jnp.repeat(obs, rep, axis=0)
    act_r = jnp.repeat(actions, rep, axis=0)
    valid_r = None if valid is None else jnp.repeat(valid, rep, axis=0)
    masks = sample_masks(cfg, key, b * rep)
    (loss, acc), grads = jax.value_and_grad(lambda p: casm_loss(cfg, p, obs_r, act_r, masks, valid_r), has_aux=True)(
        state.params
    )
    updates, opt_state = optax.adam(cfg.learning_rate).update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), {
        "loss": loss,
        "accuracy": acc,
    }


def checked_casm_train_step(cfg: CASMConfig, state: TrainState, obs, actions, key: jax.Array, valid=None):
    """:func:`casm_train_step` after validating dtypes and shapes."""
    obs = _check_obs(obs, cfg.obs_dim)
    actions = jnp.asarray(actions, jnp.int32)
    if obs.ndim != 3 or obs.shape[1] != cfg.seq_len or actions.shape != obs.shape[:2]:
        raise ValueError(
            f"expected obs (B, {cfg.seq_len}, {cfg.obs_dim}) and actions (B, {cfg.seq_len}); "
            f"got {obs.shape}, {actions.shape}"
        )
    if valid is not None:
        valid = jnp.asarray(valid, bool)
        if valid.shape != actions.shape:
            raise ValueError(f"valid must have the shape of actions {actions.shape}, got {valid.shape}")
    return casm_train_step(cfg, state, obs, actions, key, valid)


@functools.partial(jax.jit, static_argnums=0)
def casm_logits(cfg: CASMConfig, params, obs, actions, masks) -> jax.Array:
    return CASMModel(cfg).apply(params, obs, actions, masks)


@functools.partial(jax.jit, static_argnums=0)
def casm_embed(cfg: CASMConfig, params, obs) -> jax.Array:
    """f_theta(o_t), the transformer's input embedding: what RECODE clusters."""
    return CASMModel(cfg).apply(params, obs, method=CASMModel.embed)
