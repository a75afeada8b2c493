"""Notebook 13's analysis of the Atari runs: per-seed curves, end-of-budget summaries and the verdict rows.

``results`` maps ``(game, method, seed)`` to the dict :func:`replicate.recode.atari_agent.train` returns
(per-update curves ``rooms``, ``score_max``, ``episodes``, ``return_running``, ... and ``visited_rooms``).

Verdict rule (stated in the notebook before the results): RECODE *explores better* than a rival when it ends the
budget with more distinct rooms; the score claim compares each seed's best return of an ended episode when every
method ended at least one episode in every seed, and otherwise the return of the running episodes at the end of the
budget. RECODE is *ahead* of a rival (:func:`ahead`) with one seed when its value is strictly larger, and with
several seeds when the 95% Student-t interval of the mean seed-paired difference (RECODE minus rival) lies above 0.
The rivals are those run among no bonus, RND, EMM and NGU. RECODE ahead of every rival: reproduced; of at least
one: partly; otherwise (typically every agent still in its first room): not reproduced at this scale.
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


def ahead(recode: Sequence[float], rival: Sequence[float], level: float = 0.95) -> bool:
    """Is RECODE ahead of a rival (values per seed, paired by seed; larger is better)? One seed: strictly larger.
    Several: the ``level`` Student-t interval of the mean paired difference lies above 0
    (:func:`replicate.verdicts.mean_ci`)."""
    d = np.asarray(recode, np.float64) - np.asarray(rival, np.float64)
    if d.ndim != 1 or d.size < 1:
        raise ValueError(f"ahead needs equal-length, non-empty per-seed values; got {len(recode)} and {len(rival)}")
    if d.size == 1:
        return bool(d[0] > 0)
    _, lo, _ = verdicts.mean_ci(d, level)
    return bool(lo > 0)


def recode_label(values: Mapping[str, Sequence[float]]) -> str:
    """The verdict of "RECODE is ahead of every rival run" (:data:`RIVALS` present in ``{method: per-seed
    values}``; :func:`ahead`)."""
    rivals = [m for m in RIVALS if m in values]
    return verdicts.from_wins(sum(ahead(values["recode"], values[m]) for m in rivals), len(rivals))


def _fmt(values: Sequence[float]) -> str:
    return verdicts.fmt_ci(*verdicts.mean_ci(values), digits=1)


def verdict_rows(
    rooms: Mapping, score_kind: Mapping, score: Mapping, methods: Sequence[str], budget: str
) -> list[dict]:
    """Two rows per game (rooms, score) with the paper's statement beside ours (per-seed values from
    :func:`rooms_at_end` / :func:`score_at_end`, shown as mean [95% CI]); ``budget`` describes our runs."""
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
                f"{budget}; rooms: " + ", ".join(f"{LABELS.get(m, m)} {_fmt(rooms[g][m])}" for m in methods),
                recode_label(rooms[g]),
                figure,
            )
        )
        rows.append(
            verdicts.row(
                f"RECODE scores higher than {rivals} on {name}",
                "hard-exploration Atari scores (Fig. 6, unverified: secondary summaries), >= 1e9 frames",
                f"{budget}; {score_kind[g]}: " + ", ".join(f"{LABELS.get(m, m)} {_fmt(score[g][m])}" for m in methods),
                recode_label(score[g]),
                figure,
            )
        )
    return rows
