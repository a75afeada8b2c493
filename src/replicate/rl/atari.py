"""Atari environments for the exploration agents: two vector environments with room ids from RAM.

Two backends of one protocol, chosen by :attr:`AtariConfig.backend` (:func:`make_vec`):

* ``"envpool"`` (default, :class:`PoolAtari`): EnvPool's C++ Atari (``envpool.make(..., env_type="gymnasium")``,
  the environment of CleanRL's Atari scripts), which steps its emulators in C++ threads outside the GIL and
  gives the 128-byte RAM in ``info["ram"]``. The ``num_envs`` environments are split into
  :attr:`AtariConfig.groups` EnvPool instances (environment ``i`` seeded ``seed * 1000 + i`` whatever the
  grouping) so that :func:`collect` can overlap one group's emulation with the policy's forward pass on another
  group (``send``/``recv``); there is no Python loop over emulators.
* ``"ale"`` (the reference, :class:`VecAtari` of :class:`AtariEnv`): ``ale_py.ALEInterface`` driven from Python,
  one emulator after the other (``ale_py.AtariVectorEnv`` does not expose the RAM we need for room ids).

The protocol, identical in both (verified step by step in ``tests/rl/test_atari.py``):

* frame skip 4 (the action repeated, rewards summed), the observation is the pixel-wise **max over the
  last two** raw frames (Mnih et al. 2015), grey-scale (ALE's palette), resized to 84 x 84, a stack of the last
  4 processed frames. The resize filter is the one difference: EnvPool uses OpenCV's area filter (as DQN's
  preprocessing does), :class:`AtariEnv` PIL's antialiased bilinear filter (gymnasium's ``AtariPreprocessing``
  needs OpenCV, which is not in this project's core lock): 84 x 84 frames differ by about 1-2 grey levels on
  average, the un-resized 210 x 160 max-pooled frames are equal. Layout: ``VecAtari`` gives ``uint8
  (E, 84, 84, 4)``, ``PoolAtari`` EnvPool's ``uint8 (E, 4, 84, 84)`` (:attr:`channels_first`, the agent
  transposes inside its jitted functions);
* the RECODE paper's Atari protocol (that of NGU / Agent57 / R2D2): **no sticky actions**
  (``repeat_action_probability = 0``) and **1 to 30 random no-op** raw frames at the start of every episode
  (EnvPool's ``noop_max`` draws the same range when ``use_fire_reset=False``, which we set: the FIRE press after
  the no-ops that EnvPool adds by default is not in the protocol, so EnvPool needs ``noop_max >= 1``); the
  **minimal action set** (18 actions in Montezuma's Revenge and Pitfall!); a lost life does not end the episode;
  episodes end at game over or after 108,000 raw frames (30 minutes; truncation is treated as an end): ALE
  counts that limit from the reset including the no-ops, EnvPool in agent steps after them
  (``max_episode_steps = ceil(frames / frame_skip)``), a difference of at most 30 frames;
* extrinsic rewards for learning are clipped to [-1, 1] (DQN, RND) by the agent; the unclipped game score
  is what the environments return and what is reported;
* **auto-reset**: ``step``/``recv`` return, for an environment whose episode ended, ``done = True``, the
  terminal observation as ``next_obs`` (the "true next observation" a bonus must see) and, as the policy's
  next ``obs``, the first observation of a new episode, reset at once with fresh no-ops. EnvPool's own
  auto-reset (reset on the next ``step``, whose action is ignored) is not used: ``PoolAtari`` resets the ended
  environments explicitly (``reset(env_id)``), so both backends give the same transitions;
* room ids from RAM (:data:`ROOM_RAM`, :func:`room_id`, :func:`room_ids` for a batch):

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

Rollouts (:func:`collect`): a Python loop over the rollout's *time steps* only; per step and group, one jitted
``act`` call on the group's batch and one ``send``/``recv`` of the whole group; while a group's emulators run
(C++ threads, GIL released) the next group's actions are computed. The PPO agent with exploration bonuses that
uses them lives in :mod:`replicate.recode.atari_agent`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from typing import Callable

import jax
import numpy as np

from replicate.params import ParameterError


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


BACKENDS = ("envpool", "ale")  # AtariConfig.backend: EnvPool's C++ pool (default) | ale-py from Python (reference)


@dataclasses.dataclass(frozen=True)
class AtariConfig:
    """The preprocessing protocol (defaults: the RECODE/NGU Atari protocol, see module doc) and the backend.

    ``backend``: ``"envpool"`` (:class:`PoolAtari`, default) or ``"ale"`` (:class:`VecAtari`, the reference).
    ``groups``: EnvPool instances the environments are split into, so that :func:`collect` overlaps one group's
    emulation with the policy's forward pass on the other (``num_envs`` must be a multiple; the ``"ale"``
    backend steps all environments as one group whatever this says). Default 1: on a 2-core CPU the Nature CNN's
    forward pass on half the batch costs nearly as much as on the whole batch, and two pipelined groups
    collected 8-20% fewer steps/s than one (benchmarks/ppo_throughput.py); more cores or a GPU may change that.
    The trajectories do not depend on the grouping (tested)."""

    game: str = "montezuma_revenge"
    frame_skip: int = 4
    noop_max: int = 30
    repeat_action_probability: float = 0.0
    max_episode_frames: int = 108_000
    size: int = 84
    stack: int = 4
    backend: str = "envpool"
    groups: int = 1

    def __post_init__(self) -> None:
        if self.frame_skip < 2:
            raise ParameterError(
                f"AtariConfig: frame_skip={self.frame_skip} must be >= 2 (max over the last two frames)"
            )
        if self.noop_max < 0 or self.stack < 1 or self.size < 8:
            raise ParameterError(f"AtariConfig: need noop_max >= 0, stack >= 1, size >= 8, got {self}")
        if not 0.0 <= self.repeat_action_probability < 1.0:
            raise ParameterError(
                f"AtariConfig: repeat_action_probability={self.repeat_action_probability} must be in [0, 1)"
            )
        if self.backend not in BACKENDS:
            raise ParameterError(f"AtariConfig: backend={self.backend!r}; choose one of {BACKENDS}")
        if self.groups < 1:
            raise ParameterError(f"AtariConfig: groups={self.groups} must be >= 1")
        if self.backend == "envpool":
            if self.noop_max < 1:
                raise ParameterError(
                    "AtariConfig: backend='envpool' always plays 1..noop_max no-op frames; set noop_max >= 1 "
                    "(noop_max=1: exactly one) or backend='ale' for no no-ops at all"
                )
            if importlib.util.find_spec("envpool") is None:
                raise ParameterError(
                    "AtariConfig: backend='envpool' needs the envpool package (the project's `rl` extra: "
                    "pip install -e '.[rl]'); or set backend='ale' (ale-py, slower)"
                )

    def check_num_envs(self, num_envs: int) -> None:
        """Raise :class:`ParameterError` unless ``num_envs`` environments can be split into this config's groups."""
        if num_envs < 1:
            raise ParameterError(f"AtariConfig: num_envs={num_envs} must be >= 1")
        if self.backend == "envpool" and num_envs % self.groups:
            raise ParameterError(
                f"AtariConfig: num_envs={num_envs} is not a multiple of groups={self.groups}; change num_envs "
                f"or set groups to a divisor of it (groups=1: no overlap of emulation and acting)"
            )


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


def room_ids(rams: np.ndarray, game: str = "montezuma_revenge") -> np.ndarray:
    """:func:`room_id` of a batch of RAMs ``(..., 128)`` uint8 -> int32 ``(...)``, without a Python loop."""
    rams = np.asarray(rams)
    spec = ROOM_RAM.get(game)
    if spec is None:
        return np.full(rams.shape[:-1], -1, np.int32)
    room = rams[..., spec.room].astype(np.int32)
    if spec.level is None:
        return room
    return rams[..., spec.level].astype(np.int32) * spec.rooms_per_level + room


def envpool_task(game: str) -> str:
    """EnvPool's task id of an ale-py ROM name (``montezuma_revenge`` -> ``MontezumaRevenge-v5``), checked."""
    import envpool

    task = "".join(w.capitalize() for w in game.split("_")) + "-v5"
    if task not in envpool.list_all_envs():
        raise ParameterError(
            f"AtariConfig: game={game!r} has no EnvPool task {task!r}; choose e.g. one of {list(GAMES)} "
            f"(rooms are tracked for those)"
        )
    return task


def envpool_options(cfg: AtariConfig) -> dict:
    """The ``envpool.make`` keyword arguments of the protocol (module doc): what each backend does the same way."""
    return {
        "env_type": "gymnasium",
        "frame_skip": cfg.frame_skip,
        "noop_max": cfg.noop_max,
        "use_fire_reset": False,  # no FIRE after the no-ops (not in the protocol; ale's AtariEnv has none)
        "repeat_action_probability": float(cfg.repeat_action_probability),
        "full_action_space": False,  # the minimal action set, as AtariEnv
        "episodic_life": False,
        "zero_discount_on_life_loss": False,
        "reward_clip": False,  # the agent clips; the unclipped score is reported
        "max_episode_steps": math.ceil(cfg.max_episode_frames / cfg.frame_skip),
        "img_height": cfg.size,
        "img_width": cfg.size,
        "stack_num": cfg.stack,
        "gray_scale": True,
        "use_inter_area_resize": True,
    }


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
            raise ParameterError(
                f"AtariConfig: game={cfg.game!r} is not a ROM bundled with ale-py; choose e.g. one "
                f"of {list(GAMES)} (rooms are tracked for those)"
            )
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
    """``E`` :class:`AtariEnv` with auto-reset (the ``"ale"`` backend, the reference); ``step`` returns the
    policy's next obs and the true next obs. One group (``send`` stores the actions, ``recv`` steps)."""

    channels_first = False
    groups = 1

    def __init__(self, cfg: AtariConfig, num_envs: int, seed: int):
        self.cfg = cfg
        self.num_envs = int(num_envs)
        self.envs = [AtariEnv(cfg, seed * 1000 + i) for i in range(num_envs)]
        self.n_actions = self.envs[0].n_actions
        self.ep_return = np.zeros(num_envs)
        self.ep_frames = np.zeros(num_envs, np.int64)
        self.group_slices = [slice(0, self.num_envs)]
        self._actions = None

    def reset(self) -> np.ndarray:
        return np.stack([e.reset() for e in self.envs])

    def rooms(self) -> np.ndarray:
        return np.array([e.room() for e in self.envs], np.int32)

    def send(self, group: int, actions) -> None:
        self._actions = np.asarray(actions)

    def recv(self, group: int):
        return self.step(self._actions)

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
        return (
            np.stack(obs),
            np.asarray(rew, np.float32),
            np.asarray(done, bool),
            np.stack(next_obs),
            np.asarray(rooms, np.int32),
            ended,
        )


class PoolAtari:
    """``num_envs`` Atari environments in EnvPool (the ``"envpool"`` backend), split into ``cfg.groups``
    instances that step in C++ threads; observations ``uint8 (E, stack, size, size)`` (:attr:`channels_first`).

    ``send(g, actions)`` starts group ``g``'s step and returns at once; ``recv(g)`` waits for it and returns
    ``(obs, reward, done, next_obs, rooms, ended)`` for the group's environments (``group_slices[g]``), with the
    auto-reset of the module doc (ended environments are reset at once; ``next_obs`` keeps their terminal
    observation; ``ended`` lists the unclipped scores of the episodes that ended). ``step(actions)`` does that
    for every group (the :class:`VecAtari` interface)."""

    channels_first = True

    def __init__(self, cfg: AtariConfig, num_envs: int, seed: int):
        import envpool

        cfg.check_num_envs(num_envs)
        self.cfg = cfg
        self.num_envs = int(num_envs)
        self.groups = int(cfg.groups)
        size = self.num_envs // self.groups
        self.group_slices = [slice(g * size, (g + 1) * size) for g in range(self.groups)]
        task, options = envpool_task(cfg.game), envpool_options(cfg)
        self.pools = [
            envpool.make(task, num_envs=size, env_seed=[int(seed) * 1000 + i for i in range(sl.start, sl.stop)],
                         **options)
            for sl in self.group_slices
        ]
        self.n_actions = int(self.pools[0].action_space.n)
        self.ep_return = np.zeros(self.num_envs)
        self._ram = np.zeros((self.num_envs, 128), np.uint8)

    def reset(self) -> np.ndarray:
        obs = []
        for pool, sl in zip(self.pools, self.group_slices):
            o, info = pool.reset()
            self._ram[sl] = info["ram"]
            obs.append(o)
        self.ep_return[:] = 0.0
        return np.concatenate(obs)

    def rooms(self) -> np.ndarray:
        """Room ids of the current states (after the latest reset or step)."""
        return room_ids(self._ram, self.cfg.game)

    def send(self, group: int, actions) -> None:
        self.pools[group].send(np.asarray(actions, np.int32))

    def recv(self, group: int):
        sl = self.group_slices[group]
        next_obs, reward, terminated, truncated, info = self.pools[group].recv()
        reward = np.asarray(reward, np.float32)
        done = np.logical_or(terminated, truncated)
        rooms = room_ids(info["ram"], self.cfg.game)
        ep_return = self.ep_return[sl]  # a view: updated in place
        ep_return += reward
        ended = []
        obs, ram = next_obs, info["ram"]
        if done.any():
            ids = np.flatnonzero(done)
            ended = ep_return[ids].tolist()
            ep_return[ids] = 0.0
            reset_obs, reset_info = self.pools[group].reset(ids.astype(np.int32))
            obs, ram = next_obs.copy(), ram.copy()
            obs[ids], ram[ids] = reset_obs, reset_info["ram"]
        self._ram[sl] = ram
        return obs, reward, done, next_obs, rooms, ended

    def step(self, actions):
        actions = np.asarray(actions)
        for g, sl in enumerate(self.group_slices):
            self.send(g, actions[sl])
        out = [self.recv(g) for g in range(self.groups)]
        return (*(np.concatenate([o[i] for o in out]) for i in range(5)), [x for o in out for x in o[5]])


def make_vec(cfg: AtariConfig, num_envs: int, seed: int) -> PoolAtari | VecAtari:
    """The vector environment of ``cfg.backend``: :class:`PoolAtari` (``"envpool"``) or :class:`VecAtari`."""
    cfg.check_num_envs(num_envs)
    return PoolAtari(cfg, num_envs, seed) if cfg.backend == "envpool" else VecAtari(cfg, num_envs, seed)


# ----------------------------------------------------------------------------------------------
# Rollouts


def env_keys(key, num_steps: int, num_envs: int) -> tuple[np.ndarray, np.ndarray]:
    """One PRNG key per time step and environment, ``(num_steps, num_envs, 2)`` uint32 on the host (one device
    call per rollout), and the key to carry on."""
    keys = np.asarray(jax.random.split(key, num_steps * num_envs + 1))
    return keys[1:].reshape(num_steps, num_envs, -1), keys[0]


def collect(vec, act: Callable, params, obs, first, key, num_steps: int, visited: set, stats: dict):
    """One rollout of ``num_steps`` steps of every environment of ``vec`` (:class:`PoolAtari` or
    :class:`VecAtari`), actions from a jitted ``act(params, obs, keys) -> (action, logp, v_ext, v_int)`` with one
    key per environment (so the draws do not depend on the grouping).

    A Python loop over time steps; per step and group one ``act`` call on the group's batch, one ``send`` and one
    ``recv``. With two or more groups the emulators of one group run while ``act`` computes the next group's
    actions (software pipelining: group ``g``'s step ``t`` is received just before its actions of step ``t + 1``
    are drawn).

    Returns (traj dict of NumPy arrays, next obs, next first, key); ``traj['obs']`` has ``vec``'s layout.
    ``visited`` gains the rooms reached; ``stats['returns']`` the unclipped scores of the episodes that ended.
    """
    T, E = num_steps, vec.num_envs
    s = vec.cfg.size
    slices = vec.group_slices
    obs_g = [np.asarray(obs)[sl] for sl in slices]  # each group's current obs, as the environment returned it
    first_g = [np.asarray(first, bool)[sl] for sl in slices]
    traj = {
        "obs": np.zeros((T, E, *obs_g[0].shape[1:]), np.uint8),
        "next_frame": np.zeros((T, E, s, s), np.uint8),
        "action": np.zeros((T, E), np.int32),
        "logp": np.zeros((T, E), np.float32),
        "v_ext": np.zeros((T, E), np.float32),
        "v_int": np.zeros((T, E), np.float32),
        "reward": np.zeros((T, E), np.float32),
        "done": np.zeros((T, E), bool),
        "first": np.zeros((T, E), bool),
    }
    rooms = np.full((T, E), -1, np.int32)
    keys, key = env_keys(key, T, E)
    newest = (slice(None), -1) if vec.channels_first else (Ellipsis, -1)

    def receive(g: int, t: int) -> None:  # the results of group g's step t
        sl = slices[g]
        obs_g[g], r, first_g[g], nxt, rooms[t, sl], ended = vec.recv(g)
        traj["reward"][t, sl] = np.clip(r, -1.0, 1.0)
        traj["done"][t, sl] = first_g[g]
        traj["next_frame"][t, sl] = nxt[newest]
        stats["returns"].extend(ended)

    for t in range(T):
        for g, sl in enumerate(slices):
            if t > 0:
                receive(g, t - 1)
            traj["obs"][t, sl], traj["first"][t, sl] = obs_g[g], first_g[g]
            a, lp, ve, vi = jax.device_get(act(params, obs_g[g], keys[t, sl]))
            vec.send(g, a)
            traj["action"][t, sl], traj["logp"][t, sl], traj["v_ext"][t, sl], traj["v_int"][t, sl] = a, lp, ve, vi
    for g in range(len(slices)):
        receive(g, T - 1)
    visited.update(int(x) for x in np.unique(rooms) if x >= 0)
    return traj, np.concatenate(obs_g), np.concatenate(first_g), key
