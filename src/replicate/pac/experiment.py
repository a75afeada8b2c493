"""One offline run: train a Perceiver actor-critic on a mixed dataset (:func:`replicate.pac.offline_data.load_mixed`)
with a given ``(alpha, critic_weight)`` (BC, PAC, alpha sweep) and evaluate it in every task's simulator.
Used by notebooks 31 and 32.

The run's settings live in three configs, each owning its defaults and validation:
:class:`replicate.pac.perceiver.PerceiverConfig` (network, :func:`network_config`),
:class:`replicate.pac.losses.PACConfig` (objective) and :class:`replicate.pac.train.TrainConfig`
(optimisation).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from replicate.pac import offline_peers, train
from replicate.pac.losses import PACConfig, pac_loss
from replicate.pac.perceiver import PerceiverConfig, make_config, param_count, train_flops_per_sample
from replicate.params import ParameterError

#: Behaviour cloning as ``(alpha, critic_weight)``: pure BC term, no critic loss (alpha = 1 is BC: secondary summary).
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


#: BC on the best episodes only (:func:`replicate.pac.offline_data.top_episodes`): notebook 31's positive control. It
#: trains exactly like BC (same network, same step) on other data, so it is charged BC's FLOPs.
FILTERED_BC = "filtered BC"
#: The methods of notebook 31, in display order: BC and PAC (the Perceiver) and the offline-RL peers.
ALL_METHODS = ("BC", FILTERED_BC, "TD3+BC", "IQL", "PAC")
PERCEIVER_METHODS = ("BC", FILTERED_BC, "PAC")


def update_flops(method: str, net: PerceiverConfig, pac: PACConfig, tc: train.TrainConfig,
                 peers: Mapping[str, offline_peers.PeerConfig], merged: Mapping[str, np.ndarray]) -> float:
    """Training FLOPs of one update of ``method`` on these data: ``"BC"``/``"filtered BC"``/``"PAC"`` charge
    :func:`replicate.pac.perceiver.train_flops_per_sample` x ``tc.batch_size`` (BC's own step: encoder and policy
    decoder only, :func:`train_chunk`); ``"TD3+BC"``/``"IQL"`` charge
    :func:`replicate.pac.offline_peers.update_flops` of ``peers[method]`` (observations with the task one-hot)."""
    if method in PERCEIVER_METHODS:
        return train_flops_per_sample(net, pac, "PAC" if method == "PAC" else "BC") * tc.batch_size
    if method not in peers:
        raise ParameterError(f"method={method!r}: choose one of {ALL_METHODS}")
    obs_dim = merged["obs"].shape[1] + len(merged["obs_dim"])
    return offline_peers.update_flops(peers[method], obs_dim, merged["action"].shape[1])


def steps_for_budget(budget: float, flops_per_update: float, chunk: int) -> int:
    """Updates that spend ``budget`` training FLOPs, rounded to a multiple of ``chunk`` (at least one chunk)."""
    return max(chunk, int(round(budget / flops_per_update / chunk)) * chunk)


def peer_reward_scale(method: str, merged: Mapping[str, np.ndarray], tc: train.TrainConfig) -> float | np.ndarray:
    """The reward scale a peer trains with: IQL's D4RL rescaling ``1000 / (max - min episode return)``
    (:func:`replicate.pac.offline_peers.iql_reward_scale`) of each task's own episodes (one factor per task, on the raw
    rewards; merged data carry the spans as ``return_span``); TD3+BC the Perceiver's ``tc.reward_scale``."""
    if method == "IQL":
        return np.asarray([offline_peers.iql_reward_scale(np.array([0.0, span])) if span > 0 else tc.reward_scale
                           for span in np.asarray(merged["return_span"], np.float64)])
    return tc.reward_scale


def run_method(
    method: str,
    merged: Mapping[str, np.ndarray],
    metas: Sequence[Mapping[str, Any]],
    net: PerceiverConfig,
    pac: PACConfig,
    tc: train.TrainConfig,
    peers: Mapping[str, offline_peers.PeerConfig],
    seed: int,
    *,
    steps: int,
    eval_episodes: int,
    action_repeat: int,
    chunk: int,
    eval_every: int = 0,
    alpha: float | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    stop: Callable | None = None,
) -> dict[str, Any]:
    """One run of ``method`` (one of :data:`ALL_METHODS`) for ``steps`` updates (at most: ``stop``, e.g.
    :func:`replicate.pac.convergence.curve_is_flat`, may end it at an evaluation).

    BC, filtered BC and PAC go through :func:`run` (BC: its own step, :func:`train_chunk`; filtered BC is BC on the
    data the caller filtered; PAC's BC weight ``alpha``, default ``pac.alpha``); TD3+BC and IQL through
    :func:`replicate.pac.offline_peers.run` with ``peers[method]`` (its ``num_updates`` replaced) on the same data,
    TD3+BC with the Perceiver's reward scale and IQL with its own (:func:`peer_reward_scale`). All evaluate with
    :func:`replicate.pac.train.evaluate`. The row gains ``method``, ``flops_per_update`` and ``train_flops`` (what
    the updates done cost); the Perceiver's per-update loss curves are dropped (plain, picklable data for
    :mod:`replicate.resumable`). With ``checkpoint_dir`` (e.g. :meth:`replicate.resumable.Units.checkpoint_dir`) the
    training checkpoints there and resumes (:func:`replicate.pac.train.train_in_chunks`).
    """
    if method not in ALL_METHODS:
        raise ParameterError(f"method={method!r}: choose one of {ALL_METHODS}")
    flops = update_flops(method, net, pac, tc, peers, merged)
    if method in PERCEIVER_METHODS:
        a, cw = BC if method != "PAC" else (pac.alpha if alpha is None else alpha, 1.0)
        row = run(merged, metas, net, pac, tc, steps, seed, a, cw, eval_episodes=eval_episodes,
                  action_repeat=action_repeat, chunk=chunk, eval_every=eval_every, checkpoint_dir=checkpoint_dir,
                  stop=stop)
        row = {k: v for k, v in row.items() if k not in ("curve_bc_nll", "curve_critic")}
    else:
        cfg = dataclasses.replace(peers[method], num_updates=steps)
        row = offline_peers.run(cfg, merged, metas, seed, eval_episodes=eval_episodes, action_repeat=action_repeat,
                                reward_scale=peer_reward_scale(method, merged, tc), eval_every=eval_every,
                                chunk=chunk, checkpoint_dir=checkpoint_dir, stop=stop)
    return {**row, "method": method, "flops_per_update": float(flops), "train_flops": float(flops) * row["steps"]}


def train_chunk(model, pac: PACConfig, tc: train.TrainConfig, n: int, alpha: float, critic_weight: float):
    """The jitted ``n``-update training scan of a run with ``(alpha, critic_weight)``: BC (:data:`BC`) compiles its own
    step (encoder and policy decoder only: no target-network or critic passes, what
    :func:`replicate.pac.perceiver.train_flops_per_sample` charges BC), every other setting PAC's full step."""
    return train.make_train_fn(model, pac, tc, n, bc_only=flop_method(alpha, critic_weight) == "BC")


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
    eval_every: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    every_s: float = 600.0,
    stop: Callable | None = None,
) -> dict[str, Any]:
    """Train from scratch with ``(alpha, critic_weight)`` for ``steps`` updates (fewer when ``stop`` ends the run at
    an evaluation: :func:`replicate.pac.train.train_in_chunks`); return a result row.

    With ``holdout`` the row has the held-out losses (:func:`heldout_losses`); with ``eval_episodes > 0``
    the normalised return of ``eval_episodes`` simulator episodes per task (``action_repeat`` as in the data;
    :func:`replicate.pac.train.evaluate`). Training runs in jitted scans of ``chunk`` updates (default: all at
    once). With ``eval_every > 0`` (and ``eval_episodes > 0``) the policy is also evaluated after every
    ``eval_every`` updates (rounded up to a multiple of ``chunk``): ``curve_eval_steps``, ``curve_eval``
    (normalised mean over tasks) and ``curve_eval_tasks`` (per task), the last point being the final score.
    The loop is :func:`replicate.pac.train.train_in_chunks`: with ``checkpoint_dir`` it saves its state at most
    every ``every_s`` seconds and a re-run resumes there (same result as an uninterrupted run).
    """
    key = jax.random.PRNGKey(seed)
    k_init, k_fit = jax.random.split(key)
    model, state = train.init_state(net, pac, tc, k_init)
    data = train.device_data(merged, tc.reward_scale)

    def make_chunk(n: int):
        fn = train_chunk(model, pac, tc, n, alpha, critic_weight)
        # The chunk's key is the second half of split(k), as in the loop this one replaced (same runs, bit for bit).
        return lambda st, k: fn(st, data, jax.random.split(k)[1], alpha, critic_weight)

    def evaluate(st: train.TrainState):
        return train.evaluate(train.perceiver_policy(model, st.params), merged, metas, eval_episodes, seed,
                              action_repeat=action_repeat)

    state, metrics, seconds, curve = train.train_in_chunks(
        state, make_chunk, k_fit, steps, chunk=chunk, evaluate=evaluate if eval_episodes > 0 else None,
        tasks=[m["task"] for m in metas], eval_every=eval_every, checkpoint_dir=checkpoint_dir, every_s=every_s,
        stop=stop)
    done = len(metrics["bc_nll"])
    tail = max(1, done // 10)
    critic = metrics.get("critic_loss", np.zeros(0, np.float32))  # BC's own step trains no critic
    row: dict[str, Any] = {
        "alpha": alpha, "critic_weight": critic_weight, "seed": seed, "steps": done,
        "params": param_count(state.params), "train_seconds": seconds,
        "train_flops": train_flops_per_sample(net, pac, flop_method(alpha, critic_weight)) * tc.batch_size * done,
        "bc_nll_start": float(metrics["bc_nll"][:tail].mean()), "bc_nll_end": float(metrics["bc_nll"][-tail:].mean()),
        "critic_loss_end": float(critic[-tail:].mean()) if critic.size else float("nan"),
        "finite": bool(all(np.isfinite(v).all() for v in metrics.values())),
        "curve_bc_nll": metrics["bc_nll"], "curve_critic": critic,
    }
    if holdout is not None:
        row.update(heldout_losses(model, state, holdout, pac, tc, seed))
    if curve:
        row.update(train.score_row(curve[-1][1]))
        if eval_every > 0:
            row.update(train.eval_curve(curve))
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

