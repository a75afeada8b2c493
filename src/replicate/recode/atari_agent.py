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

from replicate import resumable
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

    @jax.jit  # compiled once: op by op, the first init (the orthogonal init's QR of 3136 x 512) took twice as long
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


CURVES = ("frames", "rooms", "score_max", "score_mean", "episodes", "r_int_raw", "entropy", "return_running")
N_ROOMS = 1 << 13  # room ids stay below this: Montezuma's level * 24 + room (< 6400), Pitfall!'s screen byte (< 256)
_TALLY = ("best", "episodes", "compile_s", "collect_s", "update_s", "wall_s")  # host scalars carried between updates


class ReplayedEnvs:
    """A run's environments at the start of update ``at``, with the policy's current ``obs`` and ``first`` flags.

    The environments are a deterministic function of the run's seed and of the actions taken since the reset
    (their no-op draws come from their own seeded generators), and EnvPool's state cannot be saved: so a resumed
    run rebuilds them by replaying the logged actions (:meth:`seek`) and checks that the replay reproduced
    :meth:`fingerprint` (each environment's current episode score and observation checksum)."""

    def __init__(self, run: RunConfig, seed: int):
        self.run, self.seed = run, int(seed)
        self._start()

    def _start(self) -> None:
        self.vec = atari.make_vec(self.run.atari, self.run.num_envs, self.seed)
        self.obs = self.vec.reset()
        self.first = np.ones(self.run.num_envs, bool)
        self.at = 0

    def fingerprint(self) -> np.ndarray:
        """(2, E) float64: each environment's current episode score and the sum of its current observation."""
        obs_sum = np.asarray(self.obs).reshape(self.run.num_envs, -1).sum(axis=1, dtype=np.int64)
        return np.stack([self.vec.ep_return, obs_sum.astype(np.float64)])

    def seek(self, actions: np.ndarray, update: int, fingerprint: np.ndarray) -> None:
        """Bring the environments to the start of ``update`` (``actions``: the run's (updates, T, E) action log),
        replaying from the reset unless they are there; ``fingerprint``: what :meth:`fingerprint` gave there."""
        if self.at == update:
            return
        self._start()
        for a in np.asarray(actions[:update]).reshape(-1, self.run.num_envs):
            self.obs, _, self.first, *_ = self.vec.step(a)
        self.at = update
        if not np.array_equal(self.fingerprint(), fingerprint):
            raise RuntimeError(
                f"replaying the {update} logged updates of seed {self.seed} did not reproduce the environments' "
                f"episode scores and observations ({self.fingerprint().tolist()} vs {np.asarray(fingerprint).tolist()} "
                "checkpointed): the environments are not deterministic here; remove the checkpoint folder "
                "to start the run afresh")


def train(method: str, run: RunConfig, seed: int, *, log_every: int = 0, checkpoint_dir=None, every_s: float = 600.0,
          on_update: Callable[[int, int], None] | None = None) -> dict:
    """Train PPO with ``method`` (one of :data:`METHODS`) for ``run.total_frames`` frames.

    Returns NumPy curves per update (:data:`CURVES`): ``frames``, ``rooms`` (distinct rooms so far), ``score_max``
    (best episode score so far), ``score_mean`` (mean score of episodes that ended in the update, NaN if none),
    ``episodes``, ``r_int_raw``, ``entropy``, ``return_running`` (mean over the environments of the unclipped
    score of their unfinished episodes; informative where episodes outlast the budget, e.g. Pitfall!); plus the set
    of ``visited_rooms``, ``wall_s``, ``compile_s`` and the split of ``wall_s`` into ``collect_s`` (rollouts:
    environments + jitted act) and ``update_s`` (the jitted updates, the first one's compilation included), and
    the ``backend`` of the environments.

    **Resumable.** Each update is a chunk of :func:`replicate.resumable.run_chunks`: with ``checkpoint_dir`` the
    agent's state, the PRNG key, the curves so far and the log of every action taken are checkpointed (orbax) at
    most every ``every_s`` seconds and after the last update. A re-run restores the latest checkpoint, rebuilds
    the environments by replaying the logged actions from their seeded reset (:class:`ReplayedEnvs`; it costs the
    emulation time of the updates done, no network pass) and continues: the result equals the uninterrupted
    run's, timings aside (tested). ``on_update(done, total)`` is called after each update (before its checkpoint).
    """
    if method not in METHODS:
        raise ParameterError(f"Atari method {method!r}: choose one of {METHODS}")
    cfg = run.ppo_config()
    T, E, U = cfg.num_steps, run.num_envs, cfg.num_updates
    envs = ReplayedEnvs(run, seed)
    vec = envs.vec
    init, act, update = compiled_agent(method, cfg, run.bonus_config(), vec.n_actions, run.atari.size,
                                       vec.channels_first)
    key, k_init = jax.random.split(jax.random.PRNGKey(seed))
    visited0 = np.zeros(N_ROOMS, np.uint8)
    visited0[[int(x) for x in vec.rooms() if x >= 0]] = 1
    carry = {
        "agent": init(k_init, envs.obs),
        "key": key,
        "actions": np.zeros((U, T, E), np.uint8),  # ALE's action sets have at most 18 actions
        "visited": visited0,
        "curves": np.zeros((U, len(CURVES))),
        "tally": np.array([-np.inf, 0.0, 0.0, 0.0, 0.0, 0.0]),
        "envs": envs.fingerprint(),
    }

    def one_update(carry: dict, u: int) -> dict:
        t0 = time.perf_counter()
        envs.seek(carry["actions"], u, carry["envs"])
        tally = dict(zip(_TALLY, np.asarray(carry["tally"], np.float64).tolist()))
        curves = np.array(carry["curves"], np.float64)  # a copy: run_chunks' input stays untouched
        visited = set(np.flatnonzero(np.asarray(carry["visited"])).tolist())
        stats: dict[str, Any] = {"returns": []}
        tc = time.perf_counter()
        traj, envs.obs, envs.first, key = atari.collect(envs.vec, act, carry["agent"]["params"], envs.obs,
                                                        envs.first, carry["key"], T, visited, stats)
        traj["last_obs"] = envs.obs
        key, k_up = jax.random.split(key)
        tu = time.perf_counter()
        state, info = update(carry["agent"], traj, k_up)
        info = jax.device_get(info)
        envs.at = u + 1
        tally["collect_s"] += tu - tc
        tally["update_s"] += time.perf_counter() - tu
        if u == 0:
            tally["compile_s"] = time.perf_counter() - tu
        ended = stats["returns"]
        tally["episodes"] += len(ended)
        if ended:
            tally["best"] = max(tally["best"], max(ended))
        curves[u] = ((u + 1) * cfg.batch_size * run.atari.frame_skip, len(visited),
                     tally["best"] if np.isfinite(tally["best"]) else 0.0,
                     float(np.mean(ended)) if ended else np.nan, tally["episodes"], float(info["r_int_raw"]),
                     float(info["entropy"]), float(np.mean(envs.vec.ep_return)))
        if visited and max(visited) >= N_ROOMS:
            raise ValueError(f"room id {max(visited)} is outside the {N_ROOMS} ids train() tracks")
        rooms = np.zeros(N_ROOMS, np.uint8)
        rooms[sorted(visited)] = 1
        actions = np.array(carry["actions"])
        actions[u] = traj["action"]
        tally["wall_s"] += time.perf_counter() - t0
        if log_every and (u + 1) % log_every == 0:
            print(f"[{method}] update {u + 1}/{U}: {int(curves[u, 0])} frames, rooms {len(visited)}, "
                  f"best score {curves[u, 2]:.0f}, {tally['wall_s']:.0f} s", flush=True)
        if on_update is not None:
            on_update(u + 1, U)
        return {"agent": state, "key": key, "actions": actions, "visited": rooms, "curves": curves,
                "tally": np.array([tally[k] for k in _TALLY]), "envs": envs.fingerprint()}

    carry = resumable.run_chunks(carry, one_update, U, checkpoint_dir, every_s=every_s)
    curves, tally = np.asarray(carry["curves"], np.float64), dict(zip(_TALLY, np.asarray(carry["tally"]).tolist()))
    out = {k: curves[:, i].copy() for i, k in enumerate(CURVES)}
    out.update(
        method=method,
        visited_rooms=np.flatnonzero(np.asarray(carry["visited"])).tolist(),
        wall_s=tally["wall_s"],
        compile_s=tally["compile_s"],
        collect_s=tally["collect_s"],
        update_s=tally["update_s"],
        backend=run.atari.backend,
        n_actions=vec.n_actions,
        agent_steps=U * cfg.batch_size,
    )
    return out
