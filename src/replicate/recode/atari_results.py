"""Notebook 13's analysis of the Atari runs: per-seed curves, end-of-budget summaries and the verdict rows.

``results`` maps ``(game, method, seed)`` to the dict :func:`replicate.recode.atari_agent.train` returns
(per-update curves ``rooms``, ``score_max``, ``episodes``, ``return_running``, ... and ``visited_rooms``).

Verdict rule (stated in the notebook before the results; :func:`verdict_rows`): two rows per game, each "RECODE
beats every rival run" (no bonus, RND, and EMM and NGU where they ran) on a per-seed score by the shared seed-paired
95% t-interval (:func:`replicate.verdicts.comparison_row`): the distinct rooms visited by the end of the budget, and
the score (each seed's best return of an ended episode when every method ended at least one episode in every seed,
otherwise the return of the running episodes at the end of the budget). All rivals beaten: reproduced; some:
partly; none: not reproduced at this scale; one seed (no interval) or a failed positive control: inconclusive.
The positive control (:func:`separable_control`): the score differs between at least two runs of the game (any
method, any seed); when every run ends with the same value the set-up cannot separate the arms.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from replicate import verdicts

LABELS = {"none": "no bonus", "rnd": "RND", "emm": "EMM (AP)", "ngu": "NGU (AP + RND)", "recode": "RECODE (AP)"}
RIVALS = ("none", "rnd", "emm", "ngu")  # what RECODE is compared with, where run
NAMES = {"montezuma_revenge": "Montezuma's Revenge", "pitfall": "Pitfall!"}
FIGURES = {"montezuma_revenge": "recode_fig_atari_montezuma", "pitfall": "recode_fig_atari_pitfall"}
START_ROOM = {"montezuma_revenge": 1, "pitfall": 0xC4}  # room 1 of level 0; Pitfall! screen $C4
PAPER_FRAMES = 1e9  # "billions of frames": a lower bound on the paper's budget per run
BEST_ENDED = "best ended-episode return"
RUNNING = "mean running return"

Results = Mapping[tuple, Mapping]


def stack(results: Results, game: str, method: str, seeds: Sequence[int], key: str) -> np.ndarray:
    """(seeds, updates) array of the curve ``key`` of every seed."""
    return np.stack([results[(game, method, s)][key] for s in seeds])


def best_ended(results: Results, game: str, method: str, seeds: Sequence[int]) -> np.ndarray:
    """(seeds, updates) best return of an ended episode, NaN where no episode had ended (train() reports 0.0)."""
    return np.where(
        stack(results, game, method, seeds, "episodes") > 0, stack(results, game, method, seeds, "score_max"), np.nan
    )


def best_score(results: Results, game: str, method: str, seeds: Sequence[int]) -> float | None:
    """Best ended-episode return at the end over seeds; ``None`` when no seed ended an episode."""
    last = best_ended(results, game, method, seeds)[:, -1]
    return float(np.nanmax(last)) if np.isfinite(last).any() else None


def visited_rooms(results: Results, game: str, method: str, seeds: Sequence[int]) -> list[int]:
    """Sorted union of the room ids every seed visited."""
    return sorted(set().union(*[results[(game, method, s)]["visited_rooms"] for s in seeds]))


def rooms_at_end(results: Results, games: Sequence[str], methods: Sequence[str], seeds: Sequence[int]) -> dict:
    """``{game: {method: [distinct rooms at the end of the budget, one per seed]}}``."""
    return {g: {m: stack(results, g, m, seeds, "rooms")[:, -1].tolist() for m in methods} for g in games}


def score_at_end(
    results: Results, games: Sequence[str], methods: Sequence[str], seeds: Sequence[int]
) -> tuple[dict, dict]:
    """``(score_kind, score)`` per game, ``score[game][method]`` one value per seed: each seed's best ended-episode
    return when every method ended an episode in every seed, else the running return at the end (the module's
    rule)."""
    kind, score = {}, {}
    for g in games:
        ended = all(np.isfinite(best_ended(results, g, m, seeds)[:, -1]).all() for m in methods)
        kind[g] = BEST_ENDED if ended else RUNNING
        key = "score_max" if ended else "return_running"
        score[g] = {m: stack(results, g, m, seeds, key)[:, -1].tolist() for m in methods}
    return kind, score


def means(per_seed: Mapping) -> dict:
    """``{game: {method: mean over seeds}}`` of :func:`rooms_at_end`'s or :func:`score_at_end`'s values."""
    return {g: {m: float(np.mean(v)) for m, v in d.items()} for g, d in per_seed.items()}


def episodes_ended(results: Results, games: Sequence[str], methods: Sequence[str], seeds: Sequence[int]) -> dict:
    """``{game: {method: episodes ended, summed over seeds}}``."""
    return {g: {m: int(stack(results, g, m, seeds, "episodes")[:, -1].sum()) for m in methods} for g in games}


def summary_rows(results: Results, games: Sequence[str], methods: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    """One row per game and method for the notebook's results table."""
    rows = []
    for g in games:
        for m in methods:
            best = best_score(results, g, m, seeds)
            rows.append(
                {
                    "game": NAMES.get(g, g),
                    "method": LABELS.get(m, m),
                    "frames": int(results[(g, m, seeds[0])]["frames"][-1]),
                    "rooms visited (mean over seeds)": float(stack(results, g, m, seeds, "rooms")[:, -1].mean()),
                    "rooms (ids)": visited_rooms(results, g, m, seeds),
                    "episodes ended": int(stack(results, g, m, seeds, "episodes")[:, -1].sum()),
                    "best ended-episode return": np.nan if best is None else best,
                    "mean running return (last update)": float(
                        stack(results, g, m, seeds, "return_running")[:, -1].mean()
                    ),
                    "mean raw intrinsic reward (last update)": float(
                        stack(results, g, m, seeds, "r_int_raw")[:, -1].mean()
                    ),
                }
            )
    return rows


def separable_control(per_seed: Mapping[str, Sequence[float]], metric: str) -> dict:
    """Positive control of a game's row: the per-seed ``metric`` (``{method: values}``) differs between at least two
    runs (any method, any seed). If every run ends with the same value (e.g. every agent still in its first room)
    no comparison of the methods can show anything: the row is inconclusive. ``value``: the spread (max - min) over
    every run; ``threshold``: 0 (the spread must exceed it)."""
    x = np.concatenate([np.asarray(v, np.float64).ravel() for v in per_seed.values()]) if per_seed else np.array([])
    if x.size < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"separable_control needs finite per-seed values of at least one run; got {dict(per_seed)}")
    spread = float(np.ptp(x))
    return verdicts.control(f"not every run ends with the same {metric} (the set-up can separate the methods)",
                            spread > 0, spread, 0.0)


def flat_note(curves: Sequence[np.ndarray], what: str) -> str | None:
    """A note for a figure panel whose curves are all one constant (every method, seed and update), else None:
    such a panel shows nothing, and says so."""
    x = np.concatenate([np.asarray(c, np.float64).ravel() for c in curves]) if len(curves) else np.array([])
    x = x[np.isfinite(x)]
    if x.size == 0 or np.ptp(x) > 0:
        return None
    return (f"every run (all methods, all seeds): {what} = {x[0]:g} throughout;\n"
            "this budget cannot tell the methods apart")


def verdict_rows(
    rooms: Mapping, score_kind: Mapping, score: Mapping, methods: Sequence[str], budget: str
) -> list[dict]:
    """Two rows per game (rooms, score): RECODE against every rival run (:data:`RIVALS` among ``methods``) on the
    per-seed values of :func:`rooms_at_end` / :func:`score_at_end`, by :func:`replicate.verdicts.comparison_row`
    with :func:`separable_control`; ``budget`` describes our runs."""
    if "recode" not in methods:
        raise ValueError(f"methods must include 'recode' (the arm judged); got {list(methods)}")
    rivals = [m for m in RIVALS if m in methods]
    if not rivals:
        raise ValueError(f"methods must include at least one rival of RECODE from {RIVALS}; got {list(methods)}")
    rows = []
    for g in rooms:
        figure = f"figures/{FIGURES.get(g, g)}.png"
        name = NAMES.get(g, g)
        named = " and ".join(LABELS.get(m, m) for m in rivals)
        for claim, paper, metric, values in [
            (f"RECODE explores {name} further than {named} (more rooms)",
             "RECODE/MEME agents: state of the art on hard-exploration Atari (Fig. 6, unverified: located by "
             "secondary summaries), >= 1e9 frames",
             "number of distinct rooms at the end of the budget", rooms[g]),
            (f"RECODE scores higher than {named} on {name}",
             "hard-exploration Atari scores (Fig. 6, unverified: secondary summaries), >= 1e9 frames",
             score_kind[g], score[g]),
        ]:
            arms = {LABELS.get(m, m): values[m] for m in methods}
            control = separable_control({m: values[m] for m in methods}, metric)
            rule = (f"RECODE beats a rival when the seed-paired 95% t-interval of the {metric} difference lies "
                    "above 0; all rivals: reproduced, some: partly, none: not reproduced; < 2 seeds or a failed "
                    f"control (the {metric} is the same in every run, so the set-up cannot separate the methods): "
                    "inconclusive")
            rows.append(verdicts.comparison_row(
                claim, paper, figure, arms, LABELS["recode"], [LABELS.get(m, m) for m in rivals], metric=metric,
                controls=[control], rule=rule, digits=1, ours_prefix=f"{budget}; "))
    return rows
