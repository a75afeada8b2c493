"""Baselines on RECODE's interface: NGU's episodic memory, RND, exact (discounted) tabular counts.

Every estimator is a pair of pure functions ``init_*`` / ``*_step`` over an explicit state; a step
takes a (B, ...) batch and returns ``(state, Estimate(reward, count))`` where ``reward`` and
``count`` are computed *before* the batch is added (as in RECODE's Algorithm 1, l.1-2). ``count``
is each method's own count-like quantity: NGU's kernel sum over the episode's k nearest
neighbours, the exact count for tables, and ``1 / reward^2`` (the count an RND reward implies
under r = 1/sqrt(N)) for RND.

* NGU episodic memory, the paper's **EMM** when used alone (Badia et al. 2020, Sec. 2 and App. A.1 /
  Alg. 1; constants App. F): per actor, the embeddings of the current episode (ring buffer of
  ``capacity`` = 30 000), the k nearest (k = 10), squared distances divided by a running mean of squared
  k-NN distances ``d_m^2``, ``d <- max(d - xi, 0)`` with the cluster distance ``xi = 0.008``, inverse
  kernel ``K = eps / (d + eps)`` (``eps = 1e-4``), similarity ``s = sqrt(sum K) + c`` (``c = 1e-3``),
  reward ``1/s``, or 0 when ``s > s_max = 8``. The memory is emptied at every episode start. ``d_m^2``
  is a per-actor running mean over all episodes (our reading; NGU does not say whether it is reset).
* NGU proper (Badia et al. 2020, Sec. 2): the episodic reward times a life-long novelty factor from
  RND, ``r = r_episodic * min(max(alpha_t, 1), L)`` with ``alpha_t = 1 + (err_t - mu_err) / sigma_err``
  (``err``: RND's prediction error, ``mu``/``sigma`` its running mean and standard deviation) and
  ``L = 5``: :class:`NGUConfig`, :func:`ngu_modulation`, :func:`ngu_reward` (pure; the bonus
  ``ngu`` of :mod:`replicate.recode.bonus` combines the episodic and RND cores with them).
* RND (Burda et al. 2019): a predictor MLP regresses a fixed, randomly initialised target MLP;
  reward = squared prediction error; inputs normalised by a running mean/std and clipped to
  [-5, 5]; the predictor takes one Adam step per batch.
* Tabular counts: the true state's count with the same per-embedding discount as RECODE
  (``gamma = 1``: plain counts), reward ``1 / (sqrt(N) + c)``.

RND normalises its inputs with :class:`replicate.rl.normalisation.RunningMeanStd` (the running moments PPO
also uses for the intrinsic reward, RECODE Sec. 3) and its networks are :class:`replicate.nn.mlp.MLP`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from replicate.nn.mlp import MLP
from replicate.params import ParameterError
from replicate.recode import memory
from replicate.rl.normalisation import RunningMeanStd


class Estimate(NamedTuple):
    reward: jax.Array  # (B,)
    count: jax.Array  # (B,)


# ----------------------------------------------------------------------------------------------
# NGU episodic memory


@dataclasses.dataclass(frozen=True)
class EpisodicConfig:
    """NGU's episodic novelty, every default NGU's own (Badia et al. 2020, App. F: k = 10, kernel
    epsilon = 1e-4, c = 1e-3, cluster distance xi = 0.008, maximum similarity s_m = 8, episodic memory
    capacity 30 000)."""

    capacity: int = 30_000  # NGU's episodic memory size
    k: int = 10
    epsilon: float = 1e-4
    c: float = 1e-3
    cluster_distance: float = 0.008  # xi
    max_similarity: float = 8.0  # s_max

    def __post_init__(self) -> None:
        if not (isinstance(self.k, int) and self.k >= 1):
            raise ParameterError(f"EpisodicConfig: k={self.k!r} must be an int >= 1")
        if not (isinstance(self.capacity, int) and self.capacity >= self.k):
            raise ParameterError(f"EpisodicConfig: capacity={self.capacity!r} is below k={self.k}; use a capacity >= k")


class EpisodicState(NamedTuple):
    memory: jax.Array  # (A, L, d)
    size: jax.Array  # (A,) int32 entries of the current episode (<= L)
    pos: jax.Array  # (A,) int32 next ring-buffer position
    dm2: jax.Array  # (A,) running mean of squared k-NN distances
    n: jax.Array  # (A,) number of terms in that mean


def init_episodic(cfg: EpisodicConfig, n_actors: int, dim: int) -> EpisodicState:
    actors, capacity = int(n_actors), cfg.capacity
    return EpisodicState(
        jnp.zeros((actors, capacity, int(dim)), jnp.float32),
        jnp.zeros((actors,), jnp.int32),
        jnp.zeros((actors,), jnp.int32),
        jnp.zeros((actors,), jnp.float32),
        jnp.zeros((actors,), jnp.float32),
    )


def _episodic_one(cfg: EpisodicConfig, mem, size, pos, dm2, n, e, reset):
    size = jnp.where(reset, 0, size)
    pos = jnp.where(reset, 0, pos)
    L = mem.shape[0]
    d2 = memory.sqdist(e[None], mem)[0]
    d2 = jnp.where(jnp.arange(L) < size, d2, jnp.inf)
    kd, _ = memory.smallest_k(d2[None], cfg.k)
    kd = kd[0]
    valid = jnp.isfinite(kd)
    nv = jnp.sum(valid)
    # running mean of squared k-NN distances (updated with this step's neighbours, then used)
    tot = n + nv
    dm2 = jnp.where(nv > 0, (dm2 * n + jnp.sum(jnp.where(valid, kd, 0.0))) / jnp.maximum(tot, 1), dm2)
    dn = jnp.where(valid, kd / jnp.where(dm2 > 0, dm2, 1.0), jnp.inf)
    dn = jnp.maximum(dn - cfg.cluster_distance, 0.0)
    kern = jnp.where(valid, cfg.epsilon / (dn + cfg.epsilon), 0.0)
    ksum = jnp.sum(kern)
    s = jnp.sqrt(ksum) + cfg.c
    r = jnp.where(s > cfg.max_similarity, 0.0, 1.0 / s)
    mem = mem.at[pos].set(e)
    return mem, jnp.minimum(size + 1, L), (pos + 1) % L, dm2, tot, r, ksum


@functools.partial(jax.jit, static_argnums=0)
def episodic_step(
    cfg: EpisodicConfig, state: EpisodicState, e: jax.Array, reset: jax.Array
) -> tuple[EpisodicState, Estimate]:
    """One step of every actor: ``e`` (A, d) float32; ``reset`` (A,) bool marks an episode's first step.

    Pure and jitted (``cfg`` static); :func:`checked_episodic_step` validates first."""
    f = jax.vmap(functools.partial(_episodic_one, cfg))
    mem, size, pos, dm2, n, r, ksum = f(state.memory, state.size, state.pos, state.dm2, state.n, e, reset)
    return EpisodicState(mem, size, pos, dm2, n), Estimate(r, ksum)


def checked_episodic_step(
    cfg: EpisodicConfig, state: EpisodicState, embeddings, reset
) -> tuple[EpisodicState, Estimate]:
    """:func:`episodic_step` after validating ``embeddings`` (A, d) and ``reset`` (A,)."""
    e = memory.check_batch(embeddings, state.memory.shape[2])
    if e.shape[0] != state.memory.shape[0]:
        raise ValueError(
            f"embeddings have {e.shape[0]} rows but the episodic memory has {state.memory.shape[0]} actors"
        )
    reset = jnp.asarray(reset, bool).reshape(-1)
    if reset.shape[0] != e.shape[0]:
        raise ValueError(f"reset has {reset.shape[0]} entries; expected one per actor ({e.shape[0]})")
    return episodic_step(cfg, state, e, reset)


# ----------------------------------------------------------------------------------------------
# Tabular (discounted) counts


@dataclasses.dataclass(frozen=True)
class TabularConfig:
    n_states: int
    gamma: float = 1.0
    c: float = 1e-3


def init_tabular(cfg: TabularConfig) -> jax.Array:
    return jnp.zeros((cfg.n_states,), jnp.float32)


@functools.partial(jax.jit, static_argnums=0)
def tabular_step(cfg: TabularConfig, counts: jax.Array, ids: jax.Array) -> tuple[jax.Array, Estimate]:
    """Rewards of the (B,) int32 state ids from the counts before the batch, then the discounted count
    update; pure and jitted (``cfg`` static). :func:`checked_tabular_step` validates the ids first."""
    n = counts[ids]
    r = 1.0 / (jnp.sqrt(n) + cfg.c)
    B = ids.shape[0]
    w = jnp.float32(cfg.gamma) ** (B - 1 - jnp.arange(B))  # per-embedding discount, sequentially exact
    counts = counts * jnp.float32(cfg.gamma) ** B
    return counts.at[ids].add(w), Estimate(r, n)


def checked_tabular_step(cfg: TabularConfig, counts: jax.Array, state_ids) -> tuple[jax.Array, Estimate]:
    """:func:`tabular_step` after checking that ``state_ids`` are 1-D integers in ``[0, n_states)``."""
    ids = np.asarray(state_ids)
    if not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 1:
        raise ValueError(f"state ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= cfg.n_states):
        raise ValueError(f"state ids must lie in [0, {cfg.n_states}); got [{ids.min()}, {ids.max()}]")
    return tabular_step(cfg, counts, jnp.asarray(ids, jnp.int32))


# ----------------------------------------------------------------------------------------------
# RND


@dataclasses.dataclass(frozen=True)
class RNDConfig:
    """RND (Burda et al. 2019): target and predictor MLPs, Adam, observation clipping at 5."""

    hidden: tuple[int, ...] = (128, 128)
    out_dim: int = 64
    learning_rate: float = 1e-4
    obs_clip: float = 5.0


class RNDState(NamedTuple):
    target_params: dict
    params: dict
    opt_state: optax.OptState
    obs_rms: RunningMeanStd


def _rnd_nets(cfg: RNDConfig):
    return MLP((*cfg.hidden, cfg.out_dim)), MLP((*cfg.hidden, cfg.out_dim))


def init_rnd(cfg: RNDConfig, key: jax.Array, dim: int) -> RNDState:
    target, pred = _rnd_nets(cfg)
    kt, kp = jax.random.split(key)
    x = jnp.zeros((1, int(dim)), jnp.float32)
    tp = target.init(kt, x)
    pp = pred.init(kp, x)
    opt = optax.adam(cfg.learning_rate)
    return RNDState(tp, pp, opt.init(pp), RunningMeanStd.create((int(dim),)))


@functools.partial(jax.jit, static_argnums=0)
def rnd_step(cfg: RNDConfig, state: RNDState, x: jax.Array) -> tuple[RNDState, Estimate]:
    """Rewards (prediction errors before the update) for a (B, d) float32 batch, then one Adam step.

    Pure and jitted (``cfg`` static); :func:`checked_rnd_step` validates first."""
    target, pred = _rnd_nets(cfg)
    obs_rms = state.obs_rms.update(x)
    xn = jnp.clip((x - obs_rms.mean) / obs_rms.std(), -cfg.obs_clip, cfg.obs_clip)
    tgt = jax.lax.stop_gradient(target.apply(state.target_params, xn))

    def loss_fn(p):
        err = jnp.sum((pred.apply(p, xn) - tgt) ** 2, axis=-1)
        return jnp.mean(err), err

    (_, err), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    opt = optax.adam(cfg.learning_rate)
    updates, opt_state = opt.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    count = 1.0 / jnp.maximum(err, 1e-12)  # the count r = 1/sqrt(N) would imply, with r = sqrt(err)
    return RNDState(state.target_params, params, opt_state, obs_rms), Estimate(err, count)


def checked_rnd_step(cfg: RNDConfig, state: RNDState, x) -> tuple[RNDState, Estimate]:
    """:func:`rnd_step` after validating the (B, d) observations."""
    return rnd_step(cfg, state, memory.check_batch(x, state.obs_rms.mean.shape[0], name="observations"))


@functools.partial(jax.jit, static_argnums=0)
def rnd_reward(cfg: RNDConfig, state: RNDState, x) -> jax.Array:
    """Prediction errors of a batch without training (for probing)."""
    target, pred = _rnd_nets(cfg)
    xn = jnp.clip((x - state.obs_rms.mean) / state.obs_rms.std(), -cfg.obs_clip, cfg.obs_clip)
    return jnp.sum((pred.apply(state.params, xn) - target.apply(state.target_params, xn)) ** 2, axis=-1)


@functools.partial(jax.jit, static_argnums=0)
def episodic_query(cfg: EpisodicConfig, state: EpisodicState, actor: int, probes: jax.Array) -> jax.Array:
    """NGU kernel sums (the episodic 'count') of probe embeddings against one actor's current
    episode memory, with its current d_m^2; no update."""
    mem, size, dm2 = state.memory[actor], state.size[actor], state.dm2[actor]
    d2 = memory.sqdist(probes, mem)
    d2 = jnp.where(jnp.arange(mem.shape[0])[None] < size, d2, jnp.inf)
    kd, _ = memory.smallest_k(d2, cfg.k)
    valid = jnp.isfinite(kd)
    dn = jnp.maximum(kd / jnp.where(dm2 > 0, dm2, 1.0) - cfg.cluster_distance, 0.0)
    return jnp.sum(jnp.where(valid, cfg.epsilon / (dn + cfg.epsilon), 0.0), axis=1)


@functools.partial(jax.jit, static_argnums=0)
def rnd_run(cfg: RNDConfig, state: RNDState, stream: jax.Array) -> RNDState:
    """Train RND on a (T, B, d) stream, one Adam step per (B, d) batch, in one ``lax.scan``."""
    return jax.lax.scan(lambda s, x: (rnd_step(cfg, s, x)[0], None), state, stream)[0]


@functools.partial(jax.jit, static_argnums=0)
def rnd_run_moments(
    cfg: RNDConfig, state: RNDState, err_rms: RunningMeanStd, stream: jax.Array
) -> tuple[RNDState, RunningMeanStd]:
    """:func:`rnd_run` that also merges every batch's prediction errors (before its Adam step) into the
    running moments ``err_rms`` of the error (NGU's ``mu_err``, ``sigma_err``)."""

    def body(carry, x):
        s, rms = carry
        s, est = rnd_step(cfg, s, x)
        return (s, rms.update(est.reward)), None

    return jax.lax.scan(body, (state, err_rms), stream)[0]


# ----------------------------------------------------------------------------------------------
# NGU proper: the episodic reward modulated by RND's life-long novelty


@dataclasses.dataclass(frozen=True)
class NGUConfig:
    """NGU's life-long novelty modulation (Badia et al. 2020, Sec. 2): ``max_modulation`` is the clip
    ``L = 5`` of ``alpha_t``; the episodic part is :class:`EpisodicConfig`, the RND part :class:`RNDConfig`."""

    max_modulation: float = 5.0  # L

    def __post_init__(self) -> None:
        if not self.max_modulation >= 1.0:
            raise ParameterError(f"NGUConfig: max_modulation={self.max_modulation!r} (L) must be >= 1")


def ngu_modulation(cfg: NGUConfig, err: jax.Array, err_mean: jax.Array, err_std: jax.Array) -> jax.Array:
    """``min(max(alpha, 1), L)`` with ``alpha = 1 + (err - err_mean) / err_std`` (NGU Sec. 2); pure.

    ``err``: RND's prediction errors; ``err_mean``/``err_std``: their running mean and standard deviation."""
    alpha = 1.0 + (err - err_mean) / err_std
    return jnp.clip(alpha, 1.0, cfg.max_modulation)


def ngu_reward(cfg: NGUConfig, r_episodic: jax.Array, err: jax.Array, err_mean: jax.Array,
               err_std: jax.Array) -> jax.Array:
    """NGU's intrinsic reward ``r_episodic * min(max(alpha, 1), L)`` (Badia et al. 2020, Sec. 2); pure."""
    return r_episodic * ngu_modulation(cfg, err, err_mean, err_std)
