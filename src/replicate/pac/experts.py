"""The SAC experts behind the PAC datasets: training, snapshots of increasing quality, loading.

:func:`train_expert` trains one SAC agent (:mod:`replicate.rl.sac`) per dm_control task and saves one
actor snapshot per quality tier to ``data/pac/experts/<profile>/<task>/<tier>.npz`` plus
``summary.json`` (small; committed for the cpu/full profiles so that regenerating a dataset needs no
expert training); :func:`load_snapshots` / :func:`load_summary` read them back for
:mod:`replicate.pac.collect`. :class:`ExpertConfig` holds the settings of one expert run.

Expert-training stage: ``python -m replicate.pac.experts [--profile P] [--tasks T ...]`` with the settings of
``params.yaml`` -> ``notebooks.30_pac_datasets.<profile>`` (``TASKS``, ``EXPERT_STEPS``, ``TIERS``,
``SNAPSHOT_FRACTIONS``, ``ACTION_REPEAT``, ``SAC_HIDDEN``, ``SEED``). DVC stage ``pac_experts``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import jax

from replicate import io
from replicate.pac import paths
from replicate.params import ParameterError, notebook_params
from replicate.rl import sac
from replicate.rl.dmc import DMCEnv

#: SAC minibatch size of the expert runs (our choice for a CPU).
EXPERT_BATCH_SIZE = 128
#: Upper bound of the uniform-random warm-up; shorter runs warm up for a quarter of their steps.
MAX_WARMUP_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
    """Settings of one expert run (one SAC agent per task; notebook 30 and the ``pac_experts`` stage).

    Attributes:
        steps: SAC agent steps per task (``EXPERT_STEPS``).
        tiers: snapshot names of increasing quality, e.g. ``("early", "medium", "expert")`` (``TIERS``).
        fractions: snapshot ``i`` is taken at ``steps * fractions[i]`` (``SNAPSHOT_FRACTIONS``); ``None``:
            evenly spaced, ``(i + 1) / len(tiers)``. A geometric schedule such as ``(1/16, 1/4, 1)``
            separates the tiers better on tasks that are learned early.
        hidden: width of the SAC MLPs (``SAC_HIDDEN``).
        action_repeat: dm_control action repeat (``ACTION_REPEAT``).
        eval_episodes: evaluation episodes per snapshot (stochastic policy, as used for data collection).
    """

    steps: int
    tiers: tuple[str, ...]
    hidden: int
    action_repeat: int
    fractions: tuple[float, ...] | None = None
    eval_episodes: int = 3

    def __post_init__(self):
        object.__setattr__(self, "tiers", tuple(self.tiers))
        if self.fractions is not None:
            object.__setattr__(self, "fractions", tuple(self.fractions))
        if self.steps < 1:
            raise ParameterError(f"EXPERT_STEPS={self.steps} must be >= 1")
        if not self.tiers or len(set(self.tiers)) != len(self.tiers):
            raise ParameterError(f"TIERS={list(self.tiers)} must be a non-empty list of distinct names")
        if self.hidden < 1 or self.action_repeat < 1 or self.eval_episodes < 1:
            raise ParameterError(f"SAC_HIDDEN={self.hidden}, ACTION_REPEAT={self.action_repeat} and "
                                 f"eval_episodes={self.eval_episodes} must all be >= 1")
        f = list(self.snapshot_fractions)
        if len(f) != len(self.tiers) or any(not 0 < x <= 1 for x in f) or f != sorted(f) or f[-1] != 1:
            raise ParameterError(f"SNAPSHOT_FRACTIONS={f} must be increasing in (0, 1], end at 1 and have one entry "
                                 f"per tier of TIERS={list(self.tiers)}")

    @property
    def snapshot_fractions(self) -> tuple[float, ...]:
        """``fractions``, or the evenly spaced default."""
        n = len(self.tiers)
        return self.fractions if self.fractions is not None else tuple((i + 1) / n for i in range(n))

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        """The agent step of every tier's snapshot (at least 1)."""
        return tuple(max(1, int(round(self.steps * f))) for f in self.snapshot_fractions)

    def sac_config(self) -> sac.SACConfig:
        """SAC hyper-parameters of the run: :class:`replicate.rl.sac.SACConfig` defaults except width, batch
        size and the warm-up (a quarter of the steps, at most :data:`MAX_WARMUP_STEPS`)."""
        return sac.SACConfig(hidden=self.hidden, batch_size=EXPERT_BATCH_SIZE,
                             warmup_steps=min(MAX_WARMUP_STEPS, self.steps // 4))


def train_expert(task: str, cfg: ExpertConfig, seed: int, profile: str = "smoke",
                 out_dir: Path | None = None) -> dict[str, Any]:
    """Train SAC on ``task``; save one snapshot per tier (last = final = best tier) under
    ``out_dir`` (default ``data/pac/experts/<profile>/<task>``).

    Returns a summary (also written to ``summary.json``) with the evaluation returns (stochastic policy, as
    used for data collection) of every snapshot and the training curve.
    """
    sac_cfg = cfg.sac_config()
    env = DMCEnv(task, seed=seed, action_repeat=cfg.action_repeat)
    at = cfg.snapshot_steps
    agent, _, snaps, log = sac.train(env, cfg.steps, jax.random.PRNGKey(seed), sac_cfg, snapshot_steps=at)
    out_dir = Path(out_dir) if out_dir is not None else paths.experts_dir(profile) / task
    summary: dict[str, Any] = {"task": task, "steps": cfg.steps, "action_repeat": cfg.action_repeat,
                               "hidden": sac_cfg.hidden, "fractions": list(cfg.snapshot_fractions), "tiers": {}}

    def make_env(s: int) -> DMCEnv:
        return DMCEnv(task, seed=10_000 + s, action_repeat=cfg.action_repeat)

    for tier, step in zip(cfg.tiers, at):
        rets = sac.evaluate(agent, snaps[step], make_env, cfg.eval_episodes, seed, deterministic=False)
        meta = {"task": task, "tier": tier, "step": step, "action_repeat": cfg.action_repeat, "hidden": sac_cfg.hidden,
                "obs_dim": env.obs_dim, "action_dim": env.action_dim, "eval_return_mean": float(rets.mean())}
        sac.save_actor(out_dir / f"{tier}.npz", snaps[step], meta)
        summary["tiers"][tier] = meta
    summary["training_curve"] = log
    io.write_json(out_dir / "summary.json", summary)
    return summary


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
    cfg = ExpertConfig(steps=p["EXPERT_STEPS"], tiers=p["TIERS"], hidden=p["SAC_HIDDEN"],
                       action_repeat=p["ACTION_REPEAT"], fractions=p["SNAPSHOT_FRACTIONS"])
    for i, task in enumerate(tasks):
        t0 = time.perf_counter()
        s = train_expert(task, cfg, seed=p["SEED"] + i, profile=p["PROFILE"])
        tiers = ", ".join(f"{k}={v['eval_return_mean']:.0f}" for k, v in s["tiers"].items())
        print(f"{task}: {tiers}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
