"""One offline run: train a Perceiver actor-critic on a mixed dataset (:func:`replicate.pac.offline_data.load_mixed`)
with a given ``(alpha, critic_weight)`` (BC, PAC, alpha sweep) and evaluate it in every task's simulator.
Used by notebooks 31 and 32.

The run's settings live in three configs, each owning its defaults and validation:
:class:`replicate.pac.perceiver.PerceiverConfig` (network, :func:`network_config`),
:class:`replicate.pac.losses.PACConfig` (objective) and :class:`replicate.pac.train.TrainConfig`
(optimisation).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from replicate.pac import train
from replicate.pac.losses import PACConfig, pac_loss
from replicate.pac.perceiver import PerceiverConfig, make_config, param_count, train_flops_per_sample

#: Behaviour cloning as ``(alpha, critic_weight)``: pure BC term, no critic loss (paper Sec. 3.1: alpha = 1 is BC).
BC = (1.0, 0.0)


def methods(alpha: float) -> dict[str, tuple[float, float]]:
    """The two methods compared in notebooks 31 and 32, as ``{name: (alpha, critic_weight)}``: BC and PAC
    (BC weight ``alpha``, critic on)."""
    return {"BC": BC, "PAC": (alpha, 1.0)}


def flop_method(alpha: float, critic_weight: float) -> str:
    """Which method's compute an ``(alpha, critic_weight)`` run is charged
    (:func:`replicate.pac.perceiver.train_flops_per_sample`): ``"BC"`` for :data:`BC` (no critic, no improvement
    term: encoder and policy decoder only), ``"PAC"`` otherwise (any critic or improvement term needs the target
    network's passes and the sampled-action critic passes)."""
    return "BC" if (float(alpha), float(critic_weight)) == BC else "PAC"


def network_config(merged: Mapping[str, np.ndarray], size: str, num_action_bins: int, num_value_bins: int,
                   gamma: float) -> PerceiverConfig:
    """Network for these data; value support [0, 1 / (1 - gamma)] (rewards are scaled into [0, 1])."""
    return make_config(size, obs_dim=merged["obs"].shape[1], action_dim=merged["action"].shape[1],
                       num_tasks=len(merged["obs_dim"]), num_action_bins=num_action_bins,
                       num_value_bins=num_value_bins, v_min=0.0, v_max=1.0 / (1.0 - gamma))


def run(
    merged: Mapping[str, np.ndarray],
    metas: Sequence[Mapping[str, Any]],
    net: PerceiverConfig,
    pac: PACConfig,
    tc: train.TrainConfig,
    steps: int,
    seed: int,
    alpha: float,
    critic_weight: float,
    *,
    eval_episodes: int,
    action_repeat: int,
    holdout: Mapping[str, np.ndarray] | None = None,
    chunk: int = 0,
) -> dict[str, Any]:
    """Train from scratch with ``(alpha, critic_weight)`` for ``steps`` updates; return a result row.

    With ``holdout`` the row has the held-out losses (:func:`heldout_losses`); with ``eval_episodes > 0``
    the normalised return of ``eval_episodes`` simulator episodes per task (``action_repeat`` as in the data).
    """
    key = jax.random.PRNGKey(seed)
    k_init, k_fit = jax.random.split(key)
    model, state = train.init_state(net, pac, tc, k_init)
    data = train.device_data(merged, tc.reward_scale)
    state, metrics, seconds = train.fit(model, state, data, k_fit, pac, tc, steps, chunk=chunk, alpha=alpha,
                                        critic_weight=critic_weight)
    tail = max(1, steps // 10)
    row: dict[str, Any] = {
        "alpha": alpha, "critic_weight": critic_weight, "seed": seed, "steps": steps,
        "params": param_count(state.params), "train_seconds": seconds,
        "train_flops": train_flops_per_sample(net, pac, flop_method(alpha, critic_weight)) * tc.batch_size * steps,
        "bc_nll_start": float(metrics["bc_nll"][:tail].mean()), "bc_nll_end": float(metrics["bc_nll"][-tail:].mean()),
        "critic_loss_end": float(metrics["critic_loss"][-tail:].mean()),
        "finite": bool(all(np.isfinite(v).all() for v in metrics.values())),
        "curve_bc_nll": metrics["bc_nll"], "curve_critic": metrics["critic_loss"],
    }
    if holdout is not None:
        row.update(heldout_losses(model, state, holdout, pac, tc, seed))
    if eval_episodes > 0:
        ev = train.evaluate(model, state.params, merged, metas, eval_episodes, seed, action_repeat=action_repeat)
        for task, r in ev.items():
            row[f"norm/{task}"] = r["normalised"]
            row[f"return/{task}"] = r["return"]
        row["normalised_mean"] = float(np.mean([r["normalised"] for r in ev.values()]))
    return row


def heldout_losses(model, state: train.TrainState, held: Mapping[str, np.ndarray], pac: PACConfig,
                   tc: train.TrainConfig, seed: int, max_rows: int = 4096) -> dict[str, float]:
    """BC negative log-likelihood and critic loss on held-out episodes (the scaling-law targets, nb 32)."""
    n = min(len(held["reward"]), max_rows)
    idx = np.linspace(0, len(held["reward"]) - 1, n).astype(int)
    batch = {k: jax.numpy.asarray(held[k][idx]) for k in train.BATCH_KEYS}
    batch["reward"] = batch["reward"] * tc.reward_scale
    loss_fn = _heldout_fn(model, pac)
    _, aux = loss_fn(state.params, state.target_params, state.log_temperature, batch, jax.random.PRNGKey(seed))
    return {"heldout_bc_nll": float(aux["bc_nll"]), "heldout_critic_loss": float(aux["critic_loss"])}


@functools.lru_cache(maxsize=16)
def _heldout_fn(model, pac: PACConfig):
    return jax.jit(lambda p, t, lt, b, k: pac_loss(p, t, lt, b, k, model, pac))

