"""RECODE's Atari agent (notebook 13): PPO with an exploration bonus (RECODE, RND, EMM, NGU or none) on ALE games.

PPO with the Nature-CNN torso (:class:`replicate.nn.actor_critic.NatureActorCritic`: Mnih et al. 2015) shared
by the policy and two value heads (extrinsic / intrinsic, RND). The environments (:mod:`replicate.rl.atari`; by
default EnvPool's C++ pool, :class:`~replicate.rl.atari.PoolAtari`, ``RunConfig.atari.backend`` chooses) are
stepped by :func:`replicate.rl.atari.collect`, a loop over time steps that overlaps one group of emulators with
the jitted ``act`` (one PRNG key per environment) on another; after every rollout one jitted ``update`` computes the
bonus (:mod:`replicate.recode.bonus`: RECODE, RND, EMM, NGU, none; EMM's/NGU's episodic memory has NGU's
constants and capacity, 30 000), normalises it
(:func:`replicate.rl.ppo.normalise_intrinsic`), runs GAE (:func:`replicate.rl.ppo.gae`) on both streams and
the PPO epochs (:func:`replicate.rl.ppo.learn`). The bonuses see the newest frame of the (true next)
observation, 2x2 average-pooled to 42 x 42 and scaled to [0, 1] (an MLP-sized input; the papers use conv nets
on 84 x 84 frames); RND, and NGU's RND factor, take these features, EMM/NGU/RECODE their embedding.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import types
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from replicate.nn import actor_critic
from replicate.params import ParameterError
from replicate.recode import agents, bonus
from replicate.rl import atari, ppo

METHODS = ("none", "rnd", "emm", "ngu", "recode")  # the bonuses the Atari agent supports (counts needs the true state)


def bonus_features(frames) -> jax.Array:
    """(..., 84, 84) uint8 newest frames -> (..., 42 * 42) float32 in [0, 1] (2x2 average pooling)."""
    f = jnp.asarray(frames, jnp.float32) / 255.0
    s = f.shape
    f = f.reshape(s[:-2] + (s[-2] // 2, 2, s[-1] // 2, 2)).mean(axis=(-3, -1))
    return f.reshape(s[:-2] + (-1,))


def bonus_env(n_actions: int, size: int = 84, game: str = "montezuma_revenge"):
    """The environment description the bonuses need (obs_dim of the features, actions)."""
    return types.SimpleNamespace(name=f"atari-{game}", obs_dim=(size // 2) ** 2, n_actions=int(n_actions),
                                 n_states=None, max_episode_steps=None)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One Atari run: frames, PPO (``ppo`` overrides of :class:`replicate.rl.ppo.PPOConfig` as ``(name, value)``
    pairs, hashable), the bonus embedding and RECODE's memory (``memory_size``/``recode_gamma``/``memory_update``:
    ``None`` takes :class:`~replicate.recode.memory.RecodeConfig`'s default; notebook 13 passes its own), the ALE
    protocol."""

    total_frames: int = 100_000
    num_envs: int = 8
    num_steps: int = 128
    ppo: tuple[tuple[str, Any], ...] = ()
    embedding: str = "ap"
    embed_dim: int = 32
    memory_size: int | None = None
    recode_gamma: float | None = None
    memory_update: str | None = None
    atari: atari.AtariConfig = atari.AtariConfig()

    def __post_init__(self) -> None:
        if self.embedding not in bonus.EMBEDDINGS:
            raise ParameterError(f"RunConfig: embedding={self.embedding!r}; choose one of {bonus.EMBEDDINGS}")
        agents.recode_config(self.memory_size, self.recode_gamma, self.memory_update)  # RecodeConfig validates them
        self.atari.check_num_envs(self.num_envs)

    def ppo_config(self) -> ppo.PPOConfig:
        batch = self.num_envs * self.num_steps
        steps = max(1, self.total_frames // (self.atari.frame_skip * batch)) * batch
        # The Nature CNN's gradients run ~10x faster on XLA:CPU outside a scan (PPOConfig.unroll_learn).
        return ppo.PPOConfig(num_envs=self.num_envs, num_steps=self.num_steps, total_timesteps=steps,
                             **{"unroll_learn": True, **dict(self.ppo)})

    def bonus_config(self) -> bonus.BonusConfig:
        """The bonus settings of this run (embedding MLP width 256 for the 42 x 42 frames)."""
        return bonus.BonusConfig(embedding=bonus.EmbeddingConfig(self.embedding, dim=self.embed_dim, ap_hidden=(256,)),
                                 recode=agents.recode_config(self.memory_size, self.recode_gamma,
                                                                          self.memory_update))


def make_agent(cfg: ppo.PPOConfig, n_actions: int, agent_bonus, bonus_env_desc, *,
               channels_first: bool = False) -> tuple[Callable, Callable, Callable]:
    """``init(key, obs) -> state``, ``act(params, obs, keys)`` and ``update(state, traj, key)``, jitted.

    ``act`` draws each environment's action with its own key (``keys``: one per row of ``obs``, see
    :func:`replicate.rl.atari.env_keys`). ``channels_first``: observations come as ``(..., stack, 84, 84)``
    (EnvPool's layout, :attr:`replicate.rl.atari.PoolAtari.channels_first`) and are transposed inside the jitted
    functions to the network's ``(..., 84, 84, stack)``."""
    net = actor_critic.NatureActorCritic(n_actions)
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.learning_rate, eps=cfg.adam_eps))
    int_coef = cfg.int_coef if agent_bonus is not None else 0.0
    int_weight = 1.0 if agent_bonus is not None else 0.0

    def layout(obs):
        return jnp.moveaxis(jnp.asarray(obs), -3, -1) if channels_first else jnp.asarray(obs)

    def init(key, obs):
        k_net, k_bonus = jax.random.split(key)
        params = net.init(k_net, layout(obs[:1]))
        return {"params": params, "opt_state": tx.init(params),
                "bonus": agent_bonus.init(k_bonus, bonus_env_desc) if agent_bonus is not None else (),
                "int_norm": ppo.int_norm_init(cfg.num_envs)}

    @jax.jit
    def act(params, obs, keys):
        logits, v_ext, v_int = net.apply(params, layout(obs))
        action = jax.vmap(jax.random.categorical)(keys, logits)
        logp, _ = ppo.categorical_logp_entropy(logits, action)
        return action, logp, v_ext, v_int

    @jax.jit
    def update(state, traj, key):
        """``traj``: obs (T, E, 84, 84, S) uint8 (or (T, E, S, 84, 84) with ``channels_first``), next_frame
        (T, E, 84, 84) uint8, action, logp, v_ext, v_int, reward (clipped), done, first (T, E); last_obs (E, ...)."""
        k_bonus, k_perm = jax.random.split(key)
        traj = {**traj, "obs": layout(traj["obs"]), "last_obs": layout(traj["last_obs"])}
        _, last_v_ext, last_v_int = net.apply(state["params"], traj["last_obs"])
        if agent_bonus is not None:
            ro = ppo.Rollout(bonus_features(traj["obs"][..., -1]), traj["action"], traj["logp"], traj["v_ext"],
                             traj["v_int"], traj["reward"], traj["done"], traj["first"],
                             bonus_features(traj["next_frame"]), jnp.zeros_like(traj["action"]),
                             jnp.zeros_like(traj["done"]))
            bonus_state, r_raw, binfo = agent_bonus.intrinsic(state["bonus"], ro, k_bonus)
            int_norm, r_int = ppo.normalise_intrinsic(state["int_norm"], r_raw, cfg.gamma_int, cfg.int_norm)
        else:
            bonus_state, binfo, int_norm = state["bonus"], {}, state["int_norm"]
            r_raw = r_int = jnp.zeros_like(traj["reward"])
        params, opt_state, losses = ppo.learn(cfg, net, tx, state["params"], state["opt_state"],
                                              types.SimpleNamespace(**traj), r_int, last_v_ext, last_v_int,
                                              int_coef, int_weight, k_perm)
        info = {
            "r_int_raw": jnp.mean(r_raw),
            "r_int": jnp.mean(r_int),
            **{k: jnp.mean(v) for k, v in losses.items()},
            **binfo,
        }
        return {"params": params, "opt_state": opt_state, "bonus": bonus_state, "int_norm": int_norm}, info

    return init, act, update


@functools.lru_cache(maxsize=8)
def compiled_agent(method: str, cfg: ppo.PPOConfig, bonus_cfg: bonus.BonusConfig, n_actions: int, size: int,
                   channels_first: bool):
    """``(init, act, update)`` of ``method`` (:func:`make_agent`), built once per process for these settings: the
    seeds and games of a run share the jitted functions, so only the first run of a method compiles them (the
    seed and the game enter through the keys and the environments, never the program; the bonus environment's
    name, ``atari-any``, is informational)."""
    benv = bonus_env(n_actions, size, game="any")
    agent_bonus = bonus.make_bonus(method, benv, cfg.num_envs, bonus_cfg)
    return make_agent(cfg, n_actions, agent_bonus, benv, channels_first=channels_first)


def train(method: str, run: RunConfig, seed: int, *, log_every: int = 0) -> dict:
    """Train PPO with ``method`` (one of :data:`METHODS`) for ``run.total_frames`` frames.

    Returns NumPy curves per update: ``frames``, ``rooms`` (distinct rooms so far), ``score_max`` (best
    episode score so far), ``score_mean`` (mean score of episodes that ended in the update, NaN if none),
    ``episodes``, ``r_int_raw``, ``return_running`` (mean over the environments of the unclipped score of their
    unfinished episodes; informative where episodes outlast the budget, e.g. Pitfall!); plus the set of
    ``visited_rooms``, ``wall_s``, ``compile_s`` and the split of ``wall_s`` into ``collect_s`` (rollouts:
    environments + jitted act) and ``update_s`` (the jitted updates, the first one's compilation included), and
    the ``backend`` of the environments.
    """
    if method not in METHODS:
        raise ParameterError(f"Atari method {method!r}: choose one of {METHODS}")
    cfg = run.ppo_config()
    vec = atari.make_vec(run.atari, run.num_envs, seed)
    init, act, update = compiled_agent(method, cfg, run.bonus_config(), vec.n_actions, run.atari.size,
                                       vec.channels_first)
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    obs = vec.reset()
    state = init(k_init, obs)
    first = np.ones(run.num_envs, bool)
    visited = set(int(x) for x in vec.rooms() if x >= 0)
    stats: dict[str, Any] = {"returns": []}
    curves = {
        k: []
        for k in ("frames", "rooms", "score_max", "score_mean", "episodes", "r_int_raw", "entropy", "return_running")
    }
    best, n_eps = -np.inf, 0
    t0 = time.perf_counter()
    compile_s = collect_s = update_s = 0.0
    for u in range(cfg.num_updates):
        tc = time.perf_counter()
        traj, obs, first, key = atari.collect(vec, act, state["params"], obs, first, key, cfg.num_steps, visited, stats)
        traj["last_obs"] = obs
        key, k_up = jax.random.split(key)
        tu = time.perf_counter()
        state, info = update(state, traj, k_up)
        info = jax.device_get(info)
        collect_s, update_s = collect_s + tu - tc, update_s + time.perf_counter() - tu
        if u == 0:
            compile_s = time.perf_counter() - tu
        ended = stats["returns"]
        stats["returns"] = []
        n_eps += len(ended)
        if ended:
            best = max(best, max(ended))
        curves["frames"].append((u + 1) * cfg.batch_size * run.atari.frame_skip)
        curves["rooms"].append(len(visited))
        curves["score_max"].append(best if np.isfinite(best) else 0.0)
        curves["score_mean"].append(float(np.mean(ended)) if ended else np.nan)
        curves["episodes"].append(n_eps)
        curves["r_int_raw"].append(float(info["r_int_raw"]))
        curves["entropy"].append(float(info["entropy"]))
        curves["return_running"].append(float(np.mean(vec.ep_return)))
        if log_every and (u + 1) % log_every == 0:
            print(
                f"[{method}] update {u + 1}/{cfg.num_updates}: {curves['frames'][-1]} frames, rooms {len(visited)}, "
                f"best score {curves['score_max'][-1]:.0f}, {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
    out = {k: np.asarray(v, np.float64) for k, v in curves.items()}
    out.update(
        method=method,
        visited_rooms=sorted(visited),
        wall_s=time.perf_counter() - t0,
        compile_s=compile_s,
        collect_s=collect_s,
        update_s=update_s,
        backend=run.atari.backend,
        n_actions=vec.n_actions,
        agent_steps=cfg.num_updates * cfg.batch_size,
    )
    return out
