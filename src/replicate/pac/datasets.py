"""Making the PAC offline datasets: experts per task (SAC), policy snapshots, mixed-quality rollouts.

The paper trains on a large pre-existing mix of expert and sub-optimal data (Sec. 4, "Data"); we
build our own the way D4RL does (Fu et al. 2020): train an off-policy agent (SAC,
:mod:`replicate.rl.sac`) per dm_control task, keep actor snapshots of increasing quality along the
way, and roll out a dataset that mixes episodes of each snapshot ("tiers") in stated proportions,
plus a uniform-random policy share. Snapshots are small and committed
(``data/pac/experts/<task>/<tier>.npz``); datasets are DVC-cached (``data/pac/datasets/<name>/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from replicate import io, outputs
from replicate.pac import data as D
from replicate.rl import sac
from replicate.rl.dmc import DMCEnv

RANDOM = "random"


def _pac_root(profile: str) -> Path:
    """``data/pac`` for the cpu/full profiles; ``data/pac/smoke`` (git-ignored scratch) for smoke, so
    CI runs never touch the DVC outputs ``data/pac/experts`` and ``data/pac/datasets``."""
    root = outputs.data_dir() / "pac"
    return root / "smoke" if profile == "smoke" else root


def experts_dir(profile: str) -> Path:
    """``data/pac/experts/<profile>`` (small, committed) or ``data/pac/smoke/experts/smoke``."""
    return _pac_root(profile) / "experts" / profile


def datasets_dir(name: str) -> Path:
    """``name`` is ``<profile>/<mix>`` (e.g. ``cpu/expert30``): ``data/pac/datasets/<name>`` (DVC-cached,
    not in git), or ``data/pac/smoke/datasets/<name>`` for the smoke profile."""
    return _pac_root(name.split("/")[0]) / "datasets" / name


def train_expert(
    task: str,
    steps: int,
    tiers: Sequence[str],
    seed: int,
    action_repeat: int = 4,
    cfg: sac.SACConfig = sac.SACConfig(hidden=128, batch_size=128, warmup_steps=500),
    out_dir: Path | None = None,
    eval_episodes: int = 3,
    profile: str = "smoke",
    fractions: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Train SAC on ``task``; save one snapshot per tier (last = final = best tier).

    ``tiers`` are names of increasing quality (e.g. ``("early", "medium", "expert")``); snapshot ``i``
    is taken at ``steps * fractions[i]`` (default: evenly spaced, ``(i + 1) / len(tiers)``; a geometric
    schedule such as ``(1/16, 1/4, 1)`` separates the tiers better on tasks that are learned early).
    Returns a summary with the evaluation returns (stochastic policy, as used for data collection)
    of every snapshot and the training curve.
    """
    fractions = list(fractions) if fractions is not None else [(i + 1) / len(tiers) for i in range(len(tiers))]
    if len(fractions) != len(tiers) or any(not 0 < f <= 1 for f in fractions) or list(fractions) != sorted(fractions) or fractions[-1] != 1:
        raise ValueError(f"fractions={fractions} must be increasing in (0, 1], end at 1 and match tiers={list(tiers)}")
    env = DMCEnv(task, seed=seed, action_repeat=action_repeat)
    at = [max(1, int(round(steps * f))) for f in fractions]
    agent, _, snaps, log = sac.train(env, steps, jax.random.PRNGKey(seed), cfg, snapshot_steps=tuple(at))
    out_dir = Path(out_dir) if out_dir is not None else experts_dir(profile) / task
    summary: dict[str, Any] = {"task": task, "steps": steps, "action_repeat": action_repeat, "hidden": cfg.hidden,
                               "fractions": fractions, "tiers": {}}
    for tier, step in zip(tiers, at):
        rets = sac.evaluate(agent, snaps[step], lambda s: DMCEnv(task, seed=10_000 + s, action_repeat=action_repeat), eval_episodes, seed, deterministic=False)
        meta = {"task": task, "tier": tier, "step": step, "action_repeat": action_repeat, "hidden": cfg.hidden,
                "obs_dim": env.obs_dim, "action_dim": env.action_dim, "eval_return_mean": float(rets.mean())}
        sac.save_actor(out_dir / f"{tier}.npz", snaps[step], meta)
        summary["tiers"][tier] = meta
    summary["training_curve"] = log
    io.write_json(out_dir / "summary.json", summary)
    return summary


def load_snapshots(task: str, tiers: Sequence[str], profile: str = "smoke", directory: Path | None = None) -> dict[str, tuple[Any, dict]]:
    directory = Path(directory) if directory is not None else experts_dir(profile) / task
    out = {}
    for tier in tiers:
        path = directory / f"{tier}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no snapshot; train it with `python -m replicate.pac.experts --profile {profile}` (dvc repro pac_experts)")
        out[tier] = sac.load_actor(path)
    return out


def rollout(task: str, policy, episodes: int, seed: int, action_repeat: int) -> list[dict[str, np.ndarray]]:
    """Episodes of ``policy(obs_batch, key) -> actions`` (``None``: uniform random), run in lockstep."""
    envs = [DMCEnv(task, seed=seed * 1000 + i, action_repeat=action_repeat) for i in range(episodes)]
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    obs = np.stack([e.reset() for e in envs])
    eps = [{"obs": [], "act": [], "rew": [], "disc": [], "next": []} for _ in envs]
    done = np.zeros(episodes, bool)
    while not done.all():
        if policy is None:
            act = rng.uniform(-1, 1, (episodes, envs[0].action_dim)).astype(np.float32)
        else:
            key, k = jax.random.split(key)
            act = np.asarray(policy(obs, k), np.float32)
        for i, env in enumerate(envs):
            if done[i]:
                continue
            st = env.step(act[i])
            e = eps[i]
            e["obs"].append(obs[i].copy()); e["act"].append(np.clip(act[i], -1, 1)); e["rew"].append(st.reward)
            e["disc"].append(st.discount); e["next"].append(st.obs)
            obs[i] = st.obs
            done[i] = st.last
    return [{k: np.asarray(v, np.float32) for k, v in e.items()} for e in eps]


def make_task_dataset(
    task: str,
    task_id: int,
    snapshots: Mapping[str, tuple[Any, dict]],
    episodes_per_tier: Mapping[str, int],
    seed: int,
    action_repeat: int,
    hidden: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Roll out ``episodes_per_tier[tier]`` episodes per tier (``"random"`` = uniform policy) into one dataset.

    Quality tiers are numbered ``0 = random`` then the snapshot tiers in the given (increasing) order.
    The normalisation constants are the mean returns of the random and the best-tier episodes.
    """
    tier_names = [RANDOM] + [t for t in snapshots]
    env = DMCEnv(task, seed=0, action_repeat=action_repeat)
    agent = sac.SAC(env.obs_dim, env.action_dim, sac.SACConfig(hidden=hidden))
    episodes, quality = [], []
    for q, tier in enumerate(tier_names):
        n = int(episodes_per_tier.get(tier, 0))
        if n <= 0:
            continue
        pol = None if tier == RANDOM else (lambda o, k, p=snapshots[tier][0]: agent.act(p, o, k))
        eps = rollout(task, pol, n, seed=seed * 7919 + q * 101 + task_id, action_repeat=action_repeat)
        episodes += eps
        quality += [q] * len(eps)
    if not episodes:
        raise ValueError(f"{task}: episodes_per_tier {dict(episodes_per_tier)} asks for no episodes")
    lengths = [len(e["rew"]) for e in episodes]
    arrays = {
        "observations": np.concatenate([e["obs"] for e in episodes]),
        "actions": np.concatenate([e["act"] for e in episodes]),
        "rewards": np.concatenate([e["rew"] for e in episodes]),
        "discounts": np.concatenate([e["disc"] for e in episodes]),
        "next_observations": np.concatenate([e["next"] for e in episodes]),
        "episode_ids": np.repeat(np.arange(len(episodes)), lengths).astype(np.int32),
        "step_in_episode": np.concatenate([np.arange(n) for n in lengths]).astype(np.int32),
        "task_id": np.full(sum(lengths), task_id, np.int32),
        "quality": np.repeat(np.asarray(quality, np.int8), lengths),
        "episode_returns": np.asarray([e["rew"].sum() for e in episodes], np.float32),
        "episode_quality": np.asarray(quality, np.int8),
    }
    rets = arrays["episode_returns"]
    best = max(quality)
    meta = {
        "task": task, "task_id": task_id, "obs_dim": env.obs_dim, "action_dim": env.action_dim,
        "quality_names": tier_names, "action_repeat": action_repeat, "seed": seed,
        "mix": {t: int(episodes_per_tier.get(t, 0)) for t in tier_names},
        "expert_return": float(rets[arrays["episode_quality"] == best].mean()),
        "random_return": float(rets[arrays["episode_quality"] == 0].mean()) if 0 in quality else 0.0,
    }
    return arrays, meta


def mix_to_episodes(total_episodes: int, expert_share: float, tiers: Sequence[str], random_share: float) -> dict[str, int]:
    """Split ``total_episodes``: ``expert_share`` to the best tier, ``random_share`` to random, rest evenly to the others."""
    if not 0 <= expert_share <= 1 or not 0 <= random_share <= 1 or expert_share + random_share > 1:
        raise ValueError(f"expert_share={expert_share} and random_share={random_share} must be in [0, 1] and sum to <= 1")
    n_exp = int(round(total_episodes * expert_share))
    n_rand = int(round(total_episodes * random_share))
    rest = total_episodes - n_exp - n_rand
    mids = list(tiers[:-1])
    out = {RANDOM: n_rand, tiers[-1]: n_exp}
    for i, t in enumerate(mids):
        out[t] = rest // len(mids) + (1 if i < rest % len(mids) else 0)
    if not mids:
        out[tiers[-1]] += rest
    return out


def write_datasets(name: str, per_task: Sequence[tuple[dict, dict]]) -> list[Path]:
    d = datasets_dir(name)
    paths = [D.write_dataset(d / f"{meta['task']}.npz", arrays, meta) for arrays, meta in per_task]
    io.write_json(d / "index.json", {"tasks": [m["task"] for _, m in per_task], "files": [p.name for p in paths]})
    return paths


def read_datasets(name: str) -> list[tuple[dict, dict]]:
    d = datasets_dir(name)
    if not (d / "index.json").exists():
        raise D.DatasetError(f"{d}: no dataset {name!r}; generate it with notebooks/30_pac_datasets.ipynb")
    index = json.loads((d / "index.json").read_text())
    return [D.read_dataset(d / f) for f in index["files"]]
