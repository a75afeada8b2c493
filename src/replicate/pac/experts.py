"""The SAC experts behind the PAC datasets: trained until their return curve flattens, snapshots of the quality
tiers, loading.

:func:`train_expert` trains one SAC agent (:mod:`replicate.rl.sac`) on one dm_control task in chunks of
``eval_every`` agent steps. After every chunk it evaluates the actor (``eval_episodes`` episodes, deterministic
*and* stochastic) and keeps a snapshot; it stops when the deterministic return curve has flattened
(:func:`replicate.pac.convergence.plateau_index`: the mean of the last ``window`` evaluations beats the mean of the
``window`` before them by less than ``tol`` return points, after at least ``min_steps`` steps) or at ``max_steps``.
The final snapshot is the expert; each weaker tier is the first snapshot whose *stochastic* return (the policy that
collects the data) reaches a stated level between the uniform-random policy's return (0) and the expert's (1)
(:func:`tier_snapshots`). The run is resumable: the state, replay buffer, curve and snapshots are checkpointed
(:func:`replicate.resumable.run_chunks`) and every chunk runs in a fresh environment seeded by ``(seed, chunk)``, so
an interrupted run ends as an uninterrupted one.

Outputs ``data/pac/experts/<profile>/<task>/<tier>.npz`` (actor parameters + JSON meta, a few hundred kB each) and
``summary.json`` (the learning curves, where it flattened, the tiers): small, committed for the cpu/full profiles so
that regenerating a dataset needs no expert training. :func:`load_snapshots` / :func:`load_summary` read them.

Expert-training stage: ``python -m replicate.pac.experts [--profile P] [--tasks T ...]`` with the settings of
``params.yaml`` -> ``notebooks.30_pac_datasets.<profile>`` (:func:`config_from_params`). DVC stage ``pac_experts``.
A task whose ``summary.json`` records the same settings and code is skipped, so an interrupted stage resumes at the
task (and, through the checkpoints under ``data/units/pac_experts/``, at the chunk) it stopped in.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from replicate import io, outputs, resumable
from replicate.pac import convergence, paths
from replicate.params import ParameterError, notebook_params
from replicate.rl import sac
from replicate.rl.dmc import DMCEnv

#: SAC minibatch size of the expert runs (our choice for a CPU).
EXPERT_BATCH_SIZE = 128
#: Upper bound of the uniform-random warm-up; shorter runs warm up for a quarter of their cap.
MAX_WARMUP_STEPS = 1000

#: Published returns of state-based SAC on dm_control tasks we use, with the source we could read. CURL
#: (Srinivas et al. 2020, arXiv 2004.04136), Table 1, column "State SAC": mean +- std over seeds after 100k and 500k
#: *environment* steps (their action repeat differs per task; ours is 4 agent-to-environment steps). Tasks without an
#: entry have no number we could source ("no sourced number").
PUBLISHED_SAC: dict[str, list[dict[str, Any]]] = {
    "finger-spin": [{"env_steps": 100_000, "return": 811.0, "std": 46.0, "source": "CURL Table 1, State SAC"},
                    {"env_steps": 500_000, "return": 923.0, "std": 21.0, "source": "CURL Table 1, State SAC"}],
    "cartpole-swingup": [{"env_steps": 100_000, "return": 835.0, "std": 22.0, "source": "CURL Table 1, State SAC"},
                         {"env_steps": 500_000, "return": 848.0, "std": 15.0, "source": "CURL Table 1, State SAC"}],
}
NO_SOURCED_NUMBER = "no sourced number"

#: Source files whose change retrains an expert (their hash is stored in ``summary.json``).
CODE = ("rl/sac.py", "rl/dmc.py", "pac/experts.py", "pac/convergence.py")


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
    """Settings of one expert run (one SAC agent per task; notebook 30 and the ``pac_experts`` stage).

    Attributes:
        max_steps: cap on SAC agent steps per task (``EXPERT_MAX_STEPS``).
        min_steps: no plateau is read before this many steps (``EXPERT_MIN_STEPS``).
        eval_every: agent steps per chunk, between evaluations (``EXPERT_EVAL_EVERY``; whole episodes).
        tiers: snapshot names of increasing quality, the last one the expert (``TIERS``).
        levels: one per weaker tier: the snapshot of tier ``i`` is the first whose stochastic return reaches
            ``random + levels[i] * (expert - random)`` (``TIER_LEVELS``, increasing in (0, 1)).
        hidden: width of the SAC MLPs (``SAC_HIDDEN``).
        action_repeat: dm_control action repeat (``ACTION_REPEAT``).
        eval_episodes: evaluation episodes per chunk and mode (``EXPERT_EVAL_EPISODES``).
        window, tol: the plateau rule (``PLATEAU_WINDOW`` evaluations, ``PLATEAU_TOL`` return points).
    """

    max_steps: int
    eval_every: int
    tiers: tuple[str, ...]
    levels: tuple[float, ...]
    hidden: int
    action_repeat: int
    min_steps: int = 0
    eval_episodes: int = 5
    window: int = 3
    tol: float = 20.0

    def __post_init__(self):
        object.__setattr__(self, "tiers", tuple(self.tiers))
        object.__setattr__(self, "levels", tuple(float(x) for x in self.levels))
        if self.max_steps < 1 or self.eval_every < 1 or self.min_steps < 0:
            raise ParameterError(f"EXPERT_MAX_STEPS={self.max_steps} and EXPERT_EVAL_EVERY={self.eval_every} must be "
                                 f">= 1 and EXPERT_MIN_STEPS={self.min_steps} >= 0")
        if self.max_steps % self.eval_every:
            raise ParameterError(f"EXPERT_MAX_STEPS={self.max_steps} must be a multiple of EXPERT_EVAL_EVERY="
                                 f"{self.eval_every} (the run is made of whole chunks)")
        episode = 1000 // self.action_repeat
        if self.eval_every % episode:
            raise ParameterError(f"EXPERT_EVAL_EVERY={self.eval_every} must be a multiple of the episode length "
                                 f"{episode} (1000 / ACTION_REPEAT): every chunk runs whole episodes")
        if not self.tiers or len(set(self.tiers)) != len(self.tiers):
            raise ParameterError(f"TIERS={list(self.tiers)} must be a non-empty list of distinct names")
        lv = list(self.levels)
        if len(lv) != len(self.tiers) - 1 or any(not 0 < x < 1 for x in lv) or lv != sorted(set(lv)):
            raise ParameterError(f"TIER_LEVELS={lv} must be increasing in (0, 1), one per tier below the expert of "
                                 f"TIERS={list(self.tiers)}")
        if self.hidden < 1 or self.action_repeat < 1 or self.eval_episodes < 1:
            raise ParameterError(f"SAC_HIDDEN={self.hidden}, ACTION_REPEAT={self.action_repeat} and "
                                 f"EXPERT_EVAL_EPISODES={self.eval_episodes} must all be >= 1")
        convergence.check_rule(self.window, self.tol)

    @property
    def num_chunks(self) -> int:
        return self.max_steps // self.eval_every

    def sac_config(self) -> sac.SACConfig:
        """SAC hyper-parameters of the run: :class:`replicate.rl.sac.SACConfig` defaults except width, batch
        size, the replay capacity (at most the cap) and the warm-up (a quarter of the cap, at most
        :data:`MAX_WARMUP_STEPS`)."""
        return sac.SACConfig(hidden=self.hidden, batch_size=EXPERT_BATCH_SIZE,
                             buffer_size=min(sac.SACConfig.buffer_size, self.max_steps),
                             warmup_steps=min(MAX_WARMUP_STEPS, self.max_steps // 4))


def config_from_params(p: Mapping[str, Any]) -> ExpertConfig:
    """The :class:`ExpertConfig` of notebook 30's parameters (``params.yaml`` -> ``notebooks.30_pac_datasets``)."""
    return ExpertConfig(max_steps=p["EXPERT_MAX_STEPS"], min_steps=p["EXPERT_MIN_STEPS"],
                        eval_every=p["EXPERT_EVAL_EVERY"], tiers=p["TIERS"], levels=p["TIER_LEVELS"],
                        hidden=p["SAC_HIDDEN"], action_repeat=p["ACTION_REPEAT"],
                        eval_episodes=p["EXPERT_EVAL_EPISODES"], window=p["PLATEAU_WINDOW"], tol=p["PLATEAU_TOL"])


def tier_snapshots(stochastic_returns: Sequence[float], last: int, random_return: float,
                   levels: Sequence[float]) -> list[int]:
    """Snapshot index of every tier: for each level, the first snapshot ``j <= last`` whose stochastic return
    reaches ``random_return + level * (R_last - random_return)`` (``last`` itself when none earlier does), then
    ``last`` for the expert. Indices are non-decreasing in the tier order."""
    r = np.asarray(stochastic_returns, np.float64)[: last + 1]
    out = []
    for level in levels:
        target = random_return + level * (r[last] - random_return)
        hits = np.flatnonzero(r >= target)
        out.append(int(hits[0]) if hits.size else last)
    out.append(int(last))
    return [int(x) for x in np.maximum.accumulate(out)]


def code_hash() -> str:
    """Fingerprint of the code that trains an expert (:data:`CODE`)."""
    root = Path(__file__).resolve().parents[1]
    return resumable.code_fingerprint([root / f for f in CODE], root)


def checkpoint_dir(task: str, profile: str) -> Path:
    """Where an expert run keeps its checkpoints while it runs (git-ignored; removed when it has finished)."""
    return outputs.data_dir() / "units" / "pac_experts" / profile / task


def _evaluate(agent: sac.SAC, actor, task: str, cfg: ExpertConfig, seed: int, deterministic: bool) -> float:
    def make_env(s: int) -> DMCEnv:
        return DMCEnv(task, seed=10_000 + s, action_repeat=cfg.action_repeat)

    return float(sac.evaluate(agent, actor, make_env, cfg.eval_episodes, seed, deterministic=deterministic).mean())


def random_return(task: str, cfg: ExpertConfig, seed: int) -> float:
    """Mean return of the uniform-random policy over ``cfg.eval_episodes`` episodes (the 0 of the tier levels)."""
    rng = np.random.default_rng(seed)
    rets = []
    for i in range(cfg.eval_episodes):
        env = DMCEnv(task, seed=10_000 + seed + i, action_repeat=cfg.action_repeat)
        env.reset()
        ret, last = 0.0, False
        while not last:
            st = env.step(rng.uniform(-1, 1, env.action_dim))
            ret, last = ret + st.reward, st.last
        rets.append(ret)
    return float(np.mean(rets))


def train_expert(task: str, cfg: ExpertConfig, seed: int, profile: str = "smoke", out_dir: Path | None = None,
                 ckpt_dir: Path | None = None, every_s: float = 300.0) -> dict[str, Any]:
    """Train SAC on ``task`` until its deterministic return curve flattens (or ``cfg.max_steps``); save one snapshot
    per tier under ``out_dir`` (default ``data/pac/experts/<profile>/<task>``) and ``summary.json``.

    With ``ckpt_dir`` the run checkpoints there at most every ``every_s`` seconds and a re-run resumes (same result
    as an uninterrupted run); the folder is removed when the run has finished. Returns the summary.
    """
    env = DMCEnv(task, seed=seed, action_repeat=cfg.action_repeat)
    sac_cfg = cfg.sac_config()
    agent = sac.SAC(env.obs_dim, env.action_dim, sac_cfg)
    key, k0 = jax.random.split(jax.random.PRNGKey(seed))
    state = agent.init(k0)
    n = cfg.num_chunks
    snaps0 = jax.tree_util.tree_map(lambda x: np.zeros((n, *np.shape(x)), np.float32), jax.device_get(state.actor))
    init = {
        "sac": state,
        "buffer": sac.make_buffer(sac_cfg.buffer_size, env.obs_dim, env.action_dim),
        "key": key,
        "evals": np.full((n, 3), np.nan),  # (agent steps, deterministic return, stochastic return)
        "train_returns": np.full(cfg.max_steps // env.episode_length, np.nan),
        "snapshots": snaps0,
        "done": np.zeros((), bool),
        "seconds": np.zeros((), np.float64),
    }

    def one_chunk(carry: dict[str, Any], i: int) -> dict[str, Any]:
        if bool(carry["done"]):
            return carry
        t0 = time.perf_counter()
        chunk_env = DMCEnv(task, seed=seed * 1000 + i, action_repeat=cfg.action_repeat)
        rng = np.random.default_rng([seed, i])
        st, buf, k, _, _, log = sac.run_steps(agent, carry["sac"], carry["buffer"], chunk_env, cfg.eval_every,
                                              carry["key"], rng, start_step=i * cfg.eval_every)
        evals = carry["evals"].copy()
        evals[i] = [(i + 1) * cfg.eval_every, _evaluate(agent, st.actor, task, cfg, seed, True),
                    _evaluate(agent, st.actor, task, cfg, seed, False)]
        train_returns = carry["train_returns"].copy()
        per_chunk = cfg.eval_every // env.episode_length
        train_returns[i * per_chunk : i * per_chunk + len(log)] = [e["return"] for e in log]
        actor = jax.device_get(st.actor)
        snaps = jax.tree_util.tree_map(lambda s, a: np.concatenate([s[:i], np.asarray(a)[None], s[i + 1 :]]),
                                       carry["snapshots"], actor)
        flat = convergence.plateau_index(evals[: i + 1, 0], evals[: i + 1, 1], cfg.window, cfg.tol,
                                         cfg.min_steps) is not None
        return {"sac": st, "buffer": buf, "key": k, "evals": evals, "train_returns": train_returns,
                "snapshots": snaps, "done": np.asarray(flat),
                "seconds": np.asarray(float(carry["seconds"]) + time.perf_counter() - t0)}

    out = resumable.run_chunks(init, one_chunk, n, ckpt_dir, every_s=every_s)
    evals = np.asarray(out["evals"])
    last = int(np.flatnonzero(np.isfinite(evals[:, 0]))[-1])
    rand = random_return(task, cfg, seed)
    picks = tier_snapshots(evals[:, 2], last, rand, cfg.levels)
    out_dir = Path(out_dir) if out_dir is not None else paths.experts_dir(profile) / task
    summary: dict[str, Any] = {
        "task": task, "seed": seed, "config": _config_json(cfg), "code": code_hash(),
        "action_repeat": cfg.action_repeat, "hidden": sac_cfg.hidden,
        "flat": bool(out["done"]), "steps": int(evals[last, 0]), "env_steps": int(evals[last, 0]) * cfg.action_repeat,
        "train_seconds": float(out["seconds"]), "random_return": rand,
        "curve": {"steps": evals[: last + 1, 0].astype(int).tolist(), "deterministic": evals[: last + 1, 1].tolist(),
                  "stochastic": evals[: last + 1, 2].tolist()},
        "training_returns": [float(x) for x in np.asarray(out["train_returns"]) if np.isfinite(x)],
        "tiers": {},
    }
    for tier, j, level in zip(cfg.tiers, picks, [*cfg.levels, 1.0]):
        actor = jax.tree_util.tree_map(lambda s, j=j: s[j], out["snapshots"])
        meta = {"task": task, "tier": tier, "step": int(evals[j, 0]), "level": level,
                "action_repeat": cfg.action_repeat, "hidden": sac_cfg.hidden, "obs_dim": env.obs_dim,
                "action_dim": env.action_dim, "eval_return_mean": float(evals[j, 2]),
                "eval_return_deterministic": float(evals[j, 1])}
        sac.save_actor(out_dir / f"{tier}.npz", actor, meta)
        summary["tiers"][tier] = meta
    io.write_json(out_dir / "summary.json", summary)
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary


def _config_json(cfg: ExpertConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def is_current(summary: Mapping[str, Any], cfg: ExpertConfig, seed: int) -> bool:
    """Whether a stored ``summary.json`` was made by these settings, seed and code (then the stage skips the task)."""
    return (summary.get("config") == _config_json(cfg) and summary.get("seed") == seed
            and summary.get("code") == code_hash())


def load_snapshots(task: str, tiers: Sequence[str], profile: str = "smoke",
                   directory: Path | None = None) -> dict[str, tuple[Any, dict]]:
    """``{tier: (actor params, meta)}`` of ``task``'s saved snapshots, in the order of ``tiers``."""
    directory = Path(directory) if directory is not None else paths.experts_dir(profile) / task
    out = {}
    for tier in tiers:
        path = directory / f"{tier}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no snapshot; train it with `python -m replicate.pac.experts --profile "
                                    f"{profile}` (dvc repro pac_experts)")
        out[tier] = sac.load_actor(path)
    return out


def load_summary(task: str, profile: str = "smoke", directory: Path | None = None) -> dict[str, Any]:
    """The ``summary.json`` that :func:`train_expert` wrote for ``task``."""
    directory = Path(directory) if directory is not None else paths.experts_dir(profile) / task
    path = directory / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no expert summary; train the experts with `python -m replicate.pac.experts "
                                f"--profile {profile}` (dvc repro pac_experts)")
    return json.loads(path.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None, help="smoke | cpu | full (default: params.yaml's profile)")
    ap.add_argument("--tasks", nargs="*", default=None, help="subset of the profile's TASKS")
    args = ap.parse_args(argv)
    p = notebook_params("30_pac_datasets", args.profile)
    tasks = args.tasks or p["TASKS"]
    unknown = sorted(set(tasks) - set(p["TASKS"]))
    if unknown:
        ap.error(f"tasks {unknown} are not in notebooks.30_pac_datasets.{p['PROFILE']}.TASKS={p['TASKS']}")
    cfg = config_from_params(p)
    for task in tasks:
        seed = p["SEED"] + p["TASKS"].index(task)
        t0 = time.perf_counter()
        summary_path = paths.experts_dir(p["PROFILE"]) / task / "summary.json"
        if summary_path.exists() and is_current(json.loads(summary_path.read_text()), cfg, seed):
            print(f"{task}: up to date (same settings and code), skipped", flush=True)
            continue
        s = train_expert(task, cfg, seed=seed, profile=p["PROFILE"], ckpt_dir=checkpoint_dir(task, p["PROFILE"]))
        tiers = ", ".join(f"{k}={v['eval_return_mean']:.0f}" for k, v in s["tiers"].items())
        print(f"{task}: {'flat' if s['flat'] else 'NOT flat'} after {s['steps']} agent steps; {tiers}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
