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
import functools
import time
from typing import Any, Mapping

import numpy as np

from replicate import rng
from replicate.params import ParameterError
from replicate.recode import baselines, bonus, memory
from replicate.rl import envs, exploration, ppo

METHODS = ("none", "rnd", "emm", "ngu", "recode", "counts")
LABELS = {"none": "no bonus", "rnd": "RND", "emm": "EMM", "ngu": "NGU", "recode": "RECODE",
          "counts": "true counts (oracle)"}


def recode_config(memory_size: int | None, gamma: float | None, update: str | None = None,
                  c: float | None = None) -> memory.RecodeConfig:
    """RECODE's memory with the given size, discount, batch update rule (``'sequential'`` or ``'parallel'``,
    :attr:`~replicate.recode.memory.RecodeConfig.update`) and reward constant ``c`` of ``r = 1 / (sqrt(N) + c)``
    (every other constant: our choice, see :class:`~replicate.recode.memory.RecodeConfig`); ``None`` keeps its
    default."""
    given = {"memory_size": memory_size, "gamma": gamma, "update": update, "c": c}
    return memory.RecodeConfig(**{k: v for k, v in given.items() if v is not None})


def run_spanning_gamma(embeddings: int) -> float:
    """The count discount whose horizon ``1 / (1 - gamma)`` is ``embeddings`` (RECODE discounts once per
    embedding, :attr:`~replicate.recode.memory.RecodeConfig.discount_per`): ``1 - 1 / embeddings``, so a count
    made at the start of a run of that many embeddings keeps ``(1 - 1/n)^n ~ e^-1`` of its weight at the end.
    Our reading of a *lifelong* memory in runs far shorter than the paper's (its ``gamma = 0.999`` spans 1000
    embeddings: ~80 DeepSea-12 episodes)."""
    if not isinstance(embeddings, (int, np.integer)) or embeddings < 2:
        raise ParameterError(f"embeddings={embeddings!r} must be an int >= 2")
    return 1.0 - 1.0 / float(embeddings)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything one DeepSea or MiniGrid run needs besides the size/task, the bonus and the seeds.

    ``ppo``: :class:`replicate.rl.ppo.PPOConfig` overrides as ``(name, value)`` pairs (a mapping is accepted
    and stored as pairs, so the spec stays hashable). ``memory_size``, ``recode_gamma``, ``recode_c``: RECODE's
    memory (``recode_c``: the reward constant of ``1 / (sqrt(N) + c)``, which is also the largest reward ``1 / c``,
    given to an embedding with no atom in reach); ``recode_gamma_spans_run``: set the count discount to
    :func:`run_spanning_gamma` of the run's environment steps (overrides ``recode_gamma``); ``memory_update``: its
    batch update rule (``'sequential'``, Algorithm 1 per embedding; ``'parallel'``, the whole batch at once, for
    large batches on a GPU). ``None`` takes :class:`~replicate.recode.memory.RecodeConfig`'s default (notebooks
    pass theirs).
    """

    budget_episodes: int = 1000
    num_envs: int = 8
    num_steps: int = 16
    ppo: tuple[tuple[str, Any], ...] = ()
    embedding: str = "ap"  # EMM/NGU/RECODE embedding: 'ap', 'casm', 'random' or 'identity'
    embed_dim: int = 16
    memory_size: int | None = None  # RECODE atoms (None: RecodeConfig's default)
    recode_gamma: float | None = None  # RECODE count discount (None: RecodeConfig's default)
    recode_c: float | None = None  # RECODE reward constant c (None: RecodeConfig's default)
    recode_gamma_spans_run: bool = False  # discount horizon = the run's environment steps (run_spanning_gamma)
    memory_update: str | None = None  # RECODE batch update, 'sequential' or 'parallel' (None: RecodeConfig's default)
    map_seed: int = 0
    count_c: float = 1.0  # oracle counts bonus 1/(sqrt(N) + c): c = 1 keeps first visits at reward 1
    hidden: tuple[int, ...] = (64, 64)  # PPO actor and critic MLPs
    casm_seq_len: int = 8  # CASM window (embedding='casm'); must divide num_steps

    def __post_init__(self) -> None:
        if isinstance(self.ppo, Mapping):
            object.__setattr__(self, "ppo", tuple(self.ppo.items()))
        if self.embedding not in bonus.EMBEDDINGS:
            raise ParameterError(f"RunSpec: embedding={self.embedding!r}; choose one of {bonus.EMBEDDINGS}")
        recode_config(self.memory_size, self.recode_gamma, self.memory_update, self.recode_c)  # RecodeConfig validates
        if self.embedding == "casm" and self.num_steps % self.casm_seq_len:
            raise ParameterError(f"RunSpec: casm_seq_len={self.casm_seq_len} must divide num_steps={self.num_steps}")

    def bonus_config(self, env) -> bonus.BonusConfig:
        """The bonus settings of this spec on ``env`` (EMM's/NGU's episodic memory, NGU's constants, is sized to the
        episode length)."""
        return bonus.BonusConfig(
            embedding=bonus.EmbeddingConfig(
                self.embedding, dim=self.embed_dim, ap_hidden=(64,), casm_seq_len=self.casm_seq_len
            ),
            recode=recode_config(self.memory_size, self.recode_gamma, self.memory_update, self.recode_c),
            episodic=baselines.EpisodicConfig(
                capacity=max(10, env.max_episode_steps + 1), k=min(10, env.max_episode_steps)
            ),
            count_c=self.count_c,
        )

    def with_ppo(self, overrides: Mapping[str, Any]) -> "RunSpec":
        """This spec with more :class:`~replicate.rl.ppo.PPOConfig` overrides (``overrides`` win over ``ppo``)."""
        return dataclasses.replace(self, ppo=tuple({**dict(self.ppo), **dict(overrides)}.items()))

    def for_run(self, total_timesteps: int) -> "RunSpec":
        """This spec for a run of ``total_timesteps`` environment steps: with ``recode_gamma_spans_run``, RECODE's
        discount set to :func:`run_spanning_gamma` of the steps (one embedding per step); otherwise unchanged."""
        if not self.recode_gamma_spans_run:
            return self
        return dataclasses.replace(self, recode_gamma=run_spanning_gamma(int(total_timesteps)),
                                   recode_gamma_spans_run=False)

    def ppo_config(self, total_timesteps: int) -> ppo.PPOConfig:
        """PPO for ``total_timesteps`` environment steps rounded up to whole rollouts."""
        batch = self.num_envs * self.num_steps
        total = max(1, -(-int(total_timesteps) // batch)) * batch
        return ppo.PPOConfig(
            num_envs=self.num_envs,
            num_steps=self.num_steps,
            total_timesteps=total,
            hidden=tuple(self.hidden),
            **dict(self.ppo),
        )


def ppo_config(spec: RunSpec, size: int) -> ppo.PPOConfig:
    """PPO for a DeepSea-``size`` run: ``budget_episodes * size`` steps rounded up to whole rollouts."""
    return spec.ppo_config(spec.budget_episodes * size)


def make_bonus(method: str, env, spec: RunSpec):
    """The bonus ``method`` (one of :data:`METHODS`) of ``spec`` on ``env``
    (:func:`replicate.recode.bonus.make_bonus`)."""
    if method not in METHODS:
        raise ParameterError(f"method {method!r}: choose one of {METHODS}")
    return bonus.make_bonus(method, env, spec.num_envs, spec.bonus_config(env))


DIAGNOSTICS = ("policy_entropy", "r_int_raw", "r_int_raw_std", "r_int_raw_max", "r_int", "r_int_std", "r_int_max",
               "int_norm_scale", "int_return_mean", "int_return_std")
"""Per-update diagnostics of :func:`replicate.rl.ppo.make_train` copied into every run: the acting policy's entropy
and the raw and normalised intrinsic-reward statistics (:func:`replicate.rl.ppo.intrinsic_stats`)."""


def _per_update(m: Mapping[str, np.ndarray]) -> dict:
    """The per-update curves (S, U) shared by DeepSea and MiniGrid runs: success rate and mean return of the episodes
    ended in each update (NaN where none ended), and :data:`DIAGNOSTICS` (plus any loss of a learned embedding)."""
    ended = m["episodes_ended"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        succ = np.diff(m["successes"], axis=1, prepend=0) / ended
        ret = m["return_sum"] / ended
        episode_coverage = m["episode_coverage_sum"] / ended
    out = {"success_rate": succ, "return": ret, "episode_coverage": episode_coverage,
           "steps": m["env_steps"], "episodes": m["episodes"]}
    out.update({k: np.asarray(m[k]) for k in DIAGNOSTICS})
    out.update({k: np.asarray(m[k]) for k in ("ap_loss", "casm_loss") if k in m})
    return out


def deep_sea_run(size: int, method: str, seeds, spec: RunSpec, *, checkpoint_dir=None, chunk_updates: int = 0) -> dict:
    """Train ``method`` on DeepSea-``size`` for every seed; NumPy curves (S, U) and timings.

    Curves: ``episodes`` so far, ``first_success_curve``, ``distinct`` cells visited and ``coverage`` (their share of
    the :func:`reachable_cells`), ``successes`` so far, ``recode_gamma`` (RECODE's count discount in this run, whatever
    the method), and per update (:func:`_per_update`) ``success_rate``,
    ``return`` and the :data:`DIAGNOSTICS`. ``checkpoint_dir``: train in chunks of ``chunk_updates`` and checkpoint
    there, so an interrupted run resumes (:func:`replicate.rl.ppo.train_seeds`; the result is the same)."""
    env = envs.deep_sea(int(size), map_seed=spec.map_seed)
    cfg = ppo_config(spec, size)
    run_spec = spec.for_run(cfg.total_timesteps)
    agent_bonus = make_bonus(method, env, run_spec)
    t0 = time.perf_counter()
    _, m = ppo.train_seeds(cfg, env, agent_bonus, rng.seed_keys(list(seeds)), checkpoint_dir=checkpoint_dir,
                           chunk_updates=chunk_updates)
    wall = time.perf_counter() - t0
    fs = m["first_success"][:, -1]
    reach = reachable_cells(int(size))
    out = _per_update(m)
    out.pop("episode_coverage")  # DeepSea's layout is fixed: coverage is the share of its reachable cells
    out.update({
        "size": int(size),
        "method": method,
        "n_states": env.n_states,
        "first_success": fs,
        "first_success_curve": m["first_success"],
        "distinct": m["distinct_states"],
        "coverage": m["distinct_states"] / reach,
        "successes": m["successes"],
        "reachable": reach,
        "recode_gamma": run_spec.bonus_config(env).recode.gamma,
        "budget": int(m["episodes"][0, -1]),
        "env_steps": int(m["env_steps"][0, -1]),
        "wall_s": wall,
    })
    return out


def minigrid_run(
    task: str, method: str, seeds, spec: RunSpec, total_steps: int, *, max_steps: int | None = None,
    checkpoint_dir=None, chunk_updates: int = 0,
) -> dict:
    """Train ``method`` on the MiniGrid ``task`` for ``total_steps`` environment steps per seed (rounded up
    to whole rollouts); NumPy curves (S, U): steps, episodes, first success, cells visited over the run
    (``distinct``: saturates at the union of all layouts), and per update (:func:`_per_update`) the success rate,
    mean return and ``coverage`` of the episodes that ended in it (NaN where none ended; coverage: the share of its
    own layout's non-wall cells an episode visited, :class:`replicate.rl.exploration.EpisodeCoverage`) and the
    :data:`DIAGNOSTICS`. ``checkpoint_dir`` and ``chunk_updates``: as in :func:`deep_sea_run` (resumable)."""
    if not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ParameterError(f"total_steps={total_steps!r} must be a positive int")
    env = envs.minigrid(task, max_steps=max_steps)
    cfg = spec.ppo_config(total_steps)
    run_spec = spec.for_run(cfg.total_timesteps)
    agent_bonus = make_bonus(method, env, run_spec)
    t0 = time.perf_counter()
    _, m = ppo.train_seeds(cfg, env, agent_bonus, rng.seed_keys(list(seeds)), checkpoint_dir=checkpoint_dir,
                           chunk_updates=chunk_updates)
    wall = time.perf_counter() - t0
    out = _per_update(m)
    out["coverage"] = out.pop("episode_coverage")
    out.update({
        "task": task,
        "method": method,
        "n_states": env.n_states,
        "first_success": m["first_success"][:, -1],
        "first_success_curve": m["first_success"],
        "distinct": m["distinct_states"],
        "successes": m["successes"],
        "recode_gamma": run_spec.bonus_config(env).recode.gamma,
        "budget": int(m["episodes"][:, -1].max()),
        "env_steps": int(m["env_steps"][0, -1]),
        "wall_s": wall,
    })
    return out


def deep_sea_unit(units, size: int, method: str, seeds, spec: RunSpec) -> dict:
    """:func:`deep_sea_run` as a resumable unit of ``units`` (:class:`replicate.resumable.Units`): its stored result
    when an interrupted pipeline run already finished it, else the run (checkpointed while it trains)."""
    inputs = {"size": int(size), "method": method, "seeds": [int(s) for s in seeds], "spec": spec}
    name = f"deepsea-{size}-{method}"
    return units.run(name, inputs, functools.partial(deep_sea_run, int(size), method, inputs["seeds"], spec,
                                                     checkpoint_dir=units.checkpoint_dir(name, inputs)))


def minigrid_unit(units, task: str, method: str, seeds, spec: RunSpec, total_steps: int, name: str = "") -> dict:
    """:func:`minigrid_run` as a resumable unit of ``units`` (see :func:`deep_sea_unit`); ``name`` defaults to
    ``minigrid-<task>-<method>``."""
    inputs = {"task": task, "method": method, "seeds": [int(s) for s in seeds], "spec": spec, "steps": int(total_steps)}
    name = name or f"minigrid-{task}-{method}"
    run = functools.partial(minigrid_run, task, method, inputs["seeds"], spec, int(total_steps),
                            checkpoint_dir=units.checkpoint_dir(name, inputs))
    return units.run(name, inputs, run)


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
