"""Summaries of graded answers (replicate.glasses.answers) on a hand-made results table."""

from __future__ import annotations

import pandas as pd

from replicate.glasses import answers


def _results():
    rows = [  # condition, task, length, answer, predicted, correct
        ("few_shot", "first", 5, 0, 0, True),
        ("few_shot", "first", 10, 0, 0, True),
        ("few_shot", "first", 50, 0, 5, False),
        ("few_shot", "last", 5, 0, 1, False),
        ("few_shot", "last", 10, 0, 1, False),
        ("few_shot", "last", 50, 0, 1, False),
        ("verbatim", "first", 5, 0, None, False),
    ]
    return pd.DataFrame(rows, columns=["condition", "task", "length", "answer", "predicted", "correct"])


def test_accuracy_and_correct_lengths():
    res = _results()
    assert answers.accuracy(res, "few_shot", "first") == 2 / 3
    assert answers.accuracy(res, "few_shot", "first", lengths=[5, 10]) == 1.0
    assert answers.accuracy(res, "few_shot", "last") == 0.0
    assert answers.accuracy(res, "few_shot", "sum") is None
    assert answers.correct_lengths(res.iloc[::-1], "few_shot", "first") == [5, 10]  # sorted by length
    assert answers.describe(res, "few_shot", "first") == "correct at [5, 10] of [5, 10, 50]"
    assert answers.describe(res, "few_shot", "last") == "correct at no length of [5, 10, 50]"


def test_prediction_modes():
    count = pd.DataFrame(
        {
            "condition": ["a"] * 5 + ["b"] * 2,
            "predicted": [10, 10, 3, None, 10, None, None],
            "parsed": [True, True, True, False, True, False, False],
            "correct": [True, False, False, False, False, False, False],
        }
    )
    a, b = answers.prediction_modes(count, ["a", "b"])
    assert a == {"condition": "a", "answers": 5, "parsed": 4, "most common prediction": 10, "its count": 3, "exact": 1}
    assert b == {
        "condition": "b",
        "answers": 2,
        "parsed": 0,
        "most common prediction": None,
        "its count": 0,
        "exact": 0,
    }


def test_check_mark():
    assert [answers.check_mark(v) for v in (1.0, 0.5, 0.0)] == ["✓", "✗", "✗"]
