"""Summaries of graded answers (replicate.glasses.answers) on a hand-made results table."""

from __future__ import annotations

import pandas as pd
import pytest

from replicate import verdicts
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


# ----------------------------------------------------------------------------- notebook 23's verdict rules

REP, PART, NOT, INC = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED, verdicts.INCONCLUSIVE
FAILED = [verdicts.control("format", False, 0.1, answers.FORMAT_MIN)]


def _paper(task, lengths):
    return {n: answers.paper_copy_outcome(task, n) for n in lengths}


def test_paper_copy_outcomes_transcribe_figs_2_and_11():
    assert answers.paper_copy_outcome("first", 500) is True and answers.paper_copy_outcome("first", 50) is None
    assert [answers.paper_copy_outcome("last", n) for n in (250, 300)] == [True, False]
    assert [answers.paper_copy_outcome("last_type1", n) for n in (300, 400, 500, 800, 900, 1500)] == [
        True, False, True, True, False, False]
    assert [answers.paper_copy_outcome("last_type2", n) for n in (1100, 1200)] == [True, False]
    assert answers.paper_copy_outcome("last_type2", 150) is None
    with pytest.raises(ValueError, match="unknown copy task"):
        answers.paper_copy_outcome("sum", 100)


def test_every_length_label():
    assert answers.every_length_label({100: True, 300: True}) == REP
    assert answers.every_length_label({100: True, 300: False}) == PART
    assert answers.every_length_label({100: False, 300: False}) == NOT
    assert answers.every_length_label({}) == INC
    assert answers.every_length_label({100: True}, FAILED) == INC


def test_horizon_label_needs_success_short_and_failure_beyond():
    lengths = answers.FIG2_LENGTHS
    assert answers.horizon_label(_paper("last", lengths)) == REP  # the paper's own outcome
    assert answers.horizon_label({n: n <= 150 for n in lengths}) == PART  # an earlier horizon
    assert answers.horizon_label({n: n <= 350 for n in lengths}) == PART  # a later one
    assert answers.horizon_label({n: False for n in lengths}) == NOT  # wrong from the start: no horizon
    assert answers.horizon_label({n: True for n in lengths}) == NOT  # never fails
    assert answers.horizon_label({100: True, 200: True}) == INC  # nothing beyond the horizon run
    assert answers.horizon_label(_paper("last", lengths), controls=FAILED) == INC


def test_fix_label():
    plain = _paper("last", answers.FIG2_LENGTHS)
    assert answers.fix_label([_paper("last_hint", answers.FIG2_LENGTHS)], plain) == REP
    assert answers.fix_label([{**plain, 400: True}], plain) == PART  # repairs one failure
    assert answers.fix_label([plain], plain) == NOT  # no better than without the fix
    assert answers.fix_label([{n: True for n in plain}, {}], plain) == INC
    assert answers.fix_label([{n: True for n in plain}], plain, FAILED) == INC


def test_fails_from():
    assert answers.fails_from(_paper("last", answers.FIG2_LENGTHS)) == 300
    assert answers.fails_from(_paper("last_type1", answers.FIG11_LENGTHS)) == 900  # the isolated 400 is not it
    assert answers.fails_from(_paper("last_type2", answers.FIG11_LENGTHS)) == 1200
    assert answers.fails_from({100: False, 200: False}) == 100
    assert answers.fails_from({100: False, 200: True}) is None
    assert answers.fails_from({}) is None


def test_delay_label_reaches_every_outcome():
    plain = _paper("last", answers.FIG2_LENGTHS)
    types = {t: _paper(t, answers.FIG11_LENGTHS) for t in ("last_type1", "last_type2")}
    assert answers.delay_label(types, plain) == REP  # the paper's Fig. 11
    assert answers.delay_label({**types, "last_type2": {n: n <= 200 for n in answers.FIG11_LENGTHS}}, plain) == PART
    assert answers.delay_label({**types, "last_type2": {n: True for n in answers.FIG11_LENGTHS}}, plain) == PART
    wrong = {n: False for n in answers.FIG11_LENGTHS}
    assert answers.delay_label({"last_type1": wrong, "last_type2": wrong}, {n: False for n in plain}) == NOT
    assert answers.delay_label(types, {n: True for n in plain}) == INC  # nothing to delay
    assert answers.delay_label({**types, "last_type2": {}}, plain) == INC
    assert answers.delay_label(types, plain, FAILED) == INC


def _count(predict, lengths=answers.FIG3_LENGTHS, tasks=("sum", "count_ones", "count_car"), condition="few_shot"):
    """A counting results table: truth = length, prediction predict(length, task) (None: unparsable)."""
    rows = []
    for t in tasks:
        for n in lengths:
            p = predict(n, t)
            rows.append({"condition": condition, "task": t, "length": n, "answer": n, "predicted": p,
                         "correct": p == n, "abs_error": float(abs((p if p is not None else 0) - n)),
                         "output": f" {p}" if p is not None else " xxxx"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("predict, label", [
    (lambda n, t: n if n <= 40 else min(n, 100), REP),  # Gemini-like: exact, then '100'
    (lambda n, t: (n if t == "sum" else 3) if n <= 40 else 100, PART),  # one task tracks
    (lambda n, t: 10, NOT),  # a constant answer
    (lambda n, t: 25, NOT),
    (lambda n, t: 100, NOT),
    (lambda n, t: n, NOT),  # a perfect counter: the error does not grow
])
def test_counting_label_fails_a_constant_predictor(predict, label):
    assert answers.counting_label(_count(predict))[0] == label


def test_counting_label_inconclusive():
    exact_then_100 = lambda n, t: n if n <= 40 else 100  # noqa: E731
    assert answers.counting_label(_count(exact_then_100, lengths=[5, 15, 45, 95]))[0] == INC  # short span 10
    assert answers.counting_label(_count(exact_then_100, lengths=[5, 25, 35]))[0] == INC  # nothing long
    assert answers.counting_label(_count(exact_then_100), controls=FAILED)[0] == INC
    assert answers.counting_label(_count(exact_then_100, lengths=[5, 25, 45]))[0] == REP


@pytest.mark.parametrize("predict, tasks, label", [
    (lambda n, t: 100 if n >= 95 else n, ("sum", "count_ones"), REP),  # Gemini's '100', a magnitude estimate
    (lambda n, t: 10 if n <= 45 else n + 7, ("sum", "count_ones", "count_car", "x"), NOT),  # '10' for 5-45: degenerate
    (lambda n, t: 100 if 95 <= n <= 115 else n + 7, ("sum", "count_ones"), PART),  # a weaker cluster (15%)
    (lambda n, t: n, ("sum", "count_ones"), NOT),  # no cluster
    (lambda n, t: 0, ("sum",), NOT),  # '0' estimates nothing
])
def test_default_value_label_fails_a_degenerate_default(predict, tasks, label):
    assert answers.default_value_label(_count(predict, tasks=tasks))[0] == label


def test_default_value_label_inconclusive_and_ties():
    assert answers.default_value_label(_count(lambda n, t: 100).iloc[:0])[0] == INC
    assert answers.default_value_label(_count(lambda n, t: 100), controls=FAILED)[0] == INC
    tie = _count(lambda n, t: 7 if n < 100 else 9, lengths=[5, 15, 105, 115], tasks=("sum",))
    assert answers.default_value(tie)[:2] == (7, 2)  # ties: the smallest value


def _copy_results(outcome, lengths, condition="few_shot", parsed=True):
    rows = []
    for t in answers.COPY_TASK_LABELS:
        for n in lengths:
            ok = outcome(t, n)
            if ok is None:
                continue
            rows.append({"condition": condition, "task": t, "length": n, "answer": 0,
                         "predicted": (0 if ok else 1) if parsed else None, "correct": bool(ok and parsed),
                         "abs_error": 0.0 if ok else 1.0,
                         "output": (" 0" if ok else " 1") if parsed else " <ANSWER>"})
    return pd.DataFrame(rows, columns=["condition", "task", "length", "answer", "predicted", "correct", "abs_error",
                                       "output"])


def test_copy_rows_on_the_papers_outcomes_and_on_a_model_that_always_answers_one():
    lengths = sorted(set(answers.FIG2_LENGTHS) | set(answers.FIG11_LENGTHS) | {10, 50})
    rows = answers.copy_rows(_copy_results(answers.paper_copy_outcome, lengths), "few_shot", "figures/c.png")
    assert [r["verdict"] for r in rows] == [REP] * 6
    assert "[10," not in rows[0]["ours"] and "50, 100" not in rows[0]["ours"]  # judged at the paper's lengths only
    ones = answers.copy_rows(_copy_results(lambda t, n: t == "first" and n < 100, lengths), "few_shot", "f.png")
    # right at 10 and 50 only (below the paper's lengths): no horizon, nothing fixed; first-vs-last is judged (the
    # first digit's short-length copies pass its capability control), Fig 11's is not: no prompt ever copies the
    # last digit, a floor where no delay can show
    assert [r["verdict"] for r in ones] == [NOT] * 5 + [INC]
    assert [c["passed"] for c in ones[2]["controls"]] == [True, True] and not ones[5]["controls"][-1]["passed"]
    last_short = answers.copy_rows(_copy_results(lambda t, n: t in ("first", "last") and n < 100, lengths),
                                   "few_shot", "f.png")
    assert last_short[5]["verdict"] == NOT and last_short[5]["controls"][-1]["passed"]  # the floor is left: judged
    assert verdicts.recompute(ones[2]) == NOT  # the threshold row re-derives from its evidence and controls
    never = answers.copy_rows(_copy_results(lambda t, n: False, lengths), "few_shot", "f.png")
    assert [r["verdict"] for r in never] == [NOT, NOT, INC, NOT, NOT, INC]  # the comparisons sit at the floor
    assert verdicts.recompute(never[2]) == INC
    unparsed = answers.copy_rows(_copy_results(answers.paper_copy_outcome, lengths, parsed=False), "few_shot", "f.png")
    assert all(r["verdict"] == INC for r in unparsed) and not unparsed[0]["controls"][0]["passed"]
    short = answers.copy_rows(_copy_results(lambda t, n: True, [10]), "few_shot", "f.png")
    assert all(r["verdict"] == INC for r in short)  # no paper length run (the smoke profile)
    verdicts.check_rows(rows + ones + last_short + never + unparsed + short)


def test_count_rows():
    gemini = _count(lambda n, t: n if n <= 40 else 100, tasks=tuple(answers.COUNT_TASK_LABELS))
    rows = answers.count_rows(gemini, "few_shot", ("figures/a.png", "figures/b.png"))
    assert [r["verdict"] for r in rows] == [REP, REP]
    constant = _count(lambda n, t: 10, tasks=tuple(answers.COUNT_TASK_LABELS))
    rows = answers.count_rows(constant, "few_shot", ("figures/a.png", "figures/b.png"))
    assert [r["verdict"] for r in rows] == [NOT, NOT]
    assert rows[0]["figure"] == "figures/a.png" and rows[1]["figure"] == "figures/b.png"
    assert all(r["verdict"] == INC for r in answers.count_rows(constant, "verbatim", ("a", "b")))  # no answers


@pytest.mark.parametrize("first_ok, lengths, label", [
    (lambda n: True, answers.FIG2_LENGTHS, REP),  # 9 of 9 against the paper's 4 of 9 for the last digit
    (lambda n: n <= 350, answers.FIG2_LENGTHS, PART),  # ahead at 2 lengths: mean above 0, interval not
    (lambda n: n <= 250, answers.FIG2_LENGTHS, NOT),  # no better than the last digit
    (lambda n: True, [100], INC),  # one length: no interval
])
def test_first_vs_last_row_reaches_every_outcome(first_ok, lengths, label):
    def outcome(t, n):
        return first_ok(n) if t == "first" else answers.paper_copy_outcome("last", n) if t == "last" else False

    row = answers.copy_rows(_copy_results(outcome, lengths), "few_shot", "f.png")[2]
    assert row["claim"].startswith("Fig 2a: copying the first digit is easier")
    assert row["verdict"] == label and verdicts.recompute(row) == label
    assert "seed" not in row["ours"]


def test_default_value_label_cannot_judge_a_narrow_range_of_answers():
    # '10' at lengths 5-15 is within x2 of every true answer: a fixed default cannot be told from an estimate
    narrow = _count(lambda n, t: 10, lengths=[5, 15], tasks=("sum", "count_ones"))
    assert answers.default_value_label(narrow)[0] == INC
    assert answers.default_value_label(_count(lambda n, t: 10, lengths=[5, 15, 25]))[0] == NOT  # x5 range: it can


def test_format_control_counts_a_wrong_multi_digit_answer_as_an_answer():
    res = pd.DataFrame({"condition": ["c"] * 4, "task": ["last"] * 4, "length": [100, 200, 300, 400],
                        "output": [" 1111", " 0", " <ANSWER>", "The answer to your question is: 1"],
                        "predicted": [None, 0, None, 1]})
    ctrl = answers.format_control(res, "c", ["last"], [100, 200, 300, 400], what="copy answers")
    assert ctrl["value"] == 0.75 and ctrl["passed"]
    assert not answers.format_control(res, "c", ["last"], [300], what="copy answers")["passed"]
    empty = answers.format_control(res, "c", ["first"], [100], what="copy answers")
    assert empty["value"] is None and not empty["passed"]
