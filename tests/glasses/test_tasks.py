"""Prompts, generators and answer parsing of the glasses copying/counting tasks (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from replicate.glasses import tasks

# --- prompts: the paper's App. C.1 / C.5 / Sec. 4 text, verbatim --------------------------------


def test_prompts_verbatim():
    assert tasks.format_prompt(tasks.COPY_LAST, "110") == (
        "Consider the following sequence: 110. What is the last digit in this sequence? "
        "Please answer exactly as 'The answer to your question is: <ANSWER>'"
    )
    assert tasks.HINT == "*Hint* It's not necessarily a 1, check carefully"
    assert tasks.format_prompt(tasks.SUM_PROMPT, "1+1") == (
        "Please perform the following sum: 1+1. Please give the answer on the final line exactly as "
        "'The final answer to your maths question is: xxxx', where 'xxxx' is your answer."
    )
    assert tasks.format_prompt(tasks.COUNT_ONES_PROMPT, "11").startswith(
        "Please count the number of ones in the following sequence: 11. Please give the answer on the final line"
    )
    assert tasks.format_prompt(tasks.COUNT_CAR_PROMPT, "car car").startswith(
        "Please count the number of times 'car' appears in the following sentence: 'car car'. Please give"
    )
    assert tasks.format_prompt(tasks.COPY_LAST_TYPE1, "10") == (
        "What is the last digit of the following sequence? Please answer exactly as "
        "'The answer to your question is: <ANSWER>'. Here is the sequence: 10"
    )
    assert tasks.format_prompt(tasks.COPY_LAST_TYPE2, "10") == (
        "Please answer exactly as 'The answer to your question is: <ANSWER>'. "
        "What is the last digit of the following sequence? 10"
    )
    assert tasks.COT_PREFIX == "Let's think step by step, showing me your reasoning. Here are a few examples:"
    assert tasks.format_prompt(tasks.COLLAPSE_COUNT_PROMPT, "11") == "How many ones are in the following sequences? 11"
    assert tasks.format_prompt(tasks.COLLAPSE_COPY_PROMPT, "11") == "Can you copy the following number? 11"
    for template in tasks.PROMPTS.values():
        assert template.count("{seq}") == 1
    with pytest.raises(ValueError):
        tasks.format_prompt("no placeholder", "1")


def test_completion_prompt_ends_with_answer_prefix():
    p = tasks.completion_prompt("Q?", tasks.COPY_ANSWER_PREFIX)
    assert p == "Q?\nThe answer to your question is:"


# --- generators -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 10, 101, 500])
def test_copy_sequences(n):
    last, a = tasks.copy_last_sequence(n)
    first, b = tasks.copy_first_sequence(n)
    assert len(last) == len(first) == n and a == b == 0
    assert last[-1] == "0" and set(last[:-1]) <= {"1"}
    assert first[0] == "0" and set(first[1:]) <= {"1"}
    for start in "01":
        seq, ans = tasks.interleaved_sequence(n, start)
        assert len(seq) == n and seq[-1] == "0" and ans == 0 and seq[0] == start
        body = seq[:-1]
        assert all(body[i] != body[i + 1] for i in range(len(body) - 1))


@pytest.mark.parametrize("n", [1, 5, 15, 195])
def test_counting_sequences_have_exact_counts(n):
    s, a = tasks.ones(n)
    assert s.count("1") == len(s) == a == n
    s, a = tasks.sum_ones(n)
    assert s.split("+") == ["1"] * n and a == n and eval(s) == n  # noqa: S307 - a sum of ones
    s, a = tasks.car_sentence(n)
    assert s.split(" ") == ["car"] * n and a == n
    s, a = tasks.bernoulli_digits(n, np.random.default_rng(n))
    assert len(s) == n and set(s) <= {"0", "1"} and s.count("1") == a


def test_bernoulli_rate_and_determinism():
    s, a = tasks.bernoulli_digits(20000, np.random.default_rng(0), p=0.7)
    assert abs(a / 20000 - 0.7) < 0.015
    assert tasks.bernoulli_digits(50, np.random.default_rng(3)) == tasks.bernoulli_digits(50, np.random.default_rng(3))


def test_with_commas_every_third_digit():
    assert tasks.with_commas("1") == "1"
    assert tasks.with_commas("111") == "111"
    assert tasks.with_commas("1111") == "1,111"
    assert tasks.with_commas("1111111") == "1,111,111"
    assert tasks.with_commas("1" * 9) == "111,111,111"
    for n in range(1, 40):
        s = tasks.with_commas("1" * n)
        assert s.replace(",", "") == "1" * n and all(len(g) == 3 for g in s.split(",")[1:])
    with pytest.raises(ValueError):
        tasks.with_commas("12a")


def test_collapse_pairs_repeat_the_last_token():
    rng = np.random.default_rng(0)
    for kind in tasks.COLLAPSE_KINDS:
        for n in (1, 2, 6, 11):
            a, b = tasks.collapse_prompt_pair(kind, n, rng)
            if kind == "copy_commas":
                assert b.replace(",", "") == a.replace(",", "") + "1"
            else:
                assert b == a + "1", (kind, n)  # the longer sequence = the shorter with its last "1" repeated
    a, b = tasks.random_digits_ending_in_one(11, np.random.default_rng(1))
    assert len(a) == 11 and a.endswith("1") and b == a + "1"
    with pytest.raises(ValueError):
        tasks.collapse_prompt_pair("count_digits", 3)
    with pytest.raises(ValueError):
        tasks.collapse_prompt_pair("nope", 3)


def test_generators_reject_bad_lengths():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            tasks.ones(bad)
    with pytest.raises(ValueError):
        tasks.copy_last_sequence(1)
    with pytest.raises(ValueError):
        tasks.interleaved_sequence(5, "2")


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer to your question is: 0", 0),
        ("The answer to your question is: 1.", 1),
        ("**The answer to your question is: 7**", 7),
        ("The answer to your question is: '3'", 3),
        ("the answer to your question is 5", 5),
        ("The final answer to your maths question is: 100", 100),
        ("The final answer to your maths question is: 1,000", 1000),
        ("Let me think. 1+1=2.\nThe final answer to your maths question is: 12", 12),
        ("The final answer to your maths question is: xxxx\nThe final answer to your maths question is: 42", 42),
        ("The final answer to your maths question is: 12\nThe answer to your question is: 3", 12),
        (" 57\n\nQuestion:", 57),  # completion-style fallback: first number
        ("There are 15 ones.", 15),
        ("The answer is 9", 9),
        ("Please answer exactly as 'The answer to your question is: <ANSWER>'", None),
        ("I don't know", None),
        ("", None),
        ("The final answer to your maths question is: 2.5", None),
    ],
)
def test_parse_answer(text, expected):
    assert tasks.parse_answer(text) == expected


def test_parse_digit_answers():
    assert tasks.parse_answer("The answer to your question is: 0", digit=True) == 0
    assert tasks.parse_answer(" 1\n", digit=True) == 1
    assert tasks.parse_answer(" 1111111", digit=True) is None  # a copied run is not a digit answer
    assert tasks.parse_answer(" 11", digit=False) == 11
    with pytest.raises(TypeError):
        tasks.parse_answer(None)


# --- evaluation -----------------------------------------------------------------------------------


def test_evaluate_with_a_fake_model():
    def fake_generate(prompt, max_new_tokens):
        seq = prompt.split("sequence: ")[1].split(".")[0] if "sequence: " in prompt else ""
        return f"The answer to your question is: {seq[-1] if seq else '?'}"

    items = tasks.copy_items([5, 10])
    assert len(items) == 14 and {i.task for i in items} == {
        "first", "last", "last_hint", "interleaved_01", "interleaved_10", "last_type1", "last_type2"
    }  # fmt: skip
    results = tasks.evaluate(fake_generate, items, max_new_tokens=4)
    by = {(r.item.task, r.item.length): r for r in results}
    assert by[("last", 5)].correct and by[("last", 5)].predicted == 0
    assert not by[("first", 5)].correct  # the fake model always copies the last digit: 1 != 0
    assert by[("first", 5)].abs_error == 1.0
    d = by[("last", 10)].as_dict()
    assert d["correct"] and d["length"] == 10 and d["condition"] == "verbatim"
    comp = tasks.copy_items([5], completion=True)
    assert all(i.prompt.endswith(tasks.COPY_ANSWER_PREFIX) and i.condition == "completion" for i in comp)


def test_count_items_answers():
    items = tasks.count_items([5, 15], np.random.default_rng(0), completion=True)
    assert len(items) == 8
    for it in items:
        assert it.prompt.endswith(tasks.MATHS_ANSWER_PREFIX)
        if it.task != "count_bernoulli":
            assert it.answer == it.length
    unparsable = tasks.Result(items[0], "no idea", None)
    assert not unparsable.correct and unparsable.abs_error == items[0].answer


def test_few_shot_prompts_teach_the_format_without_the_answer():
    items = tasks.copy_items([6], few_shot=True)
    assert {i.condition for i in items} == {"few_shot"} and len(items) == 7
    for it in items:
        assert it.prompt.endswith(tasks.COPY_ANSWER_PREFIX)
        blocks = it.prompt.split("\n\n")
        assert len(blocks) == 3  # two solved examples, then the test item
        shown = [int(b.rsplit(tasks.COPY_ANSWER_PREFIX, 1)[1]) for b in blocks[:2]]
        assert all(a not in (0, 1) for a in shown)  # copy examples never show the test answers 0/1
        assert blocks[-1].startswith(blocks[0][:20])  # the same question
    last = next(i for i in items if i.task == "last")
    assert last.prompt == (
        tasks.format_prompt(tasks.COPY_LAST, "5203") + "\n" + tasks.COPY_ANSWER_PREFIX + " 3\n\n"
        + tasks.format_prompt(tasks.COPY_LAST, "71846") + "\n" + tasks.COPY_ANSWER_PREFIX + " 6\n\n"
        + tasks.format_prompt(tasks.COPY_LAST, "111110") + "\n" + tasks.COPY_ANSWER_PREFIX
    )
    counts = tasks.count_items([5], np.random.default_rng(0), few_shot=True)
    assert all(c.prompt.endswith(tasks.MATHS_ANSWER_PREFIX) and c.condition == "few_shot" for c in counts)
    # the examples are solved correctly
    for name, examples in tasks.FEW_SHOT_EXAMPLES.items():
        for seq, ans in examples:
            expected = {"first": lambda s: int(s[0]), "last": lambda s: int(s[-1]), "sum": lambda s: s.count("1"),
                        "count_ones": lambda s: s.count("1"), "count_bernoulli": lambda s: s.count("1"),
                        "count_car": lambda s: s.split().count("car")}[name](seq)
            assert ans == expected, (name, seq)
    assert [i.task for i in tasks.copy_items([6], tasks=["first", "last"])] == ["first", "last"]
    with pytest.raises(ValueError, match="one of"):
        tasks.copy_items([6], completion=True, few_shot=True)


def test_copy_and_count_items_composes_the_three_item_lists():
    items = tasks.copy_and_count_items("few_shot", [5, 10], [10, 40], [5], np.random.default_rng(3))
    copy = [i for i in items if i.task not in ("sum", "count_ones", "count_bernoulli", "count_car")]
    assert len(copy) == 7 * 2 + 2  # all copy tasks at 5 and 10; Type 1 / Type 2 only at 40 (10 is already in)
    assert {(i.task, i.length) for i in copy if i.length == 40} == {("last_type1", 40), ("last_type2", 40)}
    assert len(items) - len(copy) == 4 and all(i.condition == "few_shot" for i in items)
    # the same generator seed gives the same Bernoulli strings as count_items itself
    ref = tasks.count_items([5], np.random.default_rng(3), few_shot=True)
    assert [i.prompt for i in items[-4:]] == [i.prompt for i in ref]
    with pytest.raises(ValueError, match="condition"):
        tasks.copy_and_count_items("cot", [5], [], [5], np.random.default_rng(0))
