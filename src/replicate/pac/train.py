"""Offline training loop (jitted ``lax.scan`` over steps, data-parallel with ``jax.sharding``) and
evaluation of any multi-task policy in every task's simulator (normalised scores, expert 1 / random 0:
our normalisation).

One update: sample a minibatch uniformly from the mixed offline data, take a
gradient step on ``L_pi + critic_weight L_Q`` (network) and the temperature dual (``log eta``), and
copy the online parameters into the target network every ``target_update_period`` steps (a periodic
hard copy: our choice; the paper's target-update rule and period are not verified, see ``losses``).
When more than one device is present, the minibatch is sharded over a 1-D ``data`` mesh and the
parameters are replicated; XLA inserts the gradient all-reduce (GSPMD), so the same code runs on
one CPU, or on 8 accelerators.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from replicate import resumable
from replicate.pac import offline_data
from replicate.pac.losses import PACConfig, bc_loss, pac_loss
from replicate.pac.perceiver import PerceiverActorCritic, PerceiverConfig, init_params, undiscretise_actions
from replicate.params import ParameterError
from replicate.rl.dmc import DMCEnv

Array = jax.Array
BATCH_KEYS = ("obs", "next_obs", "obs_mask", "action", "action_mask", "reward", "discount", "task")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (AdamW + global-norm clipping, sized for a CPU; the paper's optimiser,
    learning rates and batch sizes are not verified against its appendix)."""

    batch_size: int = 64
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    reward_scale: float = 0.25  # rewards of action-repeat-4 steps lie in [0, 4] -> [0, 1]

    def __post_init__(self):
        if self.batch_size < 1:
            raise ParameterError(f"TrainConfig.batch_size={self.batch_size} must be >= 1 (BATCH_SIZE)")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.grad_clip <= 0 or self.reward_scale <= 0:
            raise ParameterError(f"TrainConfig: learning_rate={self.learning_rate}, grad_clip={self.grad_clip} and "
                                 f"reward_scale={self.reward_scale} must be > 0 and "
                                 f"weight_decay={self.weight_decay} >= 0")


class TrainState(NamedTuple):
    params: Any
    target_params: Any
    log_temperature: Array
    opt_state: Any
    step: Array


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                       optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay))


def init_state(net_cfg: PerceiverConfig, pac_cfg: PACConfig, train_cfg: TrainConfig,
               key: Array) -> tuple[PerceiverActorCritic, TrainState]:
    model, params = init_params(net_cfg, key)
    log_t = jnp.log(jnp.float32(pac_cfg.init_temperature))
    opt = make_optimizer(train_cfg)
    return model, TrainState(params, params, log_t, opt.init((params, log_t)), jnp.int32(0))


def device_data(merged: Mapping[str, np.ndarray], reward_scale: float) -> dict[str, Array]:
    """Put the merged training arrays on the device (replicated); rewards scaled by ``reward_scale``."""
    out = {k: jnp.asarray(merged[k]) for k in BATCH_KEYS}
    out["reward"] = out["reward"] * reward_scale
    return out


def _mesh() -> Mesh | None:
    devs = jax.devices()
    return Mesh(np.asarray(devs), ("data",)) if len(devs) > 1 else None


@functools.lru_cache(maxsize=32)
def make_train_fn(model: PerceiverActorCritic, pac_cfg: PACConfig, train_cfg: TrainConfig, num_steps: int,
                  bc_only: bool = False):
    """A jitted ``(state, data, key, alpha, critic_weight) -> (state, metrics)`` running ``num_steps``
    updates in ``lax.scan``. ``alpha`` and ``critic_weight`` are traced scalars (one compilation for
    BC = (1, 0), BC+Q (our label) = (1, 1), PAC = (alpha, 1) and any alpha sweep).
    ``bc_only=True`` compiles a plain BC step instead (encoder + policy decoder only; no target or
    critic passes, no target copy): the step BC runs (:func:`replicate.pac.experiment.train_chunk`) and the
    baseline of the throughput benchmark; it gives the same gradients as ``(alpha, critic_weight) = (1, 0)``.

    ``metrics`` holds the per-step scalars of :func:`replicate.pac.losses.pac_loss` (arrays of length
    ``num_steps``).
    """
    opt = make_optimizer(train_cfg)
    mesh = _mesh()
    if mesh is not None and train_cfg.batch_size % len(mesh.devices):
        raise ValueError(f"batch_size={train_cfg.batch_size} must be divisible by the {len(mesh.devices)} devices")

    def step_fn(state: TrainState, key: Array, data: Mapping[str, Array], alpha, critic_weight):
        k_idx, k_loss = jax.random.split(key)
        n = data["reward"].shape[0]
        idx = jax.random.randint(k_idx, (train_cfg.batch_size,), 0, n)
        batch = {k: v[idx] for k, v in data.items()}
        if mesh is not None:
            sharding = NamedSharding(mesh, PartitionSpec("data"))
            batch = {k: jax.lax.with_sharding_constraint(v, sharding) for k, v in batch.items()}

        def loss(pl):
            p, lt = pl
            if bc_only:
                nll = bc_loss(p, batch, model) + 0.0 * lt
                return nll, {"loss": nll, "bc_nll": nll}
            return pac_loss(p, state.target_params, lt, batch, k_loss, model, pac_cfg, alpha, critic_weight)

        (_, aux), grads = jax.value_and_grad(loss, has_aux=True)((state.params, state.log_temperature))
        updates, opt_state = opt.update(grads, state.opt_state, (state.params, state.log_temperature))
        params, log_t = optax.apply_updates((state.params, state.log_temperature), updates)
        step = state.step + 1
        if bc_only:  # no target network in BC
            target = state.target_params
        else:
            copy = (step % pac_cfg.target_update_period) == 0
            target = jax.tree_util.tree_map(lambda o, t: jnp.where(copy, o, t), params, state.target_params)
        metrics = {k: v for k, v in aux.items() if not k.startswith("_")}
        return TrainState(params, target, log_t, opt_state, step), metrics

    @jax.jit
    def train(state: TrainState, data: Mapping[str, Array], key: Array, alpha=pac_cfg.alpha,
              critic_weight=pac_cfg.critic_weight):
        alpha, critic_weight = jnp.float32(alpha), jnp.float32(critic_weight)
        keys = jax.random.split(key, num_steps)
        return jax.lax.scan(lambda s, k: step_fn(s, k, data, alpha, critic_weight), state, keys)

    return train


def chunk_schedule(steps: int, chunk: int, eval_every: int, *, evaluate: bool = True) -> tuple[list[int], list[bool]]:
    """Sizes of the jitted chunks of a ``steps``-update run (``chunk`` each, the last one shorter; ``chunk=0``:
    one chunk) and, per chunk, whether the policy is evaluated after it: after the last chunk, and with
    ``eval_every > 0`` also after every chunk that brings ``eval_every`` or more updates since the previous
    evaluation (so the spacing is ``eval_every`` rounded up to whole chunks). ``evaluate=False``: never."""
    if steps < 1:
        raise ParameterError(f"steps={steps}: a run needs at least one update")
    chunk = min(chunk or steps, steps)
    sizes = [chunk] * (steps // chunk) + ([steps % chunk] if steps % chunk else [])
    evals, since = [], 0
    for i, n in enumerate(sizes):
        since += n
        evals.append(evaluate and (i == len(sizes) - 1 or (eval_every > 0 and since >= eval_every)))
        since = 0 if evals[-1] else since
    return sizes, evals


def train_in_chunks(
    state: Any,
    make_chunk: Callable[[int], Callable[[Any, Array], tuple[Any, Mapping[str, Array]]]],
    key: Array,
    steps: int,
    *,
    chunk: int = 0,
    evaluate: Callable[[Any], Mapping[str, Mapping[str, float]]] | None = None,
    tasks: Sequence[str] = (),
    eval_every: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    every_s: float = 600.0,
    stop: Callable[[list[tuple[int, dict[str, dict[str, float]]]]], bool] | None = None,
) -> tuple[Any, dict[str, np.ndarray], float, list[tuple[int, dict[str, dict[str, float]]]]]:
    """The offline training loop of BC, PAC (:func:`replicate.pac.experiment.run`) and the peers
    (:func:`replicate.pac.offline_peers.run`): ``steps`` updates in jitted chunks, evaluations in between,
    resumable.

    ``make_chunk(n)`` returns a jitted ``(state, key) -> (state, metrics)`` running ``n`` updates (``metrics``:
    one value per update for each scalar); the chunk starting after ``done`` updates gets the key
    ``fold_in(key, done)``. Chunks and evaluations follow :func:`chunk_schedule`; ``evaluate(state)`` returns
    :func:`evaluate`'s ``{task: {"return", "normalised"}}`` for the ``tasks`` (none when ``evaluate`` is None).

    With ``checkpoint_dir`` the loop runs under :func:`replicate.resumable.run_chunks`: the training state,
    the metrics so far, the evaluations so far and the training seconds are saved with orbax at most every
    ``every_s`` seconds, and a re-run resumes after the last saved chunk with the same result as an
    uninterrupted run. Returns the final state, the metrics (one value per update done), the seconds spent
    in the updates, and the evaluations ``[(updates done, {task: {...}}), ...]``.

    With ``stop`` (e.g. :func:`replicate.pac.convergence.curve_is_flat` with its settings bound) the run ends early:
    after each evaluation ``stop(evaluations so far)`` is asked, and once it says True the remaining chunks are
    skipped (the state, metrics and curve end at that evaluation; a resumed run stops at the same point).
    """
    sizes, evals = chunk_schedule(steps, chunk, eval_every, evaluate=evaluate is not None)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    slots = np.cumsum(evals) - 1  # the row of the evaluation after chunk i
    shapes = jax.eval_shape(make_chunk(sizes[0]), state, key)[1]
    init = {
        "train": state,
        "metrics": {k: np.zeros(steps, s.dtype) for k, s in shapes.items()},
        "seconds": np.zeros((), np.float64),
        "done": np.zeros((), np.int64),  # updates done (< steps only when ``stop`` ended the run)
        "stopped": np.zeros((), bool),
    }
    if any(evals) and tasks:  # orbax saves no empty arrays
        init["evals"] = np.zeros((int(sum(evals)), len(tasks), 2))  # (evaluation, task, [return, normalised])

    def points(evals_arr: np.ndarray, upto: int) -> list[tuple[int, dict[str, dict[str, float]]]]:
        return [(int(offsets[i + 1]), {t: {"return": float(evals_arr[slots[i], j, 0]),
                                           "normalised": float(evals_arr[slots[i], j, 1])}
                                       for j, t in enumerate(tasks)})
                for i in range(upto + 1) if evals[i]]

    def one_chunk(carry: dict[str, Any], i: int) -> dict[str, Any]:
        if bool(carry["stopped"]):
            return carry
        t0 = time.perf_counter()
        st, m = make_chunk(sizes[i])(carry["train"], jax.random.fold_in(key, int(offsets[i])))
        m = jax.device_get(m)
        jax.block_until_ready(st)
        seconds = carry["seconds"] + (time.perf_counter() - t0)
        # A new carry, the input left untouched (run_chunks' contract); the copy is O(steps), small beside a chunk.
        metrics = {k: v.copy() for k, v in carry["metrics"].items()}
        for k, v in m.items():
            metrics[k][offsets[i] : offsets[i + 1]] = v
        nxt = {**carry, "train": st, "metrics": metrics, "seconds": np.asarray(seconds, np.float64),
               "done": np.asarray(offsets[i + 1], np.int64)}
        if evals[i]:
            res = evaluate(st)
            if "evals" in nxt:
                nxt["evals"] = nxt["evals"].copy()
                nxt["evals"][slots[i]] = [[res[t]["return"], res[t]["normalised"]] for t in tasks]
                if stop is not None and stop(points(nxt["evals"], i)):
                    nxt["stopped"] = np.asarray(True)
        return nxt

    out = resumable.run_chunks(init, one_chunk, len(sizes), checkpoint_dir, every_s=every_s)
    done = int(out["done"])
    last = int(np.searchsorted(offsets[1:], done))
    curve = points(out["evals"], last) if "evals" in out else []
    return out["train"], {k: v[:done] for k, v in out["metrics"].items()}, float(out["seconds"]), curve


# ----------------------------------------------------------------------------------------------
# Evaluation in the simulators.


#: A multi-task policy for :func:`evaluate`: ``policy(obs, obs_mask, task, action_mask) -> actions``, with ``obs``
#: ``(E, O_max)`` standardised per task and zero-padded (float32), ``obs_mask`` ``(E, O_max)`` and ``action_mask``
#: ``(E, A_max)`` bool, ``task`` ``(E,)`` int32; actions ``(E, A_max)`` in [-1, 1] (padded entries ignored).
Policy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]


@functools.lru_cache(maxsize=8)
def make_policy_fn(model: PerceiverActorCritic):
    """Jitted greedy policy: per action dimension the most likely bin (mode of the factorised categorical)."""

    @jax.jit
    def act(params, obs, obs_mask, task, action_mask):
        z = model.apply(params, obs, obs_mask, task, method=PerceiverActorCritic.encode)
        logits = model.apply(params, z, action_mask, method=PerceiverActorCritic.policy_logits)
        return undiscretise_actions(jnp.argmax(logits, -1), model.cfg.num_action_bins)

    return act


def perceiver_policy(model: PerceiverActorCritic, params) -> Policy:
    """The Perceiver's greedy policy (:func:`make_policy_fn`) with ``params`` bound, for :func:`evaluate`."""
    act = make_policy_fn(model)
    return lambda obs, obs_mask, task, action_mask: act(params, obs, obs_mask, task, action_mask)


def evaluate(
    policy: Policy,
    merged: Mapping[str, np.ndarray],
    metas: Sequence[Mapping[str, Any]],
    episodes: int,
    seed: int,
    *,
    action_repeat: int,
) -> dict[str, dict[str, float]]:
    """Roll out a multi-task policy on every task and score it; the one evaluation of notebooks 31 and 32 for
    every method (BC, PAC: :func:`perceiver_policy`; TD3+BC, IQL: :func:`replicate.pac.offline_peers.policy`).

    All episodes of all tasks run in lockstep (one policy call per step); environment seeds
    ``50_000 + 97 seed + i``; observations standardised with the training data's per-task statistics and
    padded as in training. Returns per task the mean return and the normalised return (expert tier = 1,
    random tier = 0 of the dataset's own episodes: our normalisation, :func:`offline_data.normalised_return`).
    """
    o_max, a_max = merged["obs"].shape[1], merged["action"].shape[1]
    envs, tids = [], []
    for meta in metas:
        for i in range(episodes):
            envs.append(DMCEnv(meta["task"], seed=50_000 + 97 * seed + i, action_repeat=action_repeat))
            tids.append(int(meta["task_id"]))
    tids = np.asarray(tids, np.int32)
    mean, std = merged["obs_mean"][tids], merged["obs_std"][tids]
    obs_mask = np.arange(o_max)[None] < merged["obs_dim"][tids][:, None]
    act_mask = np.arange(a_max)[None] < merged["action_dim"][tids][:, None]
    raw = np.zeros((len(envs), o_max), np.float32)
    for i, e in enumerate(envs):
        o = e.reset()
        raw[i, : len(o)] = o
    rets = np.zeros(len(envs))
    done = np.zeros(len(envs), bool)
    while not done.all():
        obs = np.where(obs_mask, (raw - mean) / std, 0.0).astype(np.float32)
        a = np.asarray(policy(obs, obs_mask, tids, act_mask))
        for i, e in enumerate(envs):
            if done[i]:
                continue
            st = e.step(a[i, : e.action_dim])
            raw[i, : len(st.obs)] = st.obs
            rets[i] += st.reward
            done[i] = st.last
    out = {}
    for meta in metas:
        r = rets[tids == int(meta["task_id"])]
        out[meta["task"]] = {
            "return": float(r.mean()),
            "normalised": float(offline_data.normalised_return(r.mean(), meta["expert_return"], meta["random_return"])),
        }
    return out


def score_row(ev: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Flatten :func:`evaluate`'s result into a result row: ``norm/<task>``, ``return/<task>`` and
    ``normalised_mean`` (mean over tasks)."""
    row: dict[str, float] = {}
    for task, r in ev.items():
        row[f"norm/{task}"] = r["normalised"]
        row[f"return/{task}"] = r["return"]
    row["normalised_mean"] = float(np.mean([r["normalised"] for r in ev.values()]))
    return row


def eval_curve(points: Sequence[tuple[int, Mapping[str, Mapping[str, float]]]]) -> dict[str, Any]:
    """Learning-curve columns of a result row from ``[(updates, evaluate(...)), ...]``: ``curve_eval_steps``,
    ``curve_eval`` (normalised mean over tasks) and ``curve_eval_tasks`` (``{task: [normalised, ...]}``)."""
    tasks = list(points[0][1])
    return {"curve_eval_steps": [int(n) for n, _ in points],
            "curve_eval": [float(np.mean([ev[t]["normalised"] for t in tasks])) for _, ev in points],
            "curve_eval_tasks": {t: [float(ev[t]["normalised"]) for _, ev in points] for t in tasks}}

