"""Analysis of the RECODE notebooks' runs: summaries, the verdict rules and their formatting.

Notebook 10 (count tracking on a drifting stream):

* :func:`final_mean` / :func:`final_std` / :func:`fmt_final`: the seed mean / spread of the final
  rank correlation of an ``(S, P)`` correlation array;
* :func:`ablation_grid` and :func:`ablation_sweep`: the memory ablations (one hyper-parameter changed
  at a time), :func:`ablation_means`, :func:`ablation_spread`, :func:`ablation_table`,
  :func:`ablation_label`;
* the verdict rules :func:`tracking_verdict`, :func:`forgetting_verdict`, :func:`ordering_verdict`,
  :func:`eviction_verdict`.

Notebooks 11 and 12 (PPO agents with an exploration bonus):

* :func:`exploration_summary`: the censored summary of one MiniGrid run (steps to the first success,
  seeds solved, final success rate, cells visited): the input of :func:`replicate.verdicts.explores_better`;
* :func:`beaten_rivals`, :func:`rivals_verdict`, :func:`tasks_verdict`, :func:`better_or_tie_verdict`:
  the "explores better" verdicts built on :func:`replicate.verdicts.explores_better` / ``explores_equal``;
* :func:`reference_size`, :func:`log2_slope`, :func:`dithering_verdict`, :func:`scaling_verdict`: the
  DeepSea size sweep;
* :func:`exploration_order`, :func:`fmt_censored_median`, :func:`thousands_tick`.

Notebook 12 (AP vs CASM on the same data): :func:`embedders`, :func:`aggregate_probes`,
:func:`final_accuracy`, :func:`spread_verdict`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from replicate import verdicts
from replicate.recode import agents, experiments, representations
from replicate.rl import exploration

# ----------------------------------------------------------------------------- notebook 10: count tracking


def final_mean(rho: np.ndarray) -> float:
    """Mean over seeds of the last evaluation point of an ``(S, P)`` correlation array."""
    return float(np.mean(rho[:, -1]))


def final_std(rho: np.ndarray) -> float:
    """Spread (population std) over seeds of the last evaluation point of an ``(S, P)`` array."""
    return float(np.std(rho[:, -1]))


def fmt_final(rho: np.ndarray) -> str:
    """``"mean ± std"`` over seeds of the final correlation, 3 decimals."""
    return f"{rho[:, -1].mean():.3f} ± {rho[:, -1].std():.3f}"


def ablation_grid(cfg, *, evictions: Sequence[str], gammas: Sequence[float], memory_sizes: Sequence[int],
                  etas: Sequence[float]) -> dict[str, list]:
    """The values each ablation runs: the removal rules as given; for ``gamma``, ``memory_size`` and
    ``eta`` the configuration's own value plus the extra ones, sorted and without duplicates."""
    return {"eviction": list(evictions),
            "gamma": sorted(set([cfg.gamma] + list(gammas))),
            "memory_size": sorted(set([cfg.memory_size] + list(memory_sizes))),
            "eta": sorted(set([cfg.eta] + list(etas)))}


def ablation_sweep(cfg, grid: Mapping[str, Sequence], stream: experiments.Stream, points: Sequence[int], key,
                   truth_cum: np.ndarray, known: Mapping[Any, tuple[np.ndarray, np.ndarray]] | None = None
                   ) -> list[dict]:
    """Run RECODE once per ablated configuration (``cfg`` with one field of ``grid`` changed) to the
    last evaluation point and rank-correlate its counts with the truth.

    ``known`` maps configurations already run to their final ``(N, nearest atom)`` counts, each
    ``(S, 1, n_cells)`` (the main run), which are reused instead of re-running them; configurations
    that repeat within the grid run once. Returns one row per value: ``ablation``, ``value`` and the
    ``(S,)`` final Spearman correlations ``rho_atom`` and ``rho_N`` (vs the truth discounted by the
    configuration's own gamma) and ``rho_atom_cum`` (nearest atom vs ``truth_cum[-1:]``, the final
    cumulative counts).
    """
    runs = dict(known or {})
    truths: dict[float, np.ndarray] = {}
    last = list(points)[-1:]
    rows = []
    for name, values in grid.items():
        for v in values:
            c = dataclasses.replace(cfg, **{name: v})
            if c not in runs:
                n_count, atom, _ = experiments.run_recode(c, stream, last, key)
                runs[c] = (n_count, atom)
            n_count, atom = runs[c]
            if c.gamma not in truths:
                truths[c.gamma] = experiments.true_counts(stream.cells, stream.gs.n_cells, c.gamma, last)
            truth = truths[c.gamma]
            rows.append({"ablation": name, "value": v,
                         "rho_atom": experiments.correlations(atom, truth)[:, -1],
                         "rho_N": experiments.correlations(n_count, truth)[:, -1],
                         "rho_atom_cum": experiments.correlations(atom, truth_cum[-1:])[:, -1]})
    return rows


def ablation_means(rows: Sequence[Mapping], ablation: str, column: str = "rho_atom") -> dict:
    """``{value: seed mean of column}`` for the rows of one ablation, in row order."""
    return {r["value"]: float(r[column].mean()) for r in rows if r["ablation"] == ablation}


def ablation_spread(rows: Sequence[Mapping], ablation: str, column: str = "rho_atom") -> float:
    """Largest seed std of ``column`` over the rows of one ablation (0 when there are none)."""
    return max((float(r[column].std()) for r in rows if r["ablation"] == ablation), default=0.0)


def ablation_summary(rows: Sequence[Mapping], column: str = "rho_atom") -> dict[str, float]:
    """``{"ablation=value": seed mean of column}`` over every row (the metrics' legacy key)."""
    return {f"{r['ablation']}={r['value']}": float(r[column].mean()) for r in rows}


def ablation_table(rows: Sequence[Mapping]):
    """The ablation rows as a display DataFrame (mean [min, max] over seeds)."""
    import pandas as pd

    return pd.DataFrame([{"ablation": r["ablation"], "value": r["value"],
                          "ρ nearest atom (vs own discounted truth)":
                              f"{r['rho_atom'].mean():.3f} [{r['rho_atom'].min():.3f}, {r['rho_atom'].max():.3f}]",
                          "ρ N": f"{r['rho_N'].mean():.3f}",
                          "ρ nearest atom vs cumulative": f"{r['rho_atom_cum'].mean():.3f}"}
                         for r in rows])


def ablation_label(value) -> str:
    """Tick label of an ablation value: the removal rules as the paper writes them (1/c², 1/c)."""
    return str(value).replace("inverse_square", "1/c²").replace("inverse", "1/c")


def tracking_verdict(rho_n: float, rho_atom: float, threshold: float = 0.8) -> str:
    """Count tracking: reproduced when ``N`` reaches ``threshold``, partly when only the nearest atom does."""
    if rho_n >= threshold:
        return verdicts.REPRODUCED
    return verdicts.PARTLY if rho_atom >= threshold else verdicts.NOT_REPRODUCED


def forgetting_verdict(rho_episodic: float, rho_long_term: float, gap: float = 0.2) -> str:
    """The episodic memory forgets: its correlation is at least ``gap`` below the long-term one."""
    return verdicts.REPRODUCED if rho_episodic < rho_long_term - gap else verdicts.NOT_REPRODUCED


def ordering_verdict(pairs: Sequence[tuple[float, float]], spreads: Sequence[float]) -> str:
    """An ordering between settings: each pair is ``(expected higher, expected lower)``.

    Reproduced when every difference exceeds its seed spread, partly when every pair only points the
    right way, otherwise not reproduced.
    """
    if len(pairs) != len(spreads) or not pairs:
        raise ValueError(f"need one spread per pair and at least one pair, got {len(pairs)} and {len(spreads)}")
    if all(hi - lo > s for (hi, lo), s in zip(pairs, spreads)):
        return verdicts.REPRODUCED
    return verdicts.PARTLY if all(hi > lo for hi, lo in pairs) else verdicts.NOT_REPRODUCED


def eviction_verdict(scores: Mapping[str, float], spread: float, rule: str = "inverse_square") -> str:
    """Is removal ``rule`` the best? ``scores`` maps each rule to its seed-mean correlation.

    Reproduced when ``rule`` is the best by more than ``spread`` (the seed std); partly when it is
    within ``spread`` of the best; otherwise (or with fewer than two rules to rank) not reproduced.
    """
    if len(scores) < 2:
        return verdicts.NOT_REPRODUCED
    best = max(scores, key=scores.get)
    if best == rule and scores[rule] - sorted(scores.values())[-2] > spread:
        return verdicts.REPRODUCED
    return verdicts.PARTLY if scores.get(rule, -1) >= max(scores.values()) - spread else verdicts.NOT_REPRODUCED


# ----------------------------------------------------------------------------- notebooks 11-12: exploration


def tail_length(n_updates: int, frac: float = 0.2, rounding: str = "nearest") -> int:
    """Number of final updates in the last ``frac`` of ``n_updates`` (at least 1).

    ``rounding="nearest"`` rounds ``frac * n_updates`` (notebook 11), ``"floor"`` truncates it
    (notebook 12's committed numbers; the two differ when ``n_updates % 5`` is 3 or 4 at ``frac=0.2``).
    """
    if rounding == "nearest":
        return max(1, int(round(n_updates * frac)))
    if rounding == "floor":
        return max(1, int(n_updates * frac))
    raise ValueError(f"rounding={rounding!r}: use 'nearest' or 'floor'")


def final_success_rate(success_rate: np.ndarray, frac: float = 0.2, rounding: str = "nearest") -> float:
    """Mean over seeds of each seed's mean success rate over its last ``frac`` of updates.

    ``success_rate`` is ``(S, U)`` with NaN where no episode ended in an update (ignored); 0 when no
    episode ended in any seed's tail.
    """
    x = np.asarray(success_rate, dtype=np.float64)
    k = tail_length(x.shape[1], frac, rounding)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a seed whose tail ended no episode: NaN, ignored
        tail = np.nanmean(x[:, -k:], axis=1)
    return float(np.nanmean(tail)) if np.isfinite(tail).any() else 0.0


def exploration_summary(run: Mapping[str, Any], *, tail_frac: float = 0.2, tail_rounding: str = "nearest") -> dict:
    """Censored summary of one MiniGrid run (:func:`replicate.recode.agents.minigrid_run`).

    ``median``/``q25``/``q75`` of the environment steps to each seed's first success (a seed that never
    succeeded counts at the budget ``env_steps``), ``solved`` (fraction of seeds), ``censored`` (median at
    the budget), ``final_success`` (:func:`final_success_rate`) and ``cells`` (mean distinct cells at the end).
    """
    fs = agents.first_success_steps(run)
    s = exploration.censored_summary(np.where(np.isfinite(fs), fs, exploration.NEVER), run["env_steps"])
    s["final_success"] = final_success_rate(run["success_rate"], tail_frac, tail_rounding)
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


def spread_verdict(agg, column: str, base: str = "AP", new: str = "CASM") -> tuple[float, str]:
    """``new`` better than ``base`` on ``column``: the gap of seed means, and reproduced when it is positive
    and exceeds the larger min-max spread of the two over seeds, partly when only positive."""
    a, c = agg.loc[base], agg.loc[new]
    gap = c[f"{column}_mean"] - a[f"{column}_mean"]
    spread = max(a[f"{column}_max"] - a[f"{column}_min"], c[f"{column}_max"] - c[f"{column}_min"])
    if gap > spread and gap > 0:
        return gap, verdicts.REPRODUCED
    return gap, verdicts.PARTLY if gap > 0 else verdicts.NOT_REPRODUCED
