"""RECODE II experiments: PPO agents with an exploration bonus on DeepSea and MiniGrid (the notebooks' engine).

:func:`deep_sea_run` trains one agent (one bonus, one DeepSea size) for several seeds inside one
compiled program (:func:`replicate.rl.ppo.train_seeds`) and returns NumPy curves indexed by update:
episodes so far, the episode number of the first treasure, distinct cells visited, returns.
Budgets are in *episodes*: DeepSea episodes last exactly ``size`` steps, so a budget of ``B``
episodes is ``B * size`` environment steps (rounded up to whole rollouts).

:func:`minigrid_run` does the same for a MiniGrid task from ``xminigrid``
(:func:`replicate.rl.envs.minigrid`) with a budget in *environment steps* (episodes vary in length);
its curves add the success rate and mean return of the episodes that ended in each update.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from replicate.params import ParameterError
from replicate.recode import baselines as B
from replicate.recode import memory as M
from replicate.rl import bonus as Bn
from replicate.rl import envs, exploration, ppo

METHODS = ("none", "rnd", "ngu", "recode", "counts")
LABELS = {"none": "no bonus", "rnd": "RND", "ngu": "NGU episodic", "recode": "RECODE", "counts": "true counts (oracle)"}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything one DeepSea run needs besides the size, the bonus and the seeds."""

    budget_episodes: int = 1000
    num_envs: int = 8
    num_steps: int = 16
    ppo: dict = dataclasses.field(default_factory=dict)  # PPOConfig overrides
    embedding: str = "ap"  # NGU/RECODE embedding: 'ap', 'casm', 'random' or 'identity'
    embed_dim: int = 16
    memory_size: int = 256  # RECODE atoms
    recode_gamma: float = 0.999
    map_seed: int = 0
    count_c: float = 1.0  # oracle counts bonus 1/(sqrt(N) + c): c = 1 keeps first visits at reward 1
    hidden: tuple[int, ...] = (64, 64)  # PPO actor and critic MLPs
    casm_seq_len: int = 8  # CASM window (embedding='casm'); must divide num_steps

    def __hash__(self):
        return hash(repr(self))


def ppo_config(spec: RunSpec, size: int) -> ppo.PPOConfig:
    batch = spec.num_envs * spec.num_steps
    steps = spec.budget_episodes * size
    total = max(1, -(-steps // batch)) * batch
    return _ppo_config(spec, total)


def _ppo_config(spec: RunSpec, total: int) -> ppo.PPOConfig:
    return ppo.PPOConfig(num_envs=spec.num_envs, num_steps=spec.num_steps, total_timesteps=total,
                         hidden=tuple(spec.hidden), **spec.ppo)


def make_bonus(method: str, env, spec: RunSpec):
    if method not in METHODS:
        raise ParameterError(f"method {method!r}: choose one of {METHODS}")
    if spec.embedding == "casm" and spec.num_steps % spec.casm_seq_len:
        raise ParameterError(f"casm_seq_len={spec.casm_seq_len} must divide num_steps={spec.num_steps}")
    emb = Bn.EmbeddingConfig(spec.embedding, dim=spec.embed_dim, ap_hidden=(64,), casm_seq_len=spec.casm_seq_len)
    return Bn.make_bonus(method, env, spec.num_envs, embedding=emb,
                         count_c=spec.count_c, recode=M.RecodeConfig(memory_size=spec.memory_size, gamma=spec.recode_gamma),
                         episodic=B.EpisodicConfig(capacity=max(10, env.max_episode_steps + 1), k=min(10, env.max_episode_steps)))


def deep_sea_run(size: int, method: str, seeds, spec: RunSpec) -> dict:
    """Train ``method`` on DeepSea-``size`` for every seed; NumPy curves (S, U) and timings."""
    env = envs.deep_sea(int(size), map_seed=spec.map_seed)
    cfg = ppo_config(spec, size)
    bonus = make_bonus(method, env, spec)
    from replicate import rng

    t0 = time.perf_counter()
    _, m = ppo.train_seeds(cfg, env, bonus, rng.seed_keys(list(seeds)))
    wall = time.perf_counter() - t0
    fs = m["first_success"][:, -1]
    return {
        "size": int(size), "method": method, "n_states": env.n_states,
        "episodes": m["episodes"], "first_success": fs, "first_success_curve": m["first_success"],
        "distinct": m["distinct_states"], "successes": m["successes"],
        "return": m["return_sum"] / np.maximum(m["episodes_ended"], 1),
        "reachable": reachable_cells(int(size)), "budget": int(m["episodes"][0, -1]), "env_steps": int(m["env_steps"][0, -1]), "wall_s": wall,
    }


def minigrid_run(task: str, method: str, seeds, spec: RunSpec, total_steps: int, *, max_steps: int | None = None) -> dict:
    """Train ``method`` on the MiniGrid ``task`` for ``total_steps`` environment steps per seed (rounded up
    to whole rollouts); NumPy curves (S, U): steps, episodes, first success, cells visited, success rate
    and mean return of the episodes ended in each update (NaN where none ended)."""
    if not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ParameterError(f"total_steps={total_steps!r} must be a positive int")
    env = envs.minigrid(task, max_steps=max_steps)
    batch = spec.num_envs * spec.num_steps
    cfg = _ppo_config(spec, max(1, -(-int(total_steps) // batch)) * batch)
    bonus = make_bonus(method, env, spec)
    from replicate import rng

    t0 = time.perf_counter()
    _, m = ppo.train_seeds(cfg, env, bonus, rng.seed_keys(list(seeds)))
    wall = time.perf_counter() - t0
    ended = m["episodes_ended"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        succ = np.diff(m["successes"], axis=1, prepend=0) / ended
        ret = m["return_sum"] / ended
    return {
        "task": task, "method": method, "n_states": env.n_states, "steps": m["env_steps"], "episodes": m["episodes"],
        "first_success": m["first_success"][:, -1], "first_success_curve": m["first_success"],
        "distinct": m["distinct_states"], "successes": m["successes"], "success_rate": succ, "return": ret,
        "budget": int(m["episodes"][:, -1].max()), "env_steps": int(m["env_steps"][0, -1]), "wall_s": wall,
    }


def first_success_steps(run: dict) -> np.ndarray:
    """(S,) environment steps (update resolution) at which each seed first reached the goal; ``inf`` if never."""
    solved = run["first_success_curve"] < exploration.NEVER
    idx = np.argmax(solved, axis=1)
    return np.where(solved.any(axis=1), run["steps"][np.arange(len(idx)), idx], np.inf).astype(np.float64)


def reachable_cells(size: int) -> int:
    """Cells DeepSea can reach from the top-left: column <= row in rows 0..N-1, plus N terminal cells."""
    return size * (size + 1) // 2 + size


def summary(run: dict) -> dict:
    """Censored median/quartiles of episodes to the first treasure, plus coverage at the end."""
    s = exploration.censored_summary(run["first_success"], run["budget"])
    s["coverage"] = float(np.mean(run["distinct"][:, -1]) / reachable_cells(run["size"]))
    return s
