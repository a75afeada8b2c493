"""Atari for the exploration agents (RECODE II): an ALE adapter and a PPO loop with a jitted act and update.

Environment (:class:`AtariEnv`, :class:`VecAtari`): ``ale_py.ALEInterface`` driven directly from Python
(one emulator per parallel environment), with the standard DQN/NGU preprocessing done here (gymnasium's
``AtariPreprocessing`` needs OpenCV, which is not in this project's lock; ``ale_py.AtariVectorEnv`` does
not expose the RAM we need for room ids):

* frame skip 4 (the action repeated, rewards summed), the observation is the pixel-wise **max over the
  last two** raw frames (Mnih et al. 2015), grey-scale, resized to 84 x 84 (PIL's antialiased bilinear
  filter in place of OpenCV's area filter), a stack of the last 4 processed frames, ``uint8 (84, 84, 4)``;
* the RECODE paper's Atari protocol (that of NGU / Agent57 / R2D2): **no sticky actions**
  (``repeat_action_probability = 0``) and up to **30 random no-op** raw frames at the start of every
  episode; episodes end at game over or at 108,000 raw frames (30 minutes; truncation is treated as an
  end); a lost life does not end the episode; the minimal action set;
* extrinsic rewards for learning are clipped to [-1, 1] (DQN, RND); the unclipped game score is reported;
* room ids from RAM (:data:`ROOM_RAM`, :func:`room_id`):

  - Montezuma's Revenge: room RAM byte 3, level RAM byte 57 (as Go-Explore and the exploration literature read
    them, e.g. AtariARI's ``ram_annotations.py``: ``room_number=3``, ``level=57``); a room is ``(level, room)``,
    numbered ``level * 24 + room``;
  - Pitfall!: the screen is RAM byte 1 (address ``$81``), the 8-bit LFSR state from which David Crane's code
    derives every screen (255 non-zero values, one ring of 255 screens, a single level; the start screen is
    ``0xC4``; walking right steps the LFSR once, left once backwards, a tunnel screen three steps). Source: the
    6502 code quoted in S. Trenholme, "A 4096-byte jungle" (samiam.org/blog/20130606.html, 2013). Go-Explore
    (Ecoffet et al. 2021, ``goexplore_py/pitfall_env.py``) does *not* read a RAM byte for Pitfall: it tracks the
    room from jumps of Harry's pixel position. Verified here with the ROM bundled in ale-py 0.12 (see
    ``tests/rl/test_atari.py``): over scripted runs (right and left above ground, left through the tunnel), byte
    1 changed exactly on the frames where the screen changed (>= 2.9% of the pixels vs <= 1.4% on every other
    frame) and every change was one LFSR step (three in the tunnel), from ``0xC4`` to ``0x89``, ``0x12``
    (right) and ``0xE2``, ``0x71``, ``0x38``, ``0x47`` (left);
  - other games: no room id (-1).

Agent (:func:`train`): PPO with the Nature-CNN torso (Mnih et al. 2015: conv 32x8x8/4, 64x4x4/2, 64x3x3/1,
dense 512) shared by the policy and two value heads (extrinsic / intrinsic, RND). The environment steps
in Python; actions come from a jitted ``act``; after every rollout one jitted ``update`` computes the
bonus (:mod:`replicate.rl.bonus`: RECODE, RND, none), normalises it (:func:`replicate.rl.ppo.normalise_intrinsic`),
runs GAE (:func:`replicate.rl.ppo.gae`) on both streams and the PPO epochs (:func:`replicate.rl.ppo.ppo_loss`).
The bonuses see the newest frame of the (true next) observation, 2x2 average-pooled to 42 x 42 and
scaled to [0, 1] (an MLP-sized input; the papers use conv nets on 84 x 84 frames).
"""

from __future__ import annotations

import dataclasses
import time
import types
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant, orthogonal

from replicate.params import ParameterError
from replicate.rl import ppo


@dataclasses.dataclass(frozen=True)
class RoomRam:
    """Where a game keeps its room in the 128-byte RAM: ``room`` byte, optional ``level`` byte, rooms per level."""

    room: int
    level: int | None = None
    rooms_per_level: int = 256


ROOMS_PER_LEVEL = 24  # Montezuma's Revenge: rooms 0..23 per level
ROOM_RAM = {
    "montezuma_revenge": RoomRam(room=3, level=57, rooms_per_level=ROOMS_PER_LEVEL),
    "pitfall": RoomRam(room=1),  # the screen LFSR at $81: 255 screens in one ring, no level (module doc)
}
GAMES = tuple(ROOM_RAM)  # the games with a room id (the exploration notebooks need one)


@dataclasses.dataclass(frozen=True)
class AtariConfig:
    """The preprocessing protocol (defaults: the RECODE/NGU Atari protocol, see module doc)."""

    game: str = "montezuma_revenge"
    frame_skip: int = 4
    noop_max: int = 30
    repeat_action_probability: float = 0.0
    max_episode_frames: int = 108_000
    size: int = 84
    stack: int = 4

    def __post_init__(self) -> None:
        if self.frame_skip < 2:
            raise ParameterError(f"AtariConfig: frame_skip={self.frame_skip} must be >= 2 (max over the last two frames)")
        if self.noop_max < 0 or self.stack < 1 or self.size < 8:
            raise ParameterError(f"AtariConfig: need noop_max >= 0, stack >= 1, size >= 8, got {self}")
        if not 0.0 <= self.repeat_action_probability < 1.0:
            raise ParameterError(f"AtariConfig: repeat_action_probability={self.repeat_action_probability} must be in [0, 1)")


def max_pool_resize(frame_a: np.ndarray, frame_b: np.ndarray, size: int = 84) -> np.ndarray:
    """Pixel-wise max of two (210, 160) uint8 grey frames, resized to (size, size) uint8."""
    from PIL import Image

    m = np.maximum(frame_a, frame_b)
    return np.asarray(Image.fromarray(m).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def room_id(ram: np.ndarray, game: str = "montezuma_revenge") -> int:
    """``level * rooms_per_level + room`` from the 128-byte RAM (the room byte alone for games without a level
    byte, e.g. Pitfall!); -1 for games without a known room byte."""
    spec = ROOM_RAM.get(game)
    if spec is None:
        return -1
    level = int(ram[spec.level]) if spec.level is not None else 0
    return level * spec.rooms_per_level + int(ram[spec.room])


class AtariEnv:
    """One ALE emulator with the preprocessing of :class:`AtariConfig`; ``step`` does not auto-reset."""

    def __init__(self, cfg: AtariConfig, seed: int):
        from ale_py import ALEInterface, LoggerMode, roms

        ALEInterface.setLoggerMode(LoggerMode.Error)
        self.cfg = cfg
        self.ale = ALEInterface()
        self.ale.setInt("random_seed", int(seed) % (2**31 - 1))
        self.ale.setFloat("repeat_action_probability", float(cfg.repeat_action_probability))
        self.ale.setInt("frame_skip", 1)
        self.ale.setInt("max_num_frames_per_episode", int(cfg.max_episode_frames))
        rom = roms.get_rom_path(cfg.game)
        if rom is None:
            raise ParameterError(f"AtariConfig: game={cfg.game!r} is not a ROM bundled with ale-py; choose e.g. one "
                                 f"of {list(GAMES)} (rooms are tracked for those)")
        self.ale.loadROM(rom)
        self.actions = self.ale.getMinimalActionSet()
        self.rng = np.random.default_rng(seed)
        h, w = self.ale.getScreenDims()
        self._buf = [np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)]
        self.stack = np.zeros((cfg.size, cfg.size, cfg.stack), np.uint8)

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    def _frame(self) -> np.ndarray:
        return max_pool_resize(self._buf[0], self._buf[1], self.cfg.size)

    def reset(self) -> np.ndarray:
        self.ale.reset_game()
        noop = self.actions[0]
        for _ in range(int(self.rng.integers(1, self.cfg.noop_max + 1)) if self.cfg.noop_max else 0):
            self.ale.act(noop)
            if self.ale.game_over():
                self.ale.reset_game()
        self.ale.getScreenGrayscale(self._buf[0])
        self._buf[1][:] = self._buf[0]
        self.stack[:] = self._frame()[..., None]
        return self.stack.copy()

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        a = self.actions[int(action)]
        reward = 0.0
        k = self.cfg.frame_skip
        for i in range(k):
            reward += self.ale.act(a)
            if i >= k - 2:
                self.ale.getScreenGrayscale(self._buf[i - (k - 2)])
            if self.ale.game_over():
                if i < k - 2:  # ended early: the final screen counts as both pooled frames
                    self.ale.getScreenGrayscale(self._buf[0])
                    self._buf[1][:] = self._buf[0]
                elif i == k - 2:
                    self._buf[1][:] = self._buf[0]
                break
        self.stack = np.concatenate([self.stack[..., 1:], self._frame()[..., None]], axis=-1)
        return self.stack.copy(), float(reward), bool(self.ale.game_over())

    def room(self) -> int:
        return room_id(self.ale.getRAM(), self.cfg.game)


class VecAtari:
    """``E`` :class:`AtariEnv` with auto-reset; ``step`` returns the policy's next obs and the true next obs."""

    def __init__(self, cfg: AtariConfig, num_envs: int, seed: int):
        self.cfg = cfg
        self.envs = [AtariEnv(cfg, seed * 1000 + i) for i in range(num_envs)]
        self.n_actions = self.envs[0].n_actions
        self.ep_return = np.zeros(num_envs)
        self.ep_frames = np.zeros(num_envs, np.int64)

    def reset(self) -> np.ndarray:
        return np.stack([e.reset() for e in self.envs])

    def rooms(self) -> np.ndarray:
        return np.array([e.room() for e in self.envs], np.int32)

    def step(self, actions):
        obs, next_obs, rew, done, rooms, ended = [], [], [], [], [], []
        for i, (e, a) in enumerate(zip(self.envs, np.asarray(actions))):
            o, r, d = e.step(a)
            rooms.append(e.room())
            self.ep_return[i] += r
            next_obs.append(o)
            if d:
                ended.append(self.ep_return[i])
                self.ep_return[i] = 0.0
                o = e.reset()
            obs.append(o)
            rew.append(r)
            done.append(d)
        return (np.stack(obs), np.asarray(rew, np.float32), np.asarray(done, bool), np.stack(next_obs),
                np.asarray(rooms, np.int32), ended)


# ----------------------------------------------------------------------------------------------
# Network


class NatureActorCritic(nn.Module):
    """Nature-CNN torso (Mnih et al. 2015) -> logits, v_ext, v_int. Input uint8 (..., 84, 84, stack)."""

    n_actions: int

    @nn.compact
    def __call__(self, x):
        x = jnp.asarray(x, jnp.float32) / 255.0
        init = orthogonal(np.sqrt(2))
        x = nn.relu(nn.Conv(32, (8, 8), (4, 4), padding="VALID", kernel_init=init, bias_init=constant(0.0))(x))
        x = nn.relu(nn.Conv(64, (4, 4), (2, 2), padding="VALID", kernel_init=init, bias_init=constant(0.0))(x))
        x = nn.relu(nn.Conv(64, (3, 3), (1, 1), padding="VALID", kernel_init=init, bias_init=constant(0.0))(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        x = nn.relu(nn.Dense(512, kernel_init=init, bias_init=constant(0.0))(x))
        logits = nn.Dense(self.n_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(x)
        v_ext = nn.Dense(1, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="v_ext")(x)[..., 0]
        v_int = nn.Dense(1, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="v_int")(x)[..., 0]
        return logits, v_ext, v_int


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


# ----------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One Atari run: frames, PPO (``ppo`` overrides of :class:`replicate.rl.ppo.PPOConfig`), bonus constants."""

    total_frames: int = 100_000
    num_envs: int = 8
    num_steps: int = 128
    ppo: tuple = ()  # (name, value) pairs (hashable)
    embedding: str = "ap"
    embed_dim: int = 32
    memory_size: int = 5000
    recode_gamma: float = 0.999
    atari: AtariConfig = AtariConfig()

    def ppo_config(self) -> ppo.PPOConfig:
        batch = self.num_envs * self.num_steps
        steps = max(1, self.total_frames // (self.atari.frame_skip * batch)) * batch
        return ppo.PPOConfig(num_envs=self.num_envs, num_steps=self.num_steps, total_timesteps=steps, **dict(self.ppo))


def make_bonus(method: str, run: RunConfig, n_actions: int):
    from replicate.recode import memory as M
    from replicate.rl import bonus as Bn

    if method not in ("none", "rnd", "recode"):
        raise ParameterError(f"Atari method {method!r}: choose one of none, rnd, recode")
    env = bonus_env(n_actions, run.atari.size, run.atari.game)
    emb = Bn.EmbeddingConfig(run.embedding, dim=run.embed_dim, ap_hidden=(256,))
    return Bn.make_bonus(method, env, run.num_envs, embedding=emb,
                         recode=M.RecodeConfig(memory_size=run.memory_size, gamma=run.recode_gamma)), env


def make_agent(cfg: ppo.PPOConfig, n_actions: int, bonus, bonus_env_desc) -> tuple[Callable, Callable, Callable]:
    """``init(key, obs) -> state``, ``act(params, obs, key)`` and ``update(state, traj, key)``, jitted."""
    net = NatureActorCritic(n_actions)
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.learning_rate, eps=cfg.adam_eps))
    int_coef = cfg.int_coef if bonus is not None else 0.0
    int_weight = 1.0 if bonus is not None else 0.0

    def init(key, obs):
        k_net, k_bonus = jax.random.split(key)
        params = net.init(k_net, jnp.asarray(obs[:1]))
        return {"params": params, "opt_state": tx.init(params),
                "bonus": bonus.init(k_bonus, bonus_env_desc) if bonus is not None else (),
                "int_norm": ppo.int_norm_init(cfg.num_envs)}

    @jax.jit
    def act(params, obs, key):
        logits, v_ext, v_int = net.apply(params, obs)
        action = jax.random.categorical(key, logits)
        logp, _ = ppo.categorical_logp_entropy(logits, action)
        return action, logp, v_ext, v_int

    @jax.jit
    def update(state, traj, key):
        """``traj``: obs (T, E, 84, 84, S) uint8, next_frame (T, E, 84, 84) uint8, action, logp, v_ext,
        v_int, reward (clipped), done, first (T, E); last_obs (E, 84, 84, S)."""
        k_bonus, k_perm = jax.random.split(key)
        _, last_v_ext, last_v_int = net.apply(state["params"], traj["last_obs"])
        if bonus is not None:
            ro = ppo.Rollout(bonus_features(traj["obs"][..., -1]), traj["action"], traj["logp"], traj["v_ext"],
                             traj["v_int"], traj["reward"], traj["done"], traj["first"],
                             bonus_features(traj["next_frame"]), jnp.zeros_like(traj["action"]),
                             jnp.zeros_like(traj["done"]))
            bonus_state, r_raw, binfo = bonus.intrinsic(state["bonus"], ro, k_bonus)
            int_norm, r_int = ppo.normalise_intrinsic(state["int_norm"], r_raw, cfg.gamma_int, cfg.int_norm)
        else:
            bonus_state, binfo, int_norm = state["bonus"], {}, state["int_norm"]
            r_raw = r_int = jnp.zeros_like(traj["reward"])
        params, opt_state, losses = ppo.learn(cfg, net, tx, state["params"], state["opt_state"],
                                              types.SimpleNamespace(**traj), r_int, last_v_ext, last_v_int,
                                              int_coef, int_weight, k_perm)
        info = {"r_int_raw": jnp.mean(r_raw), "r_int": jnp.mean(r_int), **{k: jnp.mean(v) for k, v in losses.items()}, **binfo}
        return {"params": params, "opt_state": opt_state, "bonus": bonus_state, "int_norm": int_norm}, info

    return init, act, update


def collect(vec: VecAtari, act: Callable, params, obs, first, key, num_steps: int, visited: set, stats: dict):
    """One rollout of ``num_steps`` steps of every environment (Python loop, jitted ``act``).

    Returns (traj dict of NumPy arrays, next obs, next first, key). ``visited`` gains the rooms reached;
    ``stats['returns']`` the unclipped scores of the episodes that ended.
    """
    T, E = num_steps, len(vec.envs)
    s = vec.cfg.size
    traj = {"obs": np.zeros((T, E, s, s, vec.cfg.stack), np.uint8), "next_frame": np.zeros((T, E, s, s), np.uint8),
            "action": np.zeros((T, E), np.int32), "logp": np.zeros((T, E), np.float32),
            "v_ext": np.zeros((T, E), np.float32), "v_int": np.zeros((T, E), np.float32),
            "reward": np.zeros((T, E), np.float32), "done": np.zeros((T, E), bool), "first": np.zeros((T, E), bool)}
    for t in range(T):
        key, k = jax.random.split(key)
        a, lp, ve, vi = jax.device_get(act(params, obs, k))
        traj["obs"][t], traj["first"][t] = obs, first
        traj["action"][t], traj["logp"][t], traj["v_ext"][t], traj["v_int"][t] = a, lp, ve, vi
        obs, r, d, nxt, rooms, ended = vec.step(a)
        traj["reward"][t] = np.clip(r, -1.0, 1.0)
        traj["done"][t] = d
        traj["next_frame"][t] = nxt[..., -1]
        visited.update(int(x) for x in rooms if x >= 0)
        stats["returns"].extend(ended)
        first = d
    return traj, obs, first, key


def train(method: str, run: RunConfig, seed: int, *, log_every: int = 0) -> dict:
    """Train PPO with ``method`` ('none' | 'rnd' | 'recode') for ``run.total_frames`` frames.

    Returns NumPy curves per update: ``frames``, ``rooms`` (distinct rooms so far), ``score_max`` (best
    episode score so far), ``score_mean`` (mean score of episodes that ended in the update, NaN if none),
    ``episodes``, ``r_int_raw``, ``return_running`` (mean over the environments of the unclipped score of their
    unfinished episodes; informative where episodes outlast the budget, e.g. Pitfall!); plus the set of ``visited_rooms``, ``wall_s`` and ``compile_s``.
    """
    cfg = run.ppo_config()
    vec = VecAtari(run.atari, run.num_envs, seed)
    bonus, benv = make_bonus(method, run, vec.n_actions)
    init, act, update = make_agent(cfg, vec.n_actions, bonus, benv)
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    obs = vec.reset()
    state = init(k_init, obs)
    first = np.ones(run.num_envs, bool)
    visited = set(int(x) for x in vec.rooms() if x >= 0)
    stats: dict[str, Any] = {"returns": []}
    curves = {k: [] for k in ("frames", "rooms", "score_max", "score_mean", "episodes", "r_int_raw", "entropy",
                              "return_running")}
    best, n_eps = -np.inf, 0
    t0 = time.perf_counter()
    compile_s = 0.0
    for u in range(cfg.num_updates):
        traj, obs, first, key = collect(vec, act, state["params"], obs, first, key, cfg.num_steps, visited, stats)
        traj["last_obs"] = obs
        key, k_up = jax.random.split(key)
        tu = time.perf_counter()
        state, info = update(state, traj, k_up)
        info = jax.device_get(info)
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
            print(f"[{method}] update {u + 1}/{cfg.num_updates}: {curves['frames'][-1]} frames, rooms {len(visited)}, "
                  f"best score {curves['score_max'][-1]:.0f}, {time.perf_counter() - t0:.0f} s", flush=True)
    out = {k: np.asarray(v, np.float64) for k, v in curves.items()}
    out.update(method=method, visited_rooms=sorted(visited), wall_s=time.perf_counter() - t0, compile_s=compile_s,
               n_actions=vec.n_actions, agent_steps=cfg.num_updates * cfg.batch_size)
    return out
