"""Analysis of the RECODE agents' runs (notebooks 11 and 12): summaries, verdict rules and their formatting.

(Notebook 10's count-tracking analysis is :mod:`replicate.recode.count_tracking`.)

Notebooks 11 and 12 (PPO agents with an exploration bonus):

* :func:`exploration_summary`: the censored summary of one MiniGrid run (steps to the first success,
  seeds solved, final success rate, cells visited): the input of :func:`replicate.verdicts.explores_better`;
* :func:`beaten_rivals`, :func:`rivals_verdict`, :func:`tasks_verdict`, :func:`better_or_tie_verdict`:
  the "explores better" verdicts built on :func:`replicate.verdicts.explores_better` / ``explores_equal``;
* :func:`reference_size`, :func:`log2_slope`, :func:`dithering_verdict`, :func:`scaling_verdict`: the
  DeepSea size sweep;
* :func:`exploration_order`, :func:`fmt_censored_median`, :func:`thousands_tick`.

Notebook 12 (AP vs CASM on the same data): :func:`embedders`, :func:`aggregate_probes`,
:func:`final_accuracy`, :func:`plateaued`, :func:`spread_verdict`.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from replicate import verdicts
from replicate.recode import agents, representations
from replicate.rl import exploration

# ----------------------------------------------------------------------------- notebooks 11-12: exploration


def tail_length(n_updates: int, frac: float = 0.2) -> int:
    """Number of final updates in the last ``frac`` of ``n_updates``: ``frac * n_updates`` rounded to the
    nearest integer, at least 1 (the one tail rule of notebooks 11 and 12)."""
    return max(1, int(round(n_updates * frac)))


def final_success_rate(success_rate: np.ndarray, frac: float = 0.2) -> float:
    """Mean over seeds of each seed's mean success rate over its last ``frac`` of updates (:func:`tail_length`).

    ``success_rate`` is ``(S, U)`` with NaN where no episode ended in an update (ignored); 0 when no
    episode ended in any seed's tail.
    """
    x = np.asarray(success_rate, dtype=np.float64)
    k = tail_length(x.shape[1], frac)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a seed whose tail ended no episode: NaN, ignored
        tail = np.nanmean(x[:, -k:], axis=1)
    return float(np.nanmean(tail)) if np.isfinite(tail).any() else 0.0


def exploration_summary(run: Mapping[str, Any], *, tail_frac: float = 0.2) -> dict:
    """Censored summary of one MiniGrid run (:func:`replicate.recode.agents.minigrid_run`).

    ``median``/``q25``/``q75`` of the environment steps to each seed's first success (a seed that never
    succeeded counts at the budget ``env_steps``), ``solved`` (fraction of seeds), ``censored`` (median at
    the budget), ``final_success`` (:func:`final_success_rate`) and ``cells`` (mean distinct cells at the end).
    """
    fs = agents.first_success_steps(run)
    s = exploration.censored_summary(np.where(np.isfinite(fs), fs, exploration.NEVER), run["env_steps"])
    s["final_success"] = final_success_rate(run["success_rate"], tail_frac)
    s["cells"] = float(np.mean(run["distinct"][:, -1]))
    return s


def beaten_rivals(summaries: Mapping[Any, Mapping], method, rivals: Sequence) -> list:
    """The rivals that ``method`` explores better than (:func:`replicate.verdicts.explores_better`)."""
    return [m for m in rivals if verdicts.explores_better(summaries[method], summaries[m])]


def rivals_verdict(n_beaten: int, n_rivals: int) -> str:
    """Beats every rival: reproduced; some: partly; none (or no rival to beat): not reproduced."""
    return verdicts.from_wins(n_beaten, n_rivals) if n_rivals else verdicts.NOT_REPRODUCED


def tasks_verdict(beaten: Mapping[Any, Sequence], n_rivals: int) -> str:
    """Over several tasks: reproduced when every task's rivals are all beaten, partly when at least one
    rival is beaten on at least one task, otherwise not reproduced. ``beaten`` maps task -> rivals beaten."""
    if not beaten or n_rivals < 1:
        return verdicts.NOT_REPRODUCED
    if all(len(b) == n_rivals for b in beaten.values()):
        return verdicts.REPRODUCED
    return verdicts.PARTLY if any(beaten.values()) else verdicts.NOT_REPRODUCED


def better_or_tie_verdict(a: Mapping, b: Mapping) -> str:
    """``a`` explores better than ``b``: reproduced; a tie: partly; otherwise not reproduced."""
    if verdicts.explores_better(a, b):
        return verdicts.REPRODUCED
    return verdicts.PARTLY if verdicts.explores_equal(a, b) else verdicts.NOT_REPRODUCED


def reference_size(summaries: Mapping[tuple[int, str], Mapping], sizes: Sequence[int],
                   methods: Sequence[str]) -> int:
    """The largest DeepSea size at which any method solved a seed (the largest size if none did)."""
    solved = [n for n in sizes if any(summaries[(n, m)]["solved"] > 0 for m in methods)]
    return int(max(solved)) if solved else int(max(sizes))


def log2_slope(sizes: Sequence[int], medians: Sequence[float]) -> float:
    """Least-squares slope of log2(median episodes) against the size (NaN with fewer than two sizes)."""
    if len(sizes) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(sizes), np.log2(np.asarray(medians, dtype=np.float64)), 1)[0])


def dithering_verdict(median_episodes: float, size: int) -> str:
    """Without a bonus DeepSea-``size`` needs ~2^N episodes: reproduced when the median is >= 2^N / 4."""
    return verdicts.REPRODUCED if median_episodes >= 2 ** size / 4 else verdicts.NOT_REPRODUCED


def scaling_verdict(slope_recode: float, slope_none: float, recode_solved: float) -> str:
    """RECODE's log2 slope is under half the no-bonus one and it solves every seed at the largest size:
    reproduced; only a smaller slope: partly; otherwise (NaN slopes included) not reproduced."""
    if slope_recode < 0.5 * slope_none and recode_solved == 1.0:
        return verdicts.REPRODUCED
    return verdicts.PARTLY if slope_recode < slope_none else verdicts.NOT_REPRODUCED


def exploration_order(summaries: Mapping[Any, Mapping]) -> list:
    """Names ranked by (more seeds solved, lower median, higher final success); stable for ties."""
    def key(name):
        s = summaries[name]
        return (-s["solved"], s["median"], -s.get("final_success", 0.0))

    return sorted(summaries, key=key)


def fmt_censored_median(summary: Mapping[str, Any]) -> str:
    """The median to the first success, ``+`` when censored (a lower bound): ``"512"`` or ``"4096+"``."""
    return f"{summary['median']:.0f}" + ("+" if summary.get("censored") else "")


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


def spread_verdict(agg, column: str, base: str = "AP", new: str = "CASM") -> tuple[float, str]:
    """``new`` better than ``base`` on ``column``: the gap of seed means, and reproduced when it is positive
    and exceeds the larger min-max spread of the two over seeds, partly when only positive."""
    a, c = agg.loc[base], agg.loc[new]
    gap = c[f"{column}_mean"] - a[f"{column}_mean"]
    spread = max(a[f"{column}_max"] - a[f"{column}_min"], c[f"{column}_max"] - c[f"{column}_min"])
    if gap > spread and gap > 0:
        return gap, verdicts.REPRODUCED
    return gap, verdicts.PARTLY if gap > 0 else verdicts.NOT_REPRODUCED
