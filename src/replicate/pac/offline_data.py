"""The PAC offline dataset: on-disk schema, validated atomic writer/reader, per-tier summaries, and the
multi-task training mix (padded, standardised, with an optional held-out split).

Who makes the data: :mod:`replicate.pac.experts` trains the SAC experts, :mod:`replicate.pac.collect`
rolls out their snapshots into per-task datasets; this module stores, reads and mixes them.

Our substitute for the paper's 132-task data mix (abstract; where the paper describes it is unverified): one
file per task with mixed-quality episodes (expert, sub-optimal snapshots, random policy), made the D4RL way
(Fu et al. 2020). One ``.npz`` file (compressed, written atomically through :mod:`replicate.io`)
per task, ``data/pac/datasets/<dataset>/<task>.npz``.

Schema (``SCHEMA_VERSION`` 1). ``N`` transitions, ``E`` episodes, ``O``/``A`` the task's observation
and action sizes (no padding on disk; padding to the widest task happens when tasks are mixed):

===================== =========== ========= ==========================================================
key                   shape       dtype     meaning
===================== =========== ========= ==========================================================
observations          (N, O)      float32   flattened dm_control observation at step t
actions               (N, A)      float32   action taken at t, in [-1, 1]
rewards               (N,)        float32   reward r_t after the action
discounts             (N,)        float32   env discount d_t in [0, 1] (0 only at a true terminal)
next_observations     (N, O)      float32   observation at t + 1
episode_ids           (N,)        int32     0..E-1, non-decreasing, each episode contiguous
step_in_episode       (N,)        int32     0, 1, ... within each episode
task_id               (N,)        int32     global task index (same for the whole file)
quality               (N,)        int8      source tier of the episode: 0 random, 1..Q-1 snapshots
                                            of increasing quality, Q-1 = expert
episode_returns       (E,)        float32   undiscounted return of each episode
episode_quality       (E,)        int8      tier of each episode
meta_json             ()          str       JSON: schema_version, task, task_id, obs_dim, action_dim,
                                            quality_names, expert_return, random_return, mix, seed
===================== =========== ========= ==========================================================

:func:`validate_dataset` checks every row of this table and raises :class:`DatasetError` (a
``ValueError``) naming the key and what is wrong.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from replicate import io
from replicate.pac import paths

SCHEMA_VERSION = 1

#: key -> (number of dimensions, dtype kind, length axis: "N" or "E")
SCHEMA: dict[str, tuple[int, str, str]] = {
    "observations": (2, "float32", "N"),
    "actions": (2, "float32", "N"),
    "rewards": (1, "float32", "N"),
    "discounts": (1, "float32", "N"),
    "next_observations": (2, "float32", "N"),
    "episode_ids": (1, "int32", "N"),
    "step_in_episode": (1, "int32", "N"),
    "task_id": (1, "int32", "N"),
    "quality": (1, "int8", "N"),
    "episode_returns": (1, "float32", "E"),
    "episode_quality": (1, "int8", "E"),
}
META_KEYS = ("schema_version", "task", "task_id", "obs_dim", "action_dim", "quality_names", "expert_return",
             "random_return")


class DatasetError(ValueError):
    """A dataset file does not follow the schema in :mod:`replicate.pac.offline_data`; the message says where."""


def validate_dataset(arrays: Mapping[str, Any], meta: Mapping[str, Any], *, where: str = "dataset") -> None:
    """Check ``arrays`` + ``meta`` against the schema; raise :class:`DatasetError` on the first problem."""
    missing = [k for k in SCHEMA if k not in arrays]
    if missing:
        raise DatasetError(f"{where}: missing arrays {missing}; a PAC dataset needs {sorted(SCHEMA)}")
    missing_meta = [k for k in META_KEYS if k not in meta]
    if missing_meta:
        raise DatasetError(f"{where}: meta_json lacks {missing_meta}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise DatasetError(f"{where}: schema_version {meta['schema_version']} != {SCHEMA_VERSION}; "
                           "regenerate the dataset")
    n = len(arrays["rewards"])
    e = len(arrays["episode_returns"])
    if n == 0 or e == 0:
        raise DatasetError(f"{where}: empty dataset ({n} transitions, {e} episodes)")
    for key, (ndim, dtype, axis) in SCHEMA.items():
        a = arrays[key]
        if a.ndim != ndim:
            raise DatasetError(f"{where}: {key} has {a.ndim} dimensions, expected {ndim} (shape {a.shape})")
        if a.dtype != np.dtype(dtype):
            raise DatasetError(f"{where}: {key} has dtype {a.dtype}, expected {dtype}")
        want = n if axis == "N" else e
        if a.shape[0] != want:
            unit = "transitions" if axis == "N" else "episodes"
            raise DatasetError(f"{where}: {key} has length {a.shape[0]}, expected {want} ({unit})")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise DatasetError(f"{where}: {key} contains NaN or inf")
    o, act = int(meta["obs_dim"]), int(meta["action_dim"])
    for key, width in (("observations", o), ("next_observations", o), ("actions", act)):
        if arrays[key].shape[1] != width:
            raise DatasetError(f"{where}: {key} has width {arrays[key].shape[1]}, meta says {width}")
    if np.abs(arrays["actions"]).max() > 1.0 + 1e-6:
        raise DatasetError(f"{where}: actions outside [-1, 1] (max |a| = {np.abs(arrays['actions']).max():.3g})")
    d = arrays["discounts"]
    if d.min() < 0 or d.max() > 1:
        raise DatasetError(f"{where}: discounts must lie in [0, 1], got [{d.min()}, {d.max()}]")
    if np.any(arrays["task_id"] != int(meta["task_id"])):
        raise DatasetError(f"{where}: task_id differs from meta task_id={meta['task_id']}")
    ep = arrays["episode_ids"]
    if ep[0] != 0 or np.any(np.diff(ep) < 0) or np.any(np.diff(ep) > 1) or ep[-1] != e - 1:
        raise DatasetError(f"{where}: episode_ids must run 0..{e - 1} in contiguous, non-decreasing blocks")
    starts = np.r_[True, np.diff(ep) != 0]
    step = arrays["step_in_episode"]
    expected_step = np.arange(n) - np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    if np.any(step != expected_step):
        bad = int(np.argmax(step != expected_step))
        raise DatasetError(f"{where}: step_in_episode is not 0,1,2,... within each episode (first bad row {bad})")
    # Within an episode, next_observations[t] == observations[t + 1].
    cont = ~starts[1:]
    if np.any(np.abs(arrays["next_observations"][:-1][cont] - arrays["observations"][1:][cont]) > 1e-5):
        raise DatasetError(f"{where}: next_observations[t] != observations[t + 1] inside an episode")
    nq = len(meta["quality_names"])
    q, eq = arrays["quality"], arrays["episode_quality"]
    if q.min() < 0 or q.max() >= nq or eq.min() < 0 or eq.max() >= nq:
        raise DatasetError(f"{where}: quality tiers must be in 0..{nq - 1} ({meta['quality_names']})")
    if np.any(q != eq[ep]):
        raise DatasetError(f"{where}: quality differs from episode_quality[episode_ids]")
    sums = np.bincount(ep, weights=arrays["rewards"].astype(np.float64), minlength=e)
    if not np.allclose(sums, arrays["episode_returns"], rtol=1e-4, atol=1e-3):
        raise DatasetError(f"{where}: episode_returns do not equal the per-episode sum of rewards")


def write_dataset(path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Validate, then atomically write one task's dataset as compressed ``.npz``."""
    arrays = {k: np.asarray(arrays[k]).astype(SCHEMA[k][1]) if k in SCHEMA else np.asarray(arrays[k]) for k in arrays}
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    validate_dataset(arrays, meta, where=str(path))
    return io.write_npz(path, **arrays, meta_json=np.array(json.dumps(meta, sort_keys=True)))


def read_dataset(path: str | os.PathLike, *, validate: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read (and by default validate) one task's dataset: ``(arrays, meta)``."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset; generate it with notebooks/30_pac_datasets.ipynb "
                           "(dvc repro 30_pac_datasets)")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "meta_json"}
        if "meta_json" not in f.files:
            raise DatasetError(f"{path}: missing meta_json")
        meta = json.loads(str(f["meta_json"]))
    if validate:
        validate_dataset(arrays, meta, where=str(path))
    return arrays, meta


def write_datasets(name: str, per_task: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[Path]:
    """Write dataset ``name`` (``<profile>/<mix>``): one validated file per task plus ``index.json``."""
    d = paths.datasets_dir(name)
    out = [write_dataset(d / f"{meta['task']}.npz", arrays, meta) for arrays, meta in per_task]
    io.write_json(d / "index.json", {"tasks": [m["task"] for _, m in per_task], "files": [p.name for p in out]})
    return out


def read_datasets(name: str) -> list[tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """Read (and validate) every task file of dataset ``name``, in the order of its ``index.json``."""
    d = paths.datasets_dir(name)
    if not (d / "index.json").exists():
        raise DatasetError(f"{d}: no dataset {name!r}; generate it with notebooks/30_pac_datasets.ipynb")
    index = json.loads((d / "index.json").read_text())
    return [read_dataset(d / f) for f in index["files"]]


def expert_share(metas: Sequence[Mapping[str, Any]]) -> float:
    """Share of best-tier episodes in the datasets' mix, averaged over tasks (from each file's ``meta["mix"]``)."""
    return float(np.mean([m["mix"][m["quality_names"][-1]] / sum(m["mix"].values()) for m in metas]))


def tier_summary(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per quality tier: episodes, transitions, mean/std return, normalised return."""
    rows = []
    span = float(meta["expert_return"]) - float(meta["random_return"])
    for tier, name in enumerate(meta["quality_names"]):
        sel = arrays["episode_quality"] == tier
        if not sel.any():
            continue
        r = arrays["episode_returns"][sel]
        rows.append(
            {
                "task": meta["task"],
                "tier": name,
                "episodes": int(sel.sum()),
                "transitions": int(np.isin(arrays["episode_ids"], np.flatnonzero(sel)).sum()),
                "return_mean": float(r.mean()),
                "return_std": float(r.std()),
                "normalised": float((r.mean() - float(meta["random_return"])) / span) if span > 0 else float("nan"),
            }
        )
    return rows


#: Smallest expert-minus-random return gap the normalisation divides by (one return point; dm_control returns lie in
#: [0, 1000]): a guard for tiers that are not separated (short smoke-profile experts), where the score means little.
NORMALISATION_FLOOR = 1.0


def normalised_return(ret: float | np.ndarray, expert_return: float, random_return: float):
    """Normalised score: expert = 1, random = 0 (our normalisation, common in offline RL; the paper's own
    normalisation is unverified); the gap is at least :data:`NORMALISATION_FLOOR`."""
    return (np.asarray(ret) - random_return) / max(expert_return - random_return, NORMALISATION_FLOOR)


# ----------------------------------------------------------------------------------------------
# Mixing tasks into one padded training set.


def pad_columns(x: np.ndarray, width: int) -> np.ndarray:
    """Zero-pad the columns of a 2-D array ``x`` on the right to ``width``."""
    return np.pad(x, ((0, 0), (0, width - x.shape[1])))


def merge_tasks(datasets: list[tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]) -> dict[str, np.ndarray]:
    """Concatenate per-task datasets into padded training arrays (the multi-task mix).

    Observations are standardised per task (mean/std over the task's data, stored in the returned
    ``obs_mean``/``obs_std``, shape (num_tasks, O_max)) and zero-padded to the widest task; actions are
    padded to the widest action. Masks say which entries are real. Returns a dict with keys
    ``obs, next_obs, obs_mask, action, action_mask, reward, discount, task, quality`` and the
    per-task ``obs_dim``, ``action_dim``, ``obs_mean``, ``obs_std`` and ``return_span`` (max - min episode return of
    the task's episodes: IQL's reward scale, :func:`replicate.pac.offline_peers.iql_reward_scale`).
    """
    if not datasets:
        raise DatasetError("merge_tasks: no datasets given")
    num_tasks = max(int(m["task_id"]) for _, m in datasets) + 1
    o_max = max(int(m["obs_dim"]) for _, m in datasets)
    a_max = max(int(m["action_dim"]) for _, m in datasets)
    obs_dim = np.zeros(num_tasks, np.int32)
    act_dim = np.zeros(num_tasks, np.int32)
    mean = np.zeros((num_tasks, o_max), np.float32)
    std = np.ones((num_tasks, o_max), np.float32)
    span = np.zeros(num_tasks, np.float64)
    keys = ("obs", "next_obs", "obs_mask", "action", "action_mask", "reward", "discount", "task", "quality")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for arrays, meta in datasets:
        t, o, a = int(meta["task_id"]), int(meta["obs_dim"]), int(meta["action_dim"])
        obs_dim[t], act_dim[t] = o, a
        mu = arrays["observations"].mean(0)
        sd = arrays["observations"].std(0) + 1e-3
        mean[t, :o], std[t, :o] = mu, sd
        span[t] = float(np.ptp(arrays["episode_returns"]))
        n = len(arrays["rewards"])
        parts["obs"].append(pad_columns((arrays["observations"] - mu) / sd, o_max))
        parts["next_obs"].append(pad_columns((arrays["next_observations"] - mu) / sd, o_max))
        parts["obs_mask"].append(np.broadcast_to(np.arange(o_max) < o, (n, o_max)))
        parts["action"].append(pad_columns(arrays["actions"], a_max))
        parts["action_mask"].append(np.broadcast_to(np.arange(a_max) < a, (n, a_max)))
        parts["reward"].append(arrays["rewards"])
        parts["discount"].append(arrays["discounts"])
        parts["task"].append(arrays["task_id"])
        parts["quality"].append(arrays["quality"])
    out = {k: np.concatenate(v) for k, v in parts.items()}
    for k in ("obs", "next_obs", "action", "reward", "discount"):
        out[k] = out[k].astype(np.float32)
    out["obs_mask"] = out["obs_mask"].astype(bool)
    out["action_mask"] = out["action_mask"].astype(bool)
    out["task"] = out["task"].astype(np.int32)
    out.update(obs_dim=obs_dim, action_dim=act_dim, obs_mean=mean, obs_std=std, return_span=span)
    return out


def select_episodes(arrays: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of one task's dataset whose episode has ``keep[episode_id]`` (``keep``: bool, one per episode).

    Per-transition arrays are indexed through ``episode_ids``, per-episode arrays by ``keep`` itself
    (``episode_ids`` keep their original numbers: the result is for merging, not for writing).
    """
    rows = keep[arrays["episode_ids"]]
    return {k: (v[keep] if SCHEMA.get(k, (0, "", "N"))[2] == "E" else v[rows]) for k, v in arrays.items()}


def expert_only(arrays: Mapping[str, np.ndarray],
                meta: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The best-tier ("expert") episodes of one task's dataset, as a dataset of their own (schema-valid).

    Episodes are renumbered ``0..E'-1``; the meta keeps the source's normalisation constants
    (``expert_return``, ``random_return``), so scores on the expert-only data and on the mixed data are on
    one scale, and its ``mix`` counts only the kept episodes. The sanity anchor of notebook 31 (BC must
    learn a near-expert policy from these before any PAC-vs-BC verdict).
    """
    best = len(meta["quality_names"]) - 1
    keep = np.asarray(arrays["episode_quality"]) == best
    if not keep.any():
        raise DatasetError(f"{meta['task']}: no episodes of the best tier {meta['quality_names'][best]!r}")
    out = select_episodes(arrays, keep)
    new_id = np.cumsum(keep) - 1
    out["episode_ids"] = new_id[out["episode_ids"]].astype(np.int32)
    mix = {t: (int(meta["mix"].get(t, 0)) if t == meta["quality_names"][best] else 0) for t in meta["mix"]}
    return out, {**meta, "mix": mix}


def top_episodes(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                 fraction: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``fraction`` of one task's episodes with the highest return (at least one; ties broken by episode order),
    as a dataset of their own: the data of *filtered BC*, notebook 31's positive control (BC on the best episodes,
    chosen by return alone, not by tier). Episodes are renumbered; the meta keeps the source's normalisation
    constants and its ``mix`` counts the kept episodes per tier."""
    if not 0 < fraction <= 1:
        raise DatasetError(f"top_episodes: fraction={fraction} must be in (0, 1] (FILTER_TOP)")
    rets = np.asarray(arrays["episode_returns"], np.float64)
    k = max(1, int(round(fraction * len(rets))))
    keep = np.zeros(len(rets), bool)
    keep[np.argsort(-rets, kind="stable")[:k]] = True
    out = select_episodes(arrays, keep)
    out["episode_ids"] = (np.cumsum(keep) - 1)[out["episode_ids"]].astype(np.int32)
    names = list(meta["quality_names"])
    kept_q = np.asarray(arrays["episode_quality"])[keep]
    mix = {t: int((kept_q == names.index(t)).sum()) if t in names else 0 for t in meta["mix"]}
    return out, {**meta, "mix": mix}


def holdout_mask(num_episodes: int, holdout_episodes: int) -> np.ndarray:
    """Which of ``num_episodes`` episodes to hold out: ``holdout_episodes`` spread evenly (every k-th),
    so every quality tier is represented."""
    hold = np.zeros(num_episodes, bool)
    hold[np.linspace(0, num_episodes - 1, holdout_episodes).round().astype(int)] = True
    return hold


def load_mixed(name: str, holdout_episodes: int = 0, tasks: Sequence[str] | None = None):
    """Read dataset ``name`` (all tasks, or only ``tasks``) and merge it; optionally hold out ``holdout_episodes``
    episodes of every task (:func:`holdout_mask`).

    With ``tasks`` the other tasks are left out; task ids keep their numbers (the one-hot width stays that of
    the full dataset; a left-out task's rows of ``obs_dim``/``action_dim`` are 0 and are never used).
    Returns ``(train, holdout or None, metas)``; both merged dicts share the training normalisation.
    """
    per_task = read_datasets(name)
    if tasks:
        missing = sorted(set(tasks) - {m["task"] for _, m in per_task})
        if missing:
            raise DatasetError(f"dataset {name!r} has no task(s) {missing}; it has {[m['task'] for _, m in per_task]}")
        per_task = [(a, m) for a, m in per_task if m["task"] in set(tasks)]
    metas = [m for _, m in per_task]
    if holdout_episodes <= 0:
        return merge_tasks(per_task), None, metas
    train_parts, hold_parts = [], []
    for arrays, meta in per_task:
        e = len(arrays["episode_returns"])
        if holdout_episodes >= e:
            raise DatasetError(f"holdout_episodes={holdout_episodes} leaves no training data for {meta['task']} "
                               f"({e} episodes); lower HOLDOUT_EPISODES below {e}")
        hold = holdout_mask(e, holdout_episodes)
        train_parts.append((select_episodes(arrays, ~hold), meta))
        hold_parts.append((select_episodes(arrays, hold), meta))
    train = merge_tasks(train_parts)
    held = merge_tasks(hold_parts)
    # Re-normalise the held-out observations with the training statistics.
    for k in ("obs", "next_obs"):
        t = held["task"]
        raw = held[k] * held["obs_std"][t] + held["obs_mean"][t]
        held[k] = np.where(held["obs_mask"], (raw - train["obs_mean"][t]) / train["obs_std"][t], 0.0).astype(np.float32)
    held.update(obs_mean=train["obs_mean"], obs_std=train["obs_std"])
    return train, held, metas
