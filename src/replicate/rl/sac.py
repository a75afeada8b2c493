"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv 1812.05905), jitted, for training the experts that
generate the PAC datasets (our substitute for the paper's pre-existing data sources).

Standard SAC: tanh-squashed Gaussian actor, twin Q critics with Polyak-averaged targets, automatic
entropy tuning towards ``target_entropy = -action_dim`` (Haarnoja et al. 2018b, Alg. 1, Eq. 18).
The replay buffer lives on the device; environment steps are collected in Python and every
``update_every`` steps the same number of gradient updates runs in one jitted ``lax.scan``.
Actor snapshots are taken at the requested environment steps (policies of increasing quality).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from replicate import io

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """SAC hyper-parameters (defaults: Haarnoja et al. 2018b, Table 1, except sizes for CPU)."""

    hidden: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    buffer_size: int = 200_000
    warmup_steps: int = 1000
    update_every: int = 50
    init_temperature: float = 0.1


class Actor(nn.Module):
    action_dim: int
    hidden: int

    @nn.compact
    def __call__(self, obs):
        h = nn.relu(nn.Dense(self.hidden)(obs))
        h = nn.relu(nn.Dense(self.hidden)(h))
        mean = nn.Dense(self.action_dim)(h)
        log_std = jnp.clip(nn.Dense(self.action_dim)(h), -5.0, 2.0)
        return mean, log_std


class DoubleCritic(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, obs, act):
        x = jnp.concatenate([obs, act], -1)
        outs = []
        for _ in range(2):
            h = nn.relu(nn.Dense(self.hidden)(x))
            h = nn.relu(nn.Dense(self.hidden)(h))
            outs.append(nn.Dense(1)(h)[..., 0])
        return jnp.stack(outs)


def sample_action(actor: Actor, params, obs: Array, key: Array) -> tuple[Array, Array]:
    """Tanh-Gaussian sample and its log-probability (with the tanh change of variables)."""
    mean, log_std = actor.apply(params, obs)
    std = jnp.exp(log_std)
    u = mean + std * jax.random.normal(key, mean.shape)
    a = jnp.tanh(u)
    logp = jnp.sum(-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), -1)
    logp -= jnp.sum(2 * (jnp.log(2.0) - u - jax.nn.softplus(-2 * u)), -1)
    return a, logp


class SACState(NamedTuple):
    actor: Any
    critic: Any
    target_critic: Any
    log_alpha: Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any


class Buffer(NamedTuple):
    obs: Array
    act: Array
    rew: Array
    disc: Array
    next_obs: Array
    size: Array
    ptr: Array


def make_buffer(capacity: int, obs_dim: int, act_dim: int) -> Buffer:
    z = lambda *s: jnp.zeros(s, jnp.float32)  # noqa: E731
    return Buffer(z(capacity, obs_dim), z(capacity, act_dim), z(capacity), z(capacity), z(capacity, obs_dim),
                  jnp.int32(0), jnp.int32(0))


@jax.jit
def buffer_add(buf: Buffer, obs, act, rew, disc, next_obs) -> Buffer:
    """Append a chunk (rows ring-buffered)."""
    cap = buf.obs.shape[0]
    idx = (buf.ptr + jnp.arange(obs.shape[0])) % cap
    return Buffer(
        buf.obs.at[idx].set(obs), buf.act.at[idx].set(act), buf.rew.at[idx].set(rew), buf.disc.at[idx].set(disc),
        buf.next_obs.at[idx].set(next_obs), jnp.minimum(buf.size + obs.shape[0], cap), (buf.ptr + obs.shape[0]) % cap,
    )


class SAC:
    """SAC agent for one task: holds the modules, optimisers and jitted functions."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: SACConfig = SACConfig()):
        self.cfg, self.obs_dim, self.action_dim = cfg, obs_dim, action_dim
        self.actor = Actor(action_dim, cfg.hidden)
        self.critic = DoubleCritic(cfg.hidden)
        self.opt = optax.adam(cfg.lr)
        self.target_entropy = -float(action_dim)
        self._act = jax.jit(self._act_impl, static_argnames="deterministic")
        self._update_many = jax.jit(self._update_many_impl, static_argnames="num")

    def init(self, key: Array) -> SACState:
        k1, k2 = jax.random.split(key)
        o, a = jnp.zeros((1, self.obs_dim)), jnp.zeros((1, self.action_dim))
        actor = self.actor.init(k1, o)
        critic = self.critic.init(k2, o, a)
        log_alpha = jnp.log(jnp.float32(self.cfg.init_temperature))
        opt = self.opt
        return SACState(actor, critic, critic, log_alpha, opt.init(actor), opt.init(critic), opt.init(log_alpha))

    def _act_impl(self, actor_params, obs, key, deterministic: bool = False):
        if deterministic:
            return jnp.tanh(self.actor.apply(actor_params, obs)[0])
        return sample_action(self.actor, actor_params, obs, key)[0]

    def act(self, actor_params, obs: np.ndarray, key: Array, deterministic: bool = False) -> np.ndarray:
        return np.asarray(self._act(actor_params, jnp.asarray(obs), key, deterministic=deterministic))

    def _update(self, state: SACState, batch, key):
        cfg = self.cfg
        obs, act, rew, disc, nxt = batch
        k1, k2 = jax.random.split(key)
        alpha = jnp.exp(state.log_alpha)
        # Critic: soft Bellman target with the clipped double-Q minimum (Eq. 3 with twin critics).
        na, nlogp = sample_action(self.actor, state.actor, nxt, k1)
        tq = jnp.min(self.critic.apply(state.target_critic, nxt, na), axis=0)
        target = jax.lax.stop_gradient(rew + cfg.gamma * disc * (tq - alpha * nlogp))

        def critic_loss(p):
            q = self.critic.apply(p, obs, act)
            return jnp.mean((q - target[None]) ** 2)

        lc, gc = jax.value_and_grad(critic_loss)(state.critic)
        upd, copt = self.opt.update(gc, state.critic_opt)
        critic = optax.apply_updates(state.critic, upd)

        # Actor: minimise alpha log pi - min Q (Eq. 7 with reparameterisation).
        def actor_loss(p):
            a, logp = sample_action(self.actor, p, obs, k2)
            q = jnp.min(self.critic.apply(critic, obs, a), axis=0)
            return jnp.mean(alpha * logp - q), logp

        (la, logp), ga = jax.value_and_grad(actor_loss, has_aux=True)(state.actor)
        upd, aopt = self.opt.update(ga, state.actor_opt)
        actor = optax.apply_updates(state.actor, upd)
        # Temperature (Eq. 18).
        gl = jax.grad(lambda la_: -jnp.mean(la_ * jax.lax.stop_gradient(logp + self.target_entropy)))(state.log_alpha)
        upd, lopt = self.opt.update(gl, state.alpha_opt)
        log_alpha = optax.apply_updates(state.log_alpha, upd)
        target_critic = optax.incremental_update(critic, state.target_critic, cfg.tau)
        new = SACState(actor, critic, target_critic, log_alpha, aopt, copt, lopt)
        return new, jnp.stack([lc, la, alpha])

    def _update_many_impl(self, state: SACState, buf: Buffer, key, num: int):
        def body(s, k):
            ki, ku = jax.random.split(k)
            idx = jax.random.randint(ki, (self.cfg.batch_size,), 0, buf.size)
            batch = (buf.obs[idx], buf.act[idx], buf.rew[idx], buf.disc[idx], buf.next_obs[idx])
            return self._update(s, batch, ku)

        state, info = jax.lax.scan(body, state, jax.random.split(key, num))
        return state, info[-1]

    def update_many(self, state: SACState, buf: Buffer, key: Array, num: int):
        return self._update_many(state, buf, key, num=num)


def evaluate(agent: SAC, actor_params, env_fn: Callable[[int], Any], episodes: int, seed: int,
             deterministic: bool = True) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes (fresh env per seed)."""
    key = jax.random.PRNGKey(seed)
    out = []
    for i in range(episodes):
        env = env_fn(seed + i)
        obs, ret, last = env.reset(), 0.0, False
        while not last:
            key, k = jax.random.split(key)
            st = env.step(agent.act(actor_params, obs[None], k, deterministic)[0])
            obs, ret, last = st.obs, ret + st.reward, st.last
        out.append(ret)
    return np.asarray(out)


def run_steps(
    agent: SAC,
    state: SACState,
    buf: Buffer,
    env,
    num_steps: int,
    key: Array,
    rng: np.random.Generator,
    *,
    start_step: int = 0,
    obs: np.ndarray | None = None,
    ep_ret: float = 0.0,
) -> tuple[SACState, Buffer, Array, np.ndarray, float, list[dict[str, float]]]:
    """``num_steps`` agent steps of SAC on ``env``: act (uniform random while the global step is within
    ``cfg.warmup_steps``, then the stochastic policy), store every transition, and every ``update_every`` steps
    run as many gradient updates (once the warm-up is over) in one jitted ``lax.scan``.

    The global step counter starts after ``start_step`` (so warm-up and logging continue across calls); with
    ``obs=None`` the environment is reset first, otherwise the episode in progress (``obs``, its return so far
    ``ep_ret``) goes on. Returns the new state, buffer and key, the episode in progress (``obs``, ``ep_ret``) and a
    log ``[{"step", "return"}, ...]`` of the episodes that ended.
    """
    cfg = agent.cfg
    log: list[dict[str, float]] = []
    chunk: list[tuple] = []
    if obs is None:
        obs, ep_ret = env.reset(), 0.0
    end = start_step + num_steps
    for t in range(start_step + 1, end + 1):
        if t <= cfg.warmup_steps:
            a = rng.uniform(-1, 1, env.action_dim).astype(np.float32)
        else:
            key, k = jax.random.split(key)
            a = agent.act(state.actor, obs[None], k)[0]
        st = env.step(a)
        chunk.append((obs, a, st.reward, st.discount, st.obs))
        ep_ret += st.reward
        obs = st.obs
        if st.last:
            log.append({"step": t, "return": ep_ret})
            obs, ep_ret = env.reset(), 0.0
        if len(chunk) == cfg.update_every or t == end:
            cols = [np.asarray(c, np.float32) for c in zip(*chunk)]
            buf = buffer_add(buf, *cols)
            n = len(chunk)
            chunk = []
            if t >= cfg.warmup_steps:
                key, k = jax.random.split(key)
                state, _ = agent.update_many(state, buf, k, n)
    return state, buf, key, obs, ep_ret, log


def train(
    env,
    total_steps: int,
    key: Array,
    cfg: SACConfig = SACConfig(),
    snapshot_steps: tuple[int, ...] = (),
) -> tuple[SAC, SACState, dict[int, Any], list[dict[str, float]]]:
    """Train SAC on ``env`` (a :class:`replicate.rl.dmc.DMCEnv`) for ``total_steps`` agent steps in one go
    (:func:`run_steps`; the resumable, evaluated loop of the PAC experts is :func:`replicate.pac.experts.train_expert`).

    Returns the agent, its final state, ``{step: actor params}`` snapshots (the final policy is
    always included under ``total_steps``) and a log of episode returns during training.
    """
    if total_steps < 1:
        raise ValueError("total_steps must be >= 1")
    agent = SAC(env.obs_dim, env.action_dim, cfg)
    key, k0 = jax.random.split(key)
    state = agent.init(k0)
    buf = make_buffer(min(cfg.buffer_size, total_steps), env.obs_dim, env.action_dim)
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    snaps: dict[int, Any] = {}
    log: list[dict[str, float]] = []
    done, obs, ep_ret = 0, None, 0.0
    for stop in sorted({int(s) for s in snapshot_steps if 0 < s < total_steps} | {total_steps}):
        state, buf, key, obs, ep_ret, part = run_steps(agent, state, buf, env, stop - done, key, rng,
                                                       start_step=done, obs=obs, ep_ret=ep_ret)
        log += part
        done = stop
        snaps[stop] = jax.device_get(state.actor)
    return agent, state, snaps, log


def save_actor(path, actor_params, meta: dict[str, Any]) -> None:
    """Save actor parameters (flattened) plus JSON meta atomically as ``.npz``."""
    import json

    flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(jax.device_get(actor_params)).items()}
    io.write_npz(path, **flat, meta_json=np.array(json.dumps(meta, sort_keys=True)))


def load_actor(path) -> tuple[Any, dict[str, Any]]:
    import json

    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta_json"]))
        flat = {tuple(k.split("/")): jnp.asarray(f[k]) for k in f.files if k != "meta_json"}
    return traverse_util.unflatten_dict(flat), meta
