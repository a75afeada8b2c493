"""Notebook 13's analysis of the Atari runs: per-seed curves, end-of-budget summaries and the verdict rows.

``results`` maps ``(game, method, seed)`` to the dict :func:`replicate.recode.atari_agent.train` returns
(per-update curves ``rooms``, ``score_max``, ``episodes``, ``return_running``, ... and ``visited_rooms``).

Verdict rule (stated in the notebook before the results): RECODE *explores better* than a rival when its mean
number of distinct rooms at the end of the budget is larger; the score claim compares the best return of an
ended episode when every method ended at least one episode, and otherwise the mean return of the running
episodes at the end of the budget. The rivals are those run among no bonus, RND, EMM and NGU. RECODE strictly
ahead of every rival: reproduced; ahead of at least one: partly; otherwise (typically every agent still in its
first room): not reproduced at this scale.
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
    """``{game: {method: mean distinct rooms at the end of the budget}}``."""
    return {g: {m: float(stack(results, g, m, seeds, "rooms")[:, -1].mean()) for m in methods} for g in games}


def score_at_end(
    results: Results, games: Sequence[str], methods: Sequence[str], seeds: Sequence[int]
) -> tuple[dict, dict]:
    """``(score_kind, score)`` per game: the best ended-episode return when every method ended an episode in
    every seed, else the mean running return at the end (see the module's rule)."""
    kind, score = {}, {}
    for g in games:
        ended = all(np.isfinite(best_ended(results, g, m, seeds)[:, -1]).all() for m in methods)
        kind[g] = BEST_ENDED if ended else RUNNING
        score[g] = {
            m: float(
                np.nanmax(best_ended(results, g, m, seeds)[:, -1])
                if ended
                else stack(results, g, m, seeds, "return_running")[:, -1].mean()
            )
            for m in methods
        }
    return kind, score


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


def recode_label(values: Mapping[str, float]) -> str:
    """The verdict of "RECODE beats every rival run" (:data:`RIVALS` present in ``{method: value}``; larger is
    better, strict)."""
    rivals = [m for m in RIVALS if m in values]
    return verdicts.from_wins(sum(values["recode"] > values[m] for m in rivals), len(rivals))


def verdict_rows(
    rooms: Mapping, score_kind: Mapping, score: Mapping, methods: Sequence[str], budget: str
) -> list[dict]:
    """Two rows per game (rooms, score) with the paper's statement beside ours; ``budget`` describes our runs."""
    rows = []
    for g in rooms:
        figure = f"figures/{FIGURES.get(g, g)}.png"
        name = NAMES.get(g, g)
        rivals = " and ".join(LABELS.get(m, m) for m in RIVALS if m in rooms[g] and m != "none")
        rows.append(
            verdicts.row(
                f"RECODE explores {name} further than {rivals} (more rooms)",
                "RECODE/MEME agents: state of the art on hard-exploration Atari (Fig. 6, unverified: located by "
                "secondary summaries), >= 1e9 frames",
                f"{budget}; rooms: " + ", ".join(f"{LABELS.get(m, m)} {rooms[g][m]:.1f}" for m in methods),
                recode_label(rooms[g]),
                figure,
            )
        )
        rows.append(
            verdicts.row(
                f"RECODE scores higher than {rivals} on {name}",
                "hard-exploration Atari scores (Fig. 6, unverified: secondary summaries), >= 1e9 frames",
                f"{budget}; {score_kind[g]}: " + ", ".join(f"{LABELS.get(m, m)} {score[g][m]:.1f}" for m in methods),
                recode_label(score[g]),
                figure,
            )
        )
    return rows
