"""Summaries of graded greedy answers (notebook 23: copying and counting, analogues of Figs 2-4, 6, 11).

The results table is ``pandas.DataFrame([r.as_dict() for r in tasks.evaluate(...)])``: one row per
item, with columns condition, task, length, answer, predicted, correct, abs_error (see
:class:`replicate.glasses.tasks.Result`). These helpers read it.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd


def _select(results: pd.DataFrame, condition: str, task: str) -> pd.DataFrame:
    return results[(results.condition == condition) & (results.task == task)]


def accuracy(results: pd.DataFrame, condition: str, task: str, lengths: Sequence[int] | None = None) -> float | None:
    """Share of correct answers for (condition, task), optionally at ``lengths`` only; None if no such item."""
    sub = _select(results, condition, task)
    if lengths is not None:
        sub = sub[sub.length.isin(lengths)]
    return float(sub.correct.mean()) if len(sub) else None


def correct_lengths(results: pd.DataFrame, condition: str, task: str) -> list[int]:
    """The lengths, ascending, at which (condition, task) was answered correctly."""
    sub = _select(results, condition, task).sort_values("length")
    return [int(n) for n in sub[sub.correct].length]


def describe(results: pd.DataFrame, condition: str, task: str) -> str:
    """``"correct at [5, 10] of [5, 10, 20]"`` (or ``"correct at no length of [...]"``) for verdict text."""
    sub = _select(results, condition, task).sort_values("length")
    ok = correct_lengths(results, condition, task)
    return f"correct at {ok if ok else 'no length'} of {[int(n) for n in sub.length]}"


def prediction_modes(count: pd.DataFrame, conditions: Sequence[str]) -> list[dict]:
    """Fig. 4's statistic per condition: answers, parsed answers, the most common parsed prediction
    and its count (None and 0 when nothing parsed), and the number of exact answers.

    ``count``: the counting rows of the results, with a boolean ``parsed`` column.
    """
    rows = []
    for condition in conditions:
        pred = count[(count.condition == condition) & count.parsed].predicted
        vc = pred.value_counts()
        rows.append(
            {
                "condition": condition,
                "answers": int((count.condition == condition).sum()),
                "parsed": int(len(pred)),
                "most common prediction": int(vc.index[0]) if len(vc) else None,
                "its count": int(vc.iloc[0]) if len(vc) else 0,
                "exact": int(count[count.condition == condition].correct.sum()),
            }
        )
    return rows


def check_mark(accuracy: float) -> str:
    """ "✓" for an accuracy of 1 (every answer right), "✗" otherwise: the cells of the copy table."""
    return "✓" if accuracy == 1 else "✗"
