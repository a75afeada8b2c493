"""One offline run: train a Perceiver actor-critic on a mixed dataset with a given ``alpha`` (BC, PAC,
alpha sweep) and evaluate it in every task's simulator. Used by notebooks 31 and 32 and the benchmark.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from replicate.pac import data as D
from replicate.pac import datasets as DS
from replicate.pac import train as T
from replicate.pac.losses import PACConfig
from replicate.pac.perceiver import PerceiverConfig, flops_per_sample, make_config, param_count

#: The two methods compared in notebook 31 (paper Sec. 4): ``(alpha, critic_weight)``.
BC = (1.0, 0.0)


def load_mixed(name: str, holdout_episodes: int = 0):
    """Read dataset ``name`` (all tasks) and merge it; optionally hold out the last episodes of every task.

    Returns ``(train, holdout or None, metas)``; both merged dicts share the training normalisation.
    """
    per_task = DS.read_datasets(name)
    metas = [m for _, m in per_task]
    if holdout_episodes <= 0:
        return D.merge_tasks(per_task), None, metas
    train_parts, hold_parts = [], []
    for arrays, meta in per_task:
        e = len(arrays["episode_returns"])
        if holdout_episodes >= e:
            raise ValueError(f"holdout_episodes={holdout_episodes} leaves no training data for {meta['task']} ({e} episodes)")
        # Hold out a spread of episodes (every k-th), so every quality tier is represented.
        hold = np.zeros(e, bool)
        hold[np.linspace(0, e - 1, holdout_episodes).round().astype(int)] = True
        rows = hold[arrays["episode_ids"]]
        sub = lambda keep, rows=rows: {k: (v[keep[arrays["episode_ids"]]] if k not in ("episode_returns", "episode_quality") else v[keep]) for k, v in arrays.items()}  # noqa: E731
        del rows
        train_parts.append((sub(~hold), meta))
        hold_parts.append((sub(hold), meta))
    train = D.merge_tasks(train_parts)
    held = D.merge_tasks(hold_parts)
    # Re-normalise the held-out observations with the training statistics.
    for k in ("obs", "next_obs"):
        raw = held[k] * held["obs_std"][held["task"]] + held["obs_mean"][held["task"]]
        held[k] = np.where(held["obs_mask"], (raw - train["obs_mean"][held["task"]]) / train["obs_std"][held["task"]], 0.0).astype(np.float32)
    held.update(obs_mean=train["obs_mean"], obs_std=train["obs_std"])
    return train, held, metas


def network_config(merged: Mapping[str, np.ndarray], size: str, num_action_bins: int, num_value_bins: int, gamma: float) -> PerceiverConfig:
    """Network for these data; value support [0, 1 / (1 - gamma)] (rewards are scaled into [0, 1])."""
    return make_config(size, obs_dim=merged["obs"].shape[1], action_dim=merged["action"].shape[1],
                       num_tasks=len(merged["obs_dim"]), num_action_bins=num_action_bins,
                       num_value_bins=num_value_bins, v_min=0.0, v_max=1.0 / (1.0 - gamma))


def run(
    merged: Mapping[str, np.ndarray],
    metas: Sequence[Mapping[str, Any]],
    net: PerceiverConfig,
    pac: PACConfig,
    tc: T.TrainConfig,
    steps: int,
    seed: int,
    alpha: float,
    critic_weight: float = 1.0,
    eval_episodes: int = 2,
    action_repeat: int = 4,
    holdout: Mapping[str, np.ndarray] | None = None,
    chunk: int = 0,
) -> dict[str, Any]:
    """Train from scratch with ``(alpha, critic_weight)`` for ``steps`` updates; evaluate; return a result row."""
    key = jax.random.PRNGKey(seed)
    k_init, k_fit = jax.random.split(key)
    model, state = T.init_state(net, pac, tc, k_init)
    data = T.device_data(merged, tc.reward_scale)
    state, metrics, seconds = T.fit(model, state, data, k_fit, pac, tc, steps, chunk=chunk, alpha=alpha, critic_weight=critic_weight)
    tail = max(1, steps // 10)
    row: dict[str, Any] = {
        "alpha": alpha, "critic_weight": critic_weight, "seed": seed, "steps": steps,
        "params": param_count(state.params), "train_seconds": seconds,
        "train_flops": 3.0 * flops_per_sample(net, pac.num_policy_samples) * tc.batch_size * steps,
        "bc_nll_start": float(metrics["bc_nll"][:tail].mean()), "bc_nll_end": float(metrics["bc_nll"][-tail:].mean()),
        "critic_loss_end": float(metrics["critic_loss"][-tail:].mean()),
        "finite": bool(all(np.isfinite(v).all() for v in metrics.values())),
        "curve_bc_nll": metrics["bc_nll"], "curve_critic": metrics["critic_loss"],
    }
    if holdout is not None:
        row.update(heldout_losses(model, state, holdout, pac, tc, seed))
    if eval_episodes > 0:
        ev = T.evaluate(model, state.params, merged, metas, eval_episodes, seed, action_repeat)
        for task, r in ev.items():
            row[f"norm/{task}"] = r["normalised"]
            row[f"return/{task}"] = r["return"]
        row["normalised_mean"] = float(np.mean([r["normalised"] for r in ev.values()]))
    return row


def heldout_losses(model, state: T.TrainState, held: Mapping[str, np.ndarray], pac: PACConfig, tc: T.TrainConfig, seed: int, max_rows: int = 4096) -> dict[str, float]:
    """BC negative log-likelihood and critic loss on held-out episodes (the scaling-law targets, nb 32)."""
    n = min(len(held["reward"]), max_rows)
    idx = np.linspace(0, len(held["reward"]) - 1, n).astype(int)
    batch = {k: jax.numpy.asarray(held[k][idx]) for k in T.BATCH_KEYS}
    batch["reward"] = batch["reward"] * tc.reward_scale
    _, aux = _heldout_fn(model, pac)(state.params, state.target_params, state.log_temperature, batch, jax.random.PRNGKey(seed))
    return {"heldout_bc_nll": float(aux["bc_nll"]), "heldout_critic_loss": float(aux["critic_loss"])}


@functools.lru_cache(maxsize=16)
def _heldout_fn(model, pac: PACConfig):
    from replicate.pac.losses import pac_loss

    return jax.jit(lambda p, t, lt, b, k: pac_loss(p, t, lt, b, k, model, pac))


def replace(cfg, **kw):
    return dataclasses.replace(cfg, **kw)
