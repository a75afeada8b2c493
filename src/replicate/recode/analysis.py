"""Analysis of the RECODE agents' runs (notebooks 11 and 12): per-seed scores, the pre-registered PPO setting,
intrinsic-reward diagnostics, stored curves, and the AP-vs-CASM helpers.

(Notebook 10's count-tracking analysis is :mod:`replicate.recode.count_tracking`.)

Notebooks 11 and 12 (PPO agents with an exploration bonus):

* the one pre-registered per-seed score, :func:`success_auc`: the area under the success curve over the whole
  budget (the mean over all updates of the success rate of the episodes that ended in it), compared between
  methods by :func:`replicate.verdicts.comparison_row` (seed-paired 95% intervals); aggregates over DeepSea sizes by
  :func:`size_matrix` with :func:`replicate.verdicts.iqm_ci` / ``probability_of_improvement``;
* positive controls as :func:`replicate.verdicts.control` records: :func:`beats_control` ("the oracle beats no
  bonus"), :func:`some_beat_control` ("some bonus beats no bonus"), :func:`fraction_control`;
* the pre-registered PPO setting of notebook 11: :func:`check_candidates`, :func:`select_setting` (the first
  candidate under which the true-count oracle solves enough seeds), :func:`select_ppo_setting` (runs it);
* intrinsic-reward diagnostics: :func:`front_share` (how much of a run's normalised intrinsic reward is paid in its
  first updates: RECODE's first-step spike);
* stored curves: :func:`run_curves`, :func:`curves_path`, :func:`save_curves`, :func:`load_curves`;
* :func:`first_treasure_episodes`, :func:`final_success_rate`, :func:`nan_trailing_mean`, :func:`thousands_tick`.

Notebook 12 (AP vs CASM on the same data): :func:`embedders`, :func:`aggregate_probes`, :func:`per_seed`,
:func:`final_accuracy`, :func:`plateaued`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from replicate import io, outputs, verdicts
from replicate.params import ParameterError
from replicate.recode import agents, representations
from replicate.rl import exploration, ppo

SCORE = "success AUC"  # the metric name of every exploration comparison row
SCORE_RULE = ("per-seed score: area under the success curve over the whole budget (mean over all updates of the "
              "success rate of the episodes ended in the update; an update in which none ended counts 0)")

# ----------------------------------------------------------------------------- scores


def success_auc(success_rate) -> np.ndarray:
    """Per-seed area under the success curve over the whole budget: the mean over all ``U`` updates of the (S, U)
    success rates (NaN, an update in which no episode ended, counts as 0). Values in [0, 1]; (S,)."""
    x = np.asarray(success_rate, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"success_rate must be (seeds, updates), got shape {x.shape}")
    return np.nan_to_num(x, nan=0.0).mean(axis=1)


def tail_length(n_updates: int, frac: float = 0.2) -> int:
    """Number of final updates in the last ``frac`` of ``n_updates``: ``frac * n_updates`` rounded to the
    nearest integer, at least 1."""
    return max(1, int(round(n_updates * frac)))


def final_success_rate(success_rate: np.ndarray, frac: float = 0.2) -> float:
    """Mean over seeds of each seed's mean success rate over its last ``frac`` of updates (:func:`tail_length`);
    descriptive only (the verdicts use :func:`success_auc`).

    ``success_rate`` is ``(S, U)`` with NaN where no episode ended in an update (ignored); 0 when no
    episode ended in any seed's tail.
    """
    x = np.asarray(success_rate, dtype=np.float64)
    k = tail_length(x.shape[1], frac)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a seed whose tail ended no episode: NaN, ignored
        tail = np.nanmean(x[:, -k:], axis=1)
    return float(np.nanmean(tail)) if np.isfinite(tail).any() else 0.0


def first_treasure_episodes(run: Mapping[str, Any]) -> np.ndarray:
    """(S,) episode of each seed's first success in a DeepSea run, censored at the run's episode budget (a seed that
    never succeeded counts at the budget: a lower bound of its true value)."""
    fs = np.asarray(run["first_success"], dtype=np.float64)
    return np.where(fs < exploration.NEVER, fs, float(run["budget"]))


def size_matrix(scores: Mapping[tuple[int, str], Sequence[float]], sizes: Sequence[int], method: str) -> np.ndarray:
    """``(seeds, sizes)`` matrix of ``method``'s per-seed scores at each size (``scores[(size, method)]``), the
    input of :func:`replicate.verdicts.iqm_ci` and ``probability_of_improvement`` (sizes are the tasks)."""
    return np.stack([np.asarray(scores[(int(n), method)], np.float64) for n in sizes], axis=1)


def exploration_row(claim: str, paper: str, figure: str, arms: Mapping[str, Sequence[float]], better: str,
                    than: Sequence[str], controls: Sequence[Mapping[str, Any]], *, ours_prefix: str = "") -> dict:
    """The verdict row of "``better`` explores better than every arm in ``than``" on the per-seed :func:`success_auc`
    (``arms``: per-seed scores, same seeds in the same order): :func:`replicate.verdicts.comparison_row` (seed-paired
    95% t-intervals; all rivals beaten: reproduced, some: partly, none: not reproduced; a failed control or fewer
    than 2 seeds: inconclusive), with the score's definition in the rule."""
    rule = (f"{SCORE_RULE}; {better} beats a rival when the seed-paired 95% t-interval of the score difference lies "
            "above 0; all rivals beaten: reproduced, some: partly, none: not reproduced; a failed positive control or "
            "< 2 seeds: inconclusive")
    return verdicts.comparison_row(claim, paper, figure, arms, better, list(than), metric=SCORE, controls=controls,
                                   rule=rule, ours_prefix=ours_prefix)


# ----------------------------------------------------------------------------- positive controls


def beats_control(name: str, a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Control "``a`` beats ``b``" on per-seed scores (same seeds): passed when the seed-paired 95% interval of
    ``a - b`` lies above 0 (:func:`replicate.verdicts.beats`); value: the lower end of that interval (NaN with one
    seed); threshold 0."""
    _, lo, _ = verdicts.paired_interval(a, b)
    return verdicts.control(name, verdicts.beats(a, b), lo, 0.0)


def some_beat_control(name: str, arms: Mapping[str, Sequence[float]], base: str) -> dict[str, Any]:
    """Control "some arm beats ``base``": passed when at least one arm other than ``base`` beats it
    (:func:`beats_control`); value: the largest lower end of the paired intervals over those arms; threshold 0."""
    others = [k for k in arms if k != base]
    if not others:
        raise ValueError(f"some_beat_control needs an arm besides {base!r}; got {list(arms)}")
    lows = [verdicts.paired_interval(arms[k], arms[base])[1] for k in others]
    passed = any(verdicts.beats(arms[k], arms[base]) for k in others)
    finite = [x for x in lows if np.isfinite(x)]
    return verdicts.control(name, passed, max(finite) if finite else math.nan, 0.0)


def fraction_control(name: str, flags: Sequence[bool], minimum: float) -> dict[str, Any]:
    """Control "at least ``minimum`` of the seeds have the property" (``flags`` per seed); value: the fraction."""
    frac = float(np.mean(np.asarray(flags, bool))) if len(flags) else 0.0
    return verdicts.control(name, frac >= minimum, frac, minimum)


# ----------------------------------------------------------------------------- the pre-registered PPO setting

_RUN_SHAPE = ("num_envs", "num_steps", "total_timesteps", "hidden")  # fixed by the run, not by a candidate


def check_candidates(candidates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validate the pre-registered PPO candidates: each a mapping with a unique ``name`` and overrides of
    :class:`replicate.rl.ppo.PPOConfig` fields (not the run's shape: ``num_envs``, ``num_steps``,
    ``total_timesteps``, ``hidden``); every candidate must give the same fields. Returns them as plain dicts."""
    fields = {f.name for f in dataclasses.fields(ppo.PPOConfig)} - set(_RUN_SHAPE)
    if not candidates:
        raise ParameterError("PPO candidates: give at least one")
    out, names, keys = [], set(), None
    for i, c in enumerate(candidates):
        if not isinstance(c, Mapping) or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise ParameterError(f"PPO candidate {i} must be a mapping with a non-empty 'name', got {c!r}")
        over = {k: v for k, v in c.items() if k != "name"}
        bad = sorted(set(over) - fields)
        if bad:
            raise ParameterError(f"PPO candidate {c['name']!r}: unknown or run-shape fields {bad}; "
                                 f"choose among {sorted(fields)}")
        if keys is not None and set(over) != keys:
            raise ParameterError(f"PPO candidate {c['name']!r} sets {sorted(over)}; every candidate must set "
                                 f"{sorted(keys)} (the same fields, so the list reads as a table)")
        keys = set(over)
        if c["name"] in names:
            raise ParameterError(f"PPO candidate name {c['name']!r} is used twice")
        names.add(c["name"])
        ppo.PPOConfig(num_envs=1, num_steps=1, total_timesteps=1, num_minibatches=1, **over)  # validates the values
        out.append(dict(c))
    return out


def overrides(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate's :class:`~replicate.rl.ppo.PPOConfig` overrides (everything but its name)."""
    return {k: v for k, v in candidate.items() if k != "name"}


def select_setting(candidates: Sequence[Mapping[str, Any]], solved: Callable[[Mapping[str, Any]], Sequence[bool]],
                   minimum: float) -> dict[str, Any]:
    """The pre-registered choice of a PPO setting on the positive control alone.

    ``candidates`` are tried in their (pre-registered) order; ``solved(candidate)`` runs the control (notebook 11:
    the true-count oracle on DeepSea) and returns per-seed flags (solved within the budget). The first candidate
    whose solved fraction is ``>= minimum`` is accepted and later candidates are not run. If none passes, the choice
    falls on the candidate that solved the most seeds (the earliest among ties) and ``accepted`` is False: the
    experiments that rest on the control are then inconclusive.

    Returns ``{"chosen": index, "accepted": bool, "minimum": minimum, "tried": [{"name", "solved", "seeds",
    "passed"}, ...]}`` (``solved``: the fraction; ``tried`` in order, up to the accepted one).
    """
    if not 0.0 < minimum <= 1.0:
        raise ValueError(f"minimum={minimum} must be in (0, 1]")
    cands = check_candidates(candidates)
    tried = []
    for c in cands:
        flags = np.asarray(solved(c), bool).reshape(-1)
        if flags.size < 1:
            raise ValueError(f"solved({c['name']!r}) returned no seeds")
        frac = float(flags.mean())
        tried.append({"name": c["name"], "solved": frac, "seeds": int(flags.size), "passed": frac >= minimum})
        if frac >= minimum:
            return {"chosen": len(tried) - 1, "accepted": True, "minimum": float(minimum), "tried": tried}
    best = max(range(len(tried)), key=lambda i: (tried[i]["solved"], -i))
    return {"chosen": best, "accepted": False, "minimum": float(minimum), "tried": tried}


def select_ppo_setting(units, candidates, size: int, seeds, spec, minimum: float) -> tuple[dict, dict]:
    """Notebook 11's pre-registered choice of the PPO setting on the positive control alone: for each candidate in
    order (:func:`select_setting`), the true-count oracle (``counts``) on DeepSea-``size`` under ``spec``
    (:class:`replicate.recode.agents.RunSpec`) with the candidate's :class:`~replicate.rl.ppo.PPOConfig` overrides,
    a resumable unit of ``units`` (:func:`replicate.recode.agents.deep_sea_unit`), until one solves at least
    ``minimum`` of the seeds within the budget. Returns ``(selection, runs)``: the selection record and the oracle
    run of every candidate tried, by name."""
    runs = {}

    def solved(candidate):
        run = agents.deep_sea_unit(units, size, "counts", seeds, spec.with_ppo(overrides(candidate)))
        runs[candidate["name"]] = run
        return run["first_success"] < exploration.NEVER

    return select_setting(candidates, solved, minimum), runs


# ----------------------------------------------------------------------------- intrinsic-reward diagnostics


def front_share(r_int, first_frac: float = 0.02) -> np.ndarray:
    """Share of a run's normalised intrinsic reward paid in its first updates, per seed: the sum over the first
    ``max(1, round(first_frac * U))`` updates of the per-update mean normalised reward ``r_int`` (S, U), over the sum
    over all ``U`` updates. An even spread gives ``first_frac``; a share near 1 means the first rewards (RECODE's
    ``1 / c`` spike of an empty memory and of embeddings with no atom in reach) dominate the normaliser, so every
    later reward is divided by a scale it never reaches again and the bonus is spent at the start. (S,)."""
    x = np.asarray(r_int, np.float64)
    if x.ndim != 2 or x.shape[1] < 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"r_int must be finite (seeds, updates >= 2), got shape {x.shape}")
    if not 0.0 < first_frac < 1.0:
        raise ValueError(f"first_frac={first_frac} must be in (0, 1)")
    k = min(max(1, int(round(first_frac * x.shape[1]))), x.shape[1] - 1)
    total = x.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, x[:, :k].sum(axis=1) / total, np.nan)


# ----------------------------------------------------------------------------- stored curves

CURVES = ("steps", "episodes", "success_rate", "coverage", "return", "policy_entropy", "r_int_raw", "r_int_raw_std",
          "r_int_raw_max", "r_int", "r_int_std", "r_int_max", "int_norm_scale", "int_return_mean", "int_return_std")
"""The per-update curves (seeds, updates) stored for every run (:func:`run_curves`); plus ``ap_loss`` /
``casm_loss`` where the run trains an embedding."""


def run_curves(run: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The per-seed, per-update curves of a run of :mod:`replicate.recode.agents` to store (:data:`CURVES`, and the
    embedding's loss where there is one), float32 (S, U), with ``score`` (S,): :func:`success_auc`."""
    out = {k: np.asarray(run[k], np.float32) for k in CURVES}
    out.update({k: np.asarray(run[k], np.float32) for k in ("ap_loss", "casm_loss") if k in run})
    out["score"] = success_auc(run["success_rate"]).astype(np.float32)
    return out


def curves_path(stem: str, profile: str) -> Path:
    """Where notebook ``stem`` stores its curves: ``data/recode/curves/<stem>.npz`` (a DVC output of the stage, small,
    kept in git) for the cpu/full profiles, ``data/recode/smoke/<stem>.npz`` (git-ignored scratch) for smoke, so CI
    runs never touch the stage's output."""
    root = outputs.data_dir() / "recode"
    return (root / "smoke" if profile == "smoke" else root / "curves") / f"{stem}.npz"


_SEP = "::"


def save_curves(path: str | Path, runs: Mapping[str, Mapping[str, np.ndarray]]) -> Path:
    """Atomically write ``{run name: {curve: array}}`` to one ``.npz`` (keys ``"<run name>::<curve>"``)."""
    flat = {}
    for name, curves in runs.items():
        if _SEP in name:
            raise ValueError(f"run name {name!r} must not contain {_SEP!r}")
        flat.update({f"{name}{_SEP}{k}": np.asarray(v) for k, v in curves.items()})
    return io.write_npz(path, **flat)


def load_curves(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read :func:`save_curves`'s file back into ``{run name: {curve: array}}``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            name, curve = key.split(_SEP, 1)
            out.setdefault(name, {})[curve] = data[key]
    return out


def nan_trailing_mean(x, window: int, *, pool: bool = False) -> tuple[np.ndarray, slice]:
    """Trailing moving average over the last axis that skips NaN (an update in which no episode ended): ``y[..., j]``
    is the mean of the finite values of ``x[..., j : j + window]`` (NaN if there is none); ``sl`` selects the matching
    x positions, as in :func:`replicate.rl.exploration.trailing_mean` (which counts NaN as 0, right for success
    rates, wrong for a per-episode measure such as coverage). ``pool``: average the finite values of all seeds
    (leading axis) together, giving one curve."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    total, _ = exploration.trailing_mean(np.where(ok, x, 0.0), window)
    count, sl = exploration.trailing_mean(ok.astype(np.float64), window)
    if pool:
        total, count = total.sum(axis=0), count.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan), sl


def thousands_tick(value: float, _pos=None) -> str:
    """Tick formatter for step axes in thousands (``2048 -> "2.048"``)."""
    return f"{value / 1e3:g}"


# ----------------------------------------------------------------------------- notebook 12: AP vs CASM


def embedders(ap_cfg, ap_params, casm_cfg, casm_params,
              untrained_params) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The four representations compared in notebook 12, each mapping observations ``(..., obs_dim)``
    to a NumPy ``(n, dim)`` array: the trained AP and CASM encoders, the AP encoder at its
    initialisation (``untrained_params``), and the raw observation."""
    dim = ap_cfg.obs_dim

    def flat(obs):
        return obs.reshape(-1, dim)

    def ap(obs):
        return np.asarray(representations.ap_embed(ap_cfg, ap_params, flat(obs)))

    def casm(obs):
        return np.asarray(representations.casm_embed(casm_cfg, casm_params, flat(obs)))

    def untrained(obs):
        return np.asarray(representations.ap_embed(ap_cfg, untrained_params, flat(obs)))

    return {"AP": ap, "CASM": casm, "untrained encoder": untrained, "raw observation": flat}


def aggregate_probes(results, order: Sequence[str]):
    """Per representation (rows in ``order``): mean/min/max over seeds of ``probe`` and ``rho``, mean ``atoms``.

    ``results`` is a DataFrame with one row per (seed, representation).
    """
    agg = results.groupby("representation").agg(
        probe_mean=("probe", "mean"), probe_min=("probe", "min"), probe_max=("probe", "max"),
        rho_mean=("rho", "mean"), rho_min=("rho", "min"), rho_max=("rho", "max"), atoms=("atoms", "mean"))
    return agg.loc[list(order)]


def per_seed(results, representation: str, column: str) -> list[float]:
    """``column`` of ``representation`` in ``results`` (one row per seed and representation), in seed order (the
    arms of a seed-paired comparison)."""
    sub = results[results["representation"] == representation].sort_values("seed")
    if sub.empty:
        raise ValueError(f"no rows for representation {representation!r}")
    return [float(v) for v in sub[column]]


def final_accuracy(curves: Mapping[str, Sequence[np.ndarray]]) -> dict[str, float]:
    """Per learner: mean over seeds of the mean accuracy over each curve's last tenth (at least 1 step)."""
    return {k: float(np.mean([c[-max(1, len(c) // 10):].mean() for c in v])) for k, v in curves.items()}


def plateaued(loss: Sequence[float], frac: float = 0.2, tol: float = 0.01) -> bool:
    """Has a (noisy, per-step) loss curve plateaued? The mean loss over the last ``frac`` of the steps improves
    on the mean over the ``frac`` before it by less than ``tol`` times the mean loss over the first ``frac``
    (the loss at the start of training): ``(prev - last) < tol * first`` (our rule; relative to the start so
    that a loss falling towards 0 in ever smaller steps counts as flat). False with fewer than ``2 / frac``
    steps (too short to tell) or non-finite losses."""
    x = np.asarray(loss, dtype=np.float64)
    if not 0.0 < frac <= 0.5:
        raise ValueError(f"frac={frac} must be in (0, 0.5]")
    w = int(len(x) * frac)
    if w < 1 or len(x) < 2 / frac or not np.all(np.isfinite(x)):
        return False
    first, prev, last = x[:w].mean(), x[-2 * w:-w].mean(), x[-w:].mean()
    return bool(prev - last < tol * abs(first))
