"""Atari environments for the exploration agents: an ALE adapter, vectorised, with room ids from RAM.

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

Rollouts (:func:`collect`): the environments step in Python, actions come from a jitted ``act`` function;
the PPO agent with exploration bonuses that uses them lives in :mod:`replicate.recode.atari_agent`.
"""

from __future__ import annotations

import dataclasses
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
            raise ParameterError(
                f"AtariConfig: frame_skip={self.frame_skip} must be >= 2 (max over the last two frames)"
            )
        if self.noop_max < 0 or self.stack < 1 or self.size < 8:
            raise ParameterError(f"AtariConfig: need noop_max >= 0, stack >= 1, size >= 8, got {self}")
        if not 0.0 <= self.repeat_action_probability < 1.0:
            raise ParameterError(
                f"AtariConfig: repeat_action_probability={self.repeat_action_probability} must be in [0, 1)"
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
        return (
            np.stack(obs),
            np.asarray(rew, np.float32),
            np.asarray(done, bool),
            np.stack(next_obs),
            np.asarray(rooms, np.int32),
            ended,
        )


# ----------------------------------------------------------------------------------------------
# Rollouts


def collect(vec: VecAtari, act: Callable, params, obs, first, key, num_steps: int, visited: set, stats: dict):
    """One rollout of ``num_steps`` steps of every environment (Python loop, jitted ``act``).

    Returns (traj dict of NumPy arrays, next obs, next first, key). ``visited`` gains the rooms reached;
    ``stats['returns']`` the unclipped scores of the episodes that ended.
    """
    T, E = num_steps, len(vec.envs)
    s = vec.cfg.size
    traj = {
        "obs": np.zeros((T, E, s, s, vec.cfg.stack), np.uint8),
        "next_frame": np.zeros((T, E, s, s), np.uint8),
        "action": np.zeros((T, E), np.int32),
        "logp": np.zeros((T, E), np.float32),
        "v_ext": np.zeros((T, E), np.float32),
        "v_int": np.zeros((T, E), np.float32),
        "reward": np.zeros((T, E), np.float32),
        "done": np.zeros((T, E), bool),
        "first": np.zeros((T, E), bool),
    }
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
