"""Summaries of graded greedy answers (notebook 23: copying and counting, analogues of Figs 2-4, 6, 11).

The results table is ``pandas.DataFrame([r.as_dict() for r in tasks.evaluate(...)])``: one row per
item, with columns condition, task, length, answer, predicted, correct, abs_error (see
:class:`replicate.glasses.tasks.Result`). These helpers read it.

The verdict rules of notebook 23 are judged at the paper's own lengths (Figs. 2, 3, 4, 11; research notes §2), each
with a positive control (the model answers with a number: :func:`format_control`) and reaching every label (tested):
:func:`every_length_label` (Fig. 2a first digit), :func:`horizon_label` (Fig. 2a last digit: right at short lengths,
wrong beyond), :func:`fix_label` (Figs. 2b, 2c), :func:`delay_label` with :func:`fails_from` (Fig. 11),
:func:`counting_label` (Figs. 3/6; a constant answer fails it) and :func:`default_value_label` (Fig. 4; a default
given regardless of length fails it). :func:`copy_rows` and :func:`count_rows` build the rows.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from replicate import verdicts
from replicate.glasses import tasks


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


# ---------------------------------------------------------------------------------------------
# Verdict rules of notebook 23, judged at the paper's own lengths (research notes §2)
# ---------------------------------------------------------------------------------------------

#: Fig. 2 (a)-(c): Gemini's copy lengths, 100 to 500 in steps of 50.
FIG2_LENGTHS: tuple[int, ...] = tuple(range(100, 501, 50))
#: Fig. 2a: the last digit of "1…10" is correct at 100-250 and wrong at every length from 300 (binary plot:
#: no reading error; the horizon lies between 250 and 300).
FIG2_LAST_CORRECT_UP_TO = 250
#: Fig. 11: the Type 1 / Type 2 prompts at 100 to 1500 in steps of 100.
FIG11_LENGTHS: tuple[int, ...] = tuple(range(100, 1501, 100))
#: Figs. 3, 4, 6: counting lengths 5, 15, ..., 195.
FIG3_LENGTHS: tuple[int, ...] = tuple(range(5, 196, 10))
#: Figs. 3/6: "errors are ≈0 up to length ~40".
COUNT_SHORT_MAX = 40
#: How far from 0 a bar of Fig. 3 can be and still read as "≈0": ≈5 on its 0-175 axis (about 3% of the axis,
#: the height a bar must have to be told from the baseline).
COUNT_TOLERANCE = 5.0
#: Positive control of every copy/count row: at least this share of the judged answers contain a number (the model
#: answers, so right and wrong are measurable). Our choice.
FORMAT_MIN = 0.75
#: Fig. 4: "100" in ≈22 of the no-CoT answers, ±2 read off the histogram; 80 answers if each of Fig. 3's 4 tasks x 20
#: lengths is answered once (our inference: the notes give no total). Lower reading bound 20/80.
FIG4_DEFAULT_COUNT = 22
FIG4_ANSWERS = 80
FIG4_SHARE_MIN = 20 / 80
#: Fig. 4's default is a magnitude estimate ("crude subitising": '100' once the length is around or above 100): a
#: default counts as one when at least :data:`ESTIMATE_SHARE` of its uses are for true answers within this factor of
#: it (our choices: Gemini's '100' for lengths ≈100-195 is within x2 of every true answer).
SUBITISING_FACTOR = 2.0
ESTIMATE_SHARE = 0.75

_PAPER_COPY_TEXT = {
    "first": "Fig. 2a (notes §2), Gemini 1.5: first digit of '01…1' correct at all 9 lengths 100–500",
    "last": "Fig. 2a (notes §2), Gemini 1.5: last digit of '1…10' correct at 100–250, wrong at every length 300–500",
    "last_hint": "Fig. 2b (notes §2), Gemini 1.5: with the hint, correct at all 9 lengths 100–500",
    "interleaved": "Fig. 2c (notes §2), Gemini 1.5: '0101…0' and '1010…0' correct at all lengths 100–500",
    "types": "Fig. 11 (notes §2), Gemini 1.5: Type 1 wrong at 400 and from 900, Type 2 wrong from 1200 (of 100–1500); "
             "Fig. 2's prompt wrong from 300; 'for both types of prompts, the model ends up failing'",
}


def paper_copy_outcome(task: str, length: int) -> bool | None:
    """Gemini 1.5's answer in the paper (True: correct, False: wrong) for a copy task at ``length``, read off
    Figs. 2 and 11 (notes §2); None where the paper has no such point."""
    if task in ("first", "last", "last_hint", "interleaved_01", "interleaved_10"):
        if length not in FIG2_LENGTHS:
            return None
        return length <= FIG2_LAST_CORRECT_UP_TO if task == "last" else True
    if task in ("last_type1", "last_type2"):
        if length not in FIG11_LENGTHS:
            return None
        if task == "last_type1":
            return length <= 300 or 500 <= length <= 800
        return length <= 1100
    raise ValueError(f"unknown copy task {task!r}")


def outcomes(results: pd.DataFrame, condition: str, task: str, lengths: Sequence[int]) -> dict[int, bool]:
    """Whether (condition, task) was answered correctly at each of ``lengths`` that was run (one answer per length;
    the first if there are several), ascending."""
    sub = _select(results, condition, task)
    sub = sub[sub.length.isin(list(lengths))].sort_values("length").drop_duplicates("length")
    return {int(n): bool(c) for n, c in zip(sub.length, sub.correct)}


def answered(results: pd.DataFrame) -> pd.Series:
    """Whether each answer contains a number (:func:`replicate.glasses.tasks.parse_answer` without the one-digit
    restriction of the copy tasks): the model answered, right or wrong ("1111" to a copy question is a wrong answer,
    not a missing one)."""
    return results.output.map(lambda text: tasks.parse_answer(text) is not None).astype(bool)


def format_control(results: pd.DataFrame, condition: str, task_names: Sequence[str], lengths: Sequence[int], *,
                   what: str) -> dict:
    """Positive control: at least :data:`FORMAT_MIN` of (condition, task_names)'s answers at ``lengths`` contain a
    number (:func:`answered`: the model answers, so right and wrong are measurable); with no such answer, value NaN
    and failed."""
    sub = results[(results.condition == condition) & results.task.isin(list(task_names))]
    sub = sub[sub.length.isin(list(lengths))]
    share = float(answered(sub).mean()) if len(sub) else float("nan")
    return verdicts.control(f"{what} contain a number (share)", bool(len(sub)) and share >= FORMAT_MIN, share,
                            FORMAT_MIN)


def copy_capability_control(results: pd.DataFrame, condition: str, task_names: Sequence[str]) -> dict:
    """Positive control of a *comparative* copy row (one prompt easier than, or failing later than, another): the
    model copies correctly with at least one of ``task_names`` at some length run, the short lengths below the
    paper's included. Then prompt, parsing and model can register the correct copies the comparison needs; a model
    wrong with every compared prompt at every length sits at the floor, where no ordering of the prompts can show,
    and the row is inconclusive."""
    sub = results[(results.condition == condition) & results.task.isin(list(task_names))]
    n = int(sub.correct.sum()) if len(sub) else 0
    return verdicts.control(f"correct copies with {' / '.join(task_names)} at any length run (count)", n >= 1,
                            float(n), 1.0)


def every_length_label(correct: Mapping[int, bool], controls: Sequence[Mapping] = ()) -> str:
    """Correct at every paper length run: reproduced; at some: partly; at none: not reproduced; no paper length run
    or a failed control: inconclusive."""
    if not correct or not verdicts.controls_passed(controls):
        return verdicts.INCONCLUSIVE
    share = sum(correct.values()) / len(correct)
    return verdicts.REPRODUCED if share == 1 else verdicts.PARTLY if share > 0 else verdicts.NOT_REPRODUCED


def horizon_label(correct: Mapping[int, bool], split: int = FIG2_LAST_CORRECT_UP_TO,
                  controls: Sequence[Mapping] = ()) -> str:
    """The claim "correct at short lengths, wrong beyond a horizon", with the paper's horizon ``split``.

    Lengths <= ``split`` are short. Correct at every short length and wrong at every longer one: reproduced; a larger
    share correct at the short lengths than beyond (a horizon elsewhere): partly; otherwise (wrong everywhere, i.e.
    no horizon, or right beyond): not reproduced; no length run on one side, or a failed control: inconclusive.
    """
    short = [c for n, c in correct.items() if n <= split]
    long_ = [c for n, c in correct.items() if n > split]
    if not short or not long_ or not verdicts.controls_passed(controls):
        return verdicts.INCONCLUSIVE
    s_short, s_long = sum(short) / len(short), sum(long_) / len(long_)
    if s_short == 1 and s_long == 0:
        return verdicts.REPRODUCED
    return verdicts.PARTLY if s_short > s_long else verdicts.NOT_REPRODUCED


def fix_label(fixed: Sequence[Mapping[int, bool]], plain: Mapping[int, bool], controls: Sequence[Mapping] = ()) -> str:
    """The claim "the fix makes copying correct at every length".

    ``fixed``: one mapping length -> correct per fixed prompt; ``plain``: the unfixed last-digit prompt's. Every
    fixed prompt correct at every length: reproduced; some fixed prompt correct at a length where the plain prompt is
    wrong: partly; otherwise not reproduced; a fixed prompt with no length run, or a failed control: inconclusive.
    """
    if not fixed or any(not f for f in fixed) or not verdicts.controls_passed(controls):
        return verdicts.INCONCLUSIVE
    if all(all(f.values()) for f in fixed):
        return verdicts.REPRODUCED
    repaired = any(ok and plain.get(n) is False for f in fixed for n, ok in f.items())
    return verdicts.PARTLY if repaired else verdicts.NOT_REPRODUCED


def fails_from(correct: Mapping[int, bool]) -> int | None:
    """The shortest length from which every longer length run is wrong ("fails from"); None if the longest length
    is answered correctly (or nothing was run)."""
    if not correct or correct[max(correct)]:
        return None
    out = max(correct)
    for n in sorted(correct, reverse=True):
        if correct[n]:
            break
        out = n
    return out


def delay_label(types: Mapping[str, Mapping[int, bool]], plain: Mapping[int, bool],
                controls: Sequence[Mapping] = ()) -> str:
    """Fig. 11: "putting the sequence last delays the failure, and the model still ends up failing".

    A prompt type *delays* when it fails from a longer length than the plain prompt (:func:`fails_from`; never
    failing counts as delaying) and *ends up failing* when it is wrong at its longest length. Every type delays and
    ends up failing: reproduced; some type delays: partly; none: not reproduced; the plain prompt never failing
    (nothing to delay), a type with no length run, or a failed control: inconclusive.
    """
    f_plain = fails_from(plain)
    if (not types or any(not t for t in types.values()) or f_plain is None
            or not verdicts.controls_passed(controls)):
        return verdicts.INCONCLUSIVE
    delays = {k: fails_from(t) is None or fails_from(t) > f_plain for k, t in types.items()}
    if all(delays.values()) and all(fails_from(t) is not None for t in types.values()):
        return verdicts.REPRODUCED
    return verdicts.PARTLY if any(delays.values()) else verdicts.NOT_REPRODUCED


def counting_label(count: pd.DataFrame, *, tolerance: float = COUNT_TOLERANCE, short_max: int = COUNT_SHORT_MAX,
                   controls: Sequence[Mapping] = ()) -> tuple[str, dict]:
    """Figs. 3/6: "counting is exact (|error| ≈ 0) for short inputs and the error grows with length".

    ``count``: one condition's counting answers at the paper's lengths (columns task, length, abs_error). Short:
    length <= ``short_max``. A task *tracks* the count when its answers within ``tolerance`` cover short lengths more
    than 2 x tolerance apart (a constant answer is within the tolerance over a window of 2 x tolerance only, so it
    never tracks); the error *grows* when the median |error| beyond ``short_max`` exceeds the short one by more than
    the tolerance. Every short answer within the tolerance and the error grows: reproduced; some task tracks and the
    error grows: partly; otherwise (no task tracks, e.g. a constant answer, or no growth): not reproduced. Short
    lengths spanning <= 2 x tolerance (counting cannot be told from a constant), no long length, or a failed control:
    inconclusive. Returns ``(label, details)``.
    """
    short, long_ = count[count.length <= short_max], count[count.length > short_max]
    ok = short[short.abs_error <= tolerance]
    spans = {t: float(g.length.max() - g.length.min()) for t, g in ok.groupby("task")}
    details = {
        "short_within_tolerance": f"{len(ok)}/{len(short)}",
        "median_abs_error_short": float(short.abs_error.median()) if len(short) else None,
        "median_abs_error_long": float(long_.abs_error.median()) if len(long_) else None,
        "tracking_tasks": sorted(t for t, s in spans.items() if s > 2 * tolerance),
    }
    span = float(short.length.max() - short.length.min()) if len(short) else 0.0
    if span <= 2 * tolerance or not len(long_) or not verdicts.controls_passed(controls):
        return verdicts.INCONCLUSIVE, details
    grows = details["median_abs_error_long"] - details["median_abs_error_short"] > tolerance
    if grows and len(ok) == len(short):
        return verdicts.REPRODUCED, details
    return (verdicts.PARTLY if grows and details["tracking_tasks"] else verdicts.NOT_REPRODUCED), details


def default_value(count: pd.DataFrame) -> tuple[int | None, int, float]:
    """The most common parsed prediction (ties: the smallest value), its count, and the share of its uses whose true
    answer lies within :data:`SUBITISING_FACTOR` of it (NaN when nothing parsed)."""
    pred = count[count.predicted.notna()]
    if not len(pred):
        return None, 0, float("nan")
    vc = pred.predicted.astype(int).value_counts()
    top = int(min(v for v, k in vc.items() if k == vc.max()))
    uses = pred[pred.predicted.astype(int) == top]
    if top <= 0:  # no magnitude: 0 (or a negative number) estimates nothing
        return top, int(vc[top]), 0.0
    near = (uses.answer >= top / SUBITISING_FACTOR) & (uses.answer <= top * SUBITISING_FACTOR)
    return top, int(vc[top]), float(near.mean())


def default_value_label(count: pd.DataFrame, controls: Sequence[Mapping] = ()) -> tuple[str, dict]:
    """Fig. 4: "the predictions cluster on a default value, a crude magnitude estimate".

    The most common prediction's share of all answers (``count``: one condition's counting answers at the paper's
    lengths) against the paper's lower reading :data:`FIG4_SHARE_MIN`, and whether it is a magnitude estimate (at
    least :data:`ESTIMATE_SHARE` of its uses within :data:`SUBITISING_FACTOR` of the true answer; a default given
    regardless of the length,
    such as '10' for lengths 5-45, is not). Share >= the paper's and an estimate: reproduced; an estimate with at
    least half the paper's share: partly; otherwise (a degenerate default, or no cluster): not reproduced; true
    answers within a factor SUBITISING_FACTOR² of each other (one value estimates them all: a default cannot be told
    from an estimate), no answer, or a failed control: inconclusive. Returns ``(label, details)``.
    """
    value, k, near = default_value(count)
    share = k / len(count) if len(count) else float("nan")
    details = {"value": value, "count": k, "answers": int(len(count)), "share": share, "near_share": near}
    truth = count.answer[count.answer > 0]
    spread = float(truth.max() / truth.min()) if len(truth) else 0.0
    if spread <= SUBITISING_FACTOR**2 or not verdicts.controls_passed(controls):
        return verdicts.INCONCLUSIVE, details
    estimate = value is not None and near >= ESTIMATE_SHARE
    if estimate and share >= FIG4_SHARE_MIN:
        return verdicts.REPRODUCED, details
    return (verdicts.PARTLY if estimate and share >= FIG4_SHARE_MIN / 2 else verdicts.NOT_REPRODUCED), details


# ---------------------------------------------------------------------------------------------
# Verdict rows of notebook 23
# ---------------------------------------------------------------------------------------------

#: Readable names of the copy tasks (figure labels).
COPY_TASK_LABELS = {
    "first": "first digit of 01…1",
    "last": "last digit of 1…10",
    "last_hint": "last digit, with the hint",
    "interleaved_01": "last digit of 0101…0",
    "interleaved_10": "last digit of 1010…0",
    "last_type1": "last digit, Type 1 prompt",
    "last_type2": "last digit, Type 2 prompt",
}
#: Readable names of the counting tasks (figure titles).
COUNT_TASK_LABELS = {
    "sum": "Sum 1+1+…+1",
    "count_ones": "Count the ones in 11…1",
    "count_bernoulli": "Count the ones, Bernoulli(0.7) digits",
    "count_car": "Count 'car' in a sentence",
}


def describe_at(correct: Mapping[int, bool]) -> str:
    """``"correct at [100, 150] of [100, 150, 200]"`` for verdict text; ``"no paper length run"`` if empty."""
    if not correct:
        return "no paper length run"
    ok = [n for n, c in correct.items() if c]
    return f"correct at {ok if ok else 'no length'} of {list(correct)}"


def copy_rows(results: pd.DataFrame, condition: str, figure: str, *, model: str = "Gemma 3 270M") -> list[dict]:
    """The verdict rows of Figs. 2 and 11 for one prompt ``condition``, judged at the paper's lengths only
    (:data:`FIG2_LENGTHS`, :data:`FIG11_LENGTHS`), each with its format control (:func:`format_control`)."""
    at = {t: outcomes(results, condition, t, FIG2_LENGTHS) for t in ("first", "last", "last_hint", "interleaved_01",
                                                                      "interleaved_10")}
    types = {t: outcomes(results, condition, t, FIG11_LENGTHS) for t in ("last_type1", "last_type2")}
    who = f"{model}, {condition}, at the paper's lengths: "

    def ctrl(tasks, lengths=FIG2_LENGTHS):
        return [format_control(results, condition, tasks, lengths, what="copy answers at the paper's lengths")]

    rows = []
    c = ctrl(["first"])
    rows.append(verdicts.row(
        "Fig 2a: the first digit is copied correctly at every length", _PAPER_COPY_TEXT["first"],
        who + describe_at(at["first"]), every_length_label(at["first"], c), figure, controls=c,
        rule="at Fig. 2's lengths 100–500 (binary plot: no reading error): correct at every length run: reproduced; "
             f"at some: partly; at none: not reproduced; none run or < {FORMAT_MIN:.0%} of the answers with a number "
             "(control): inconclusive"))
    c = ctrl(["last"])
    rows.append(verdicts.row(
        "Fig 2a: the last digit is copied correctly at short lengths and wrongly beyond a horizon",
        _PAPER_COPY_TEXT["last"], who + describe_at(at["last"]), horizon_label(at["last"], controls=c), figure,
        controls=c,
        rule=f"at Fig. 2's lengths (binary plot, horizon between {FIG2_LAST_CORRECT_UP_TO} and 300): correct at every "
             f"length <= {FIG2_LAST_CORRECT_UP_TO} and wrong at every longer one: reproduced; a larger share correct "
             f"at <= {FIG2_LAST_CORRECT_UP_TO} than beyond (a horizon elsewhere): partly; otherwise (wrong "
             "everywhere: no horizon; or right beyond): not reproduced; no length on one side or the format control "
             "failed: inconclusive"))
    both = sorted(set(at["first"]) & set(at["last"]))
    c = ctrl(["first", "last"]) + [copy_capability_control(results, condition, ["first", "last"])]
    diffs = [float(at["first"][n]) - float(at["last"][n]) for n in both]
    claim = "Fig 2a: copying the first digit is easier than copying the last"
    rule = ("per paper length, correct(first) − correct(last) (1, 0 or −1; lengths pair the two prompts); its 95% "
            "t-interval over lengths entirely above 0: reproduced; mean above 0 only: partly; mean at or below 0: not "
            "reproduced; < 2 lengths, the format control failed, or no correct copy with either prompt at any "
            "length run (a floor: the capability control): inconclusive")
    paper = "Fig. 2a (notes §2), Gemini 1.5: first correct at 9 of 9 lengths 100–500, last at 4 of 9"
    if diffs:
        label, evidence = verdicts.threshold(diffs, 0.0, metric="correct(first) − correct(last) per length", controls=c)
        ours = (f"{model}, {condition}, lengths {both}: first right at {sum(at['first'][n] for n in both)}, last at "
                f"{sum(at['last'][n] for n in both)}; mean difference {verdicts.fmt_ci(*verdicts.mean_ci(diffs))} over "
                f"{len(diffs)} lengths")
        rows.append(verdicts.row(claim, paper, ours, label, figure, evidence=evidence, controls=c, rule=rule))
    else:
        rows.append(verdicts.row(claim, paper, who + "no paper length run", verdicts.INCONCLUSIVE, figure,
                                 controls=c, rule=rule))
    c = ctrl(["last_hint"])
    rows.append(verdicts.row(
        "Fig 2b: the hint makes last-digit copying correct at every length", _PAPER_COPY_TEXT["last_hint"],
        who + f"hint {describe_at(at['last_hint'])}; without {describe_at(at['last'])}",
        fix_label([at["last_hint"]], at["last"], c), figure, controls=c,
        rule="at Fig. 2's lengths (binary plot: no reading error): correct at every length: reproduced; correct at "
             "some length where the plain last-digit prompt is wrong: partly; otherwise not reproduced; none run or "
             "the format control failed: inconclusive"))
    c = ctrl(["interleaved_01", "interleaved_10"])
    rows.append(verdicts.row(
        "Fig 2c: interleaved sequences are copied correctly at every length", _PAPER_COPY_TEXT["interleaved"],
        who + f"0101…0 {describe_at(at['interleaved_01'])}; 1010…0 {describe_at(at['interleaved_10'])}",
        fix_label([at["interleaved_01"], at["interleaved_10"]], at["last"], c), figure, controls=c,
        rule="at Fig. 2's lengths (binary plot: no reading error): both sequences correct at every length: "
             "reproduced; either correct at some length where the plain last-digit prompt is wrong: partly; otherwise "
             "not reproduced; none run or the format control failed: inconclusive"))
    c = ctrl(["last_type1", "last_type2"], FIG11_LENGTHS) + [
        copy_capability_control(results, condition, ["last", "last_type1", "last_type2"])]
    def fails_text(correct):
        f = fails_from(correct)
        return f"fails from {f}" if f is not None else ("right at its longest length" if correct else "not run")

    rows.append(verdicts.row(
        "Fig 11: with the sequence last (Types 1, 2) the failure comes later than with Fig 2's prompt, and still comes",
        _PAPER_COPY_TEXT["types"],
        who + f"Fig 2's prompt {fails_text(at['last'])}; Type 1 {describe_at(types['last_type1'])}, "
        f"{fails_text(types['last_type1'])}; Type 2 {describe_at(types['last_type2'])}, "
        f"{fails_text(types['last_type2'])}",
        delay_label(types, at["last"], c), figure, controls=c,
        rule="'fails from' = the shortest length from which every longer paper length run is wrong (Fig. 2's prompt "
             "on 100–500, Types 1/2 on Fig. 11's 100–1500; binary plots: no reading error). Both types fail from a "
             "longer length than Fig. 2's prompt and are wrong at their longest length: reproduced; one type fails "
             "later: partly; neither: not reproduced; Fig. 2's prompt never failing (nothing to delay), a type not "
             "run, the format control failed, or no correct last-digit copy with any of the three prompts at any "
             "length run (a floor: nothing fails later; the capability control): inconclusive"))
    return rows


def count_rows(results: pd.DataFrame, condition: str, figures: tuple[str, str], *,
               model: str = "Gemma 3 270M") -> list[dict]:
    """The verdict rows of Figs. 3/6 (:func:`counting_label`) and Fig. 4 (:func:`default_value_label`) for one
    prompt ``condition``, on its counting answers at the paper's lengths (:data:`FIG3_LENGTHS`)."""
    count = results[(results.condition == condition) & results.task.isin(list(COUNT_TASK_LABELS))]
    count = count[count.length.isin(FIG3_LENGTHS)]
    c = [format_control(results, condition, list(COUNT_TASK_LABELS), FIG3_LENGTHS,
                        what="counting answers at the paper's lengths")]
    lengths = sorted(int(n) for n in count.length.unique())
    label, d = counting_label(count, controls=c)
    fmt = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
    rows = [verdicts.row(
        "Figs 3/6: counting is exact for short inputs and the error grows with length",
        f"Figs. 3/6 (notes §2): Gemini 1.5 errors ≈0 up to length ~40 (read off the bars: ±{COUNT_TOLERANCE:g} on the "
        "0–175 axis), then growing (≈95 at 195 counting ones); Gemma 7B 'less accurate' (≈165 at 195 for sums)",
        f"{model}, {condition}, lengths {lengths}: |error| <= {COUNT_TOLERANCE:g} for {d['short_within_tolerance']} "
        f"answers at n <= {COUNT_SHORT_MAX}; median |error| {fmt(d['median_abs_error_short'])} "
        f"(n <= {COUNT_SHORT_MAX}) vs {fmt(d['median_abs_error_long'])} (n > {COUNT_SHORT_MAX}); "
        f"tasks tracking the count: {d['tracking_tasks'] or 'none'}",
        label, figures[0], controls=c,
        rule=f"at Fig. 3's lengths, tolerance {COUNT_TOLERANCE:g} (the reading error of a bar near 0): every answer "
             f"at n <= {COUNT_SHORT_MAX} within it and the median |error| beyond {COUNT_SHORT_MAX} larger by more than "
             "it: reproduced; some task's answers within it at short lengths more than twice the tolerance apart (a "
             "constant answer never is) and the error grows: partly; otherwise (e.g. a constant answer): not "
             f"reproduced; short lengths too close to tell counting from a constant, no length > {COUNT_SHORT_MAX}, or "
             "the format control failed: inconclusive")]
    label, d = default_value_label(count, controls=c)
    near = "n/a" if d["value"] is None else f"{d['near_share']:.0%}"
    rows.append(verdicts.row(
        "Fig 4: the predictions cluster on a default value that estimates the magnitude ('crude subitising')",
        f"Fig. 4 (notes §2), Gemini 1.5 without CoT: '100' ≈{FIG4_DEFAULT_COUNT} times (±2, read off the histogram), "
        f"of {FIG4_ANSWERS} answers if each of Fig. 3's 4 tasks x 20 lengths is answered once (our inference), i.e. "
        f"≈{FIG4_DEFAULT_COUNT / FIG4_ANSWERS:.0%}; '100' once the length is around 100 or more",
        f"{model}, {condition}, lengths {lengths}: most common prediction '{d['value']}' in {d['count']} of "
        f"{d['answers']} answers ({d['share']:.0%}); {near} of its uses within x{SUBITISING_FACTOR:g} of the true "
        "answer",
        label, figures[1], controls=c,
        rule=f"share of the most common prediction >= {FIG4_SHARE_MIN:.0%} (the paper's ≈22/80 less its reading "
             f"error of 2) and at least {ESTIMATE_SHARE:.0%} of its uses within x{SUBITISING_FACTOR:g} of the true "
             "answer (a magnitude estimate; a default given regardless of length is not): reproduced; an estimate "
             "with at least half that share: partly; otherwise (degenerate default or no cluster): not reproduced; "
             f"true answers within a factor {SUBITISING_FACTOR**2:g} of each other (a default cannot be told from an "
             "estimate), no answers or the format control failed: inconclusive"))
    return rows
