"""Collecting the PAC offline datasets: mixed-quality rollouts of expert snapshots.

The paper trains on a large pre-existing mix of expert and sub-optimal data (abstract); we build our
own the way D4RL does (Fu et al. 2020): :mod:`replicate.pac.experts` trains an off-policy agent (SAC)
per dm_control task and keeps actor snapshots of increasing quality ("tiers"); this module rolls out a
dataset per task that mixes episodes of each snapshot in stated proportions
(:func:`mix_to_episodes`), plus a uniform-random policy share (:func:`make_task_dataset`).
:mod:`replicate.pac.offline_data` writes and reads the result.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np

from replicate.params import ParameterError
from replicate.rl import sac
from replicate.rl.dmc import DMCEnv

RANDOM = "random"


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
            e["obs"].append(obs[i].copy())
            e["act"].append(np.clip(act[i], -1, 1))
            e["rew"].append(st.reward)
            e["disc"].append(st.discount)
            e["next"].append(st.obs)
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


def mix_to_episodes(total_episodes: int, expert_share: float, tiers: Sequence[str],
                    random_share: float) -> dict[str, int]:
    """Split ``total_episodes``: ``expert_share`` to the best tier, ``random_share`` to random, the rest evenly
    to the other tiers."""
    if not 0 <= expert_share <= 1 or not 0 <= random_share <= 1 or expert_share + random_share > 1:
        raise ParameterError(f"expert_share={expert_share} and random_share={random_share} must be in [0, 1] and "
                             "sum to <= 1; lower EXPERT_SHARES or RANDOM_SHARE")
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
