"""The paper's copying and counting tasks: prompts, sequence generators, answer parsing, evaluation.

Barbero et al. 2024 ("Transformers need glasses!", arXiv 2406.04267): Sec. 3.1 / Fig. 2 (copying the
first vs last digit, hint, interleaving), Sec. 3.2 / Figs. 3, 4, 6 (counting and summing), App. C.1
(prompts), App. C.5 / Fig. 11 (prompt Types 1 and 2) and Sec. 4 / Fig. 5, 12 (collapse prompts).

Prompts are the paper's App. C.1 text verbatim (as transcribed in the research notes,
``shared/papers/glasses.md``); ``{seq}`` marks where the sequence goes. Where the paper does not give
a detail, the choice made here is stated in the docstring (e.g. the first-digit question, where the
hint goes, the comma grouping). Generators return ``(sequence_text, answer)`` and are pure functions
of their arguments (random ones take a ``numpy.random.Generator``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------
# Prompts (App. C.1, C.5 and Sec. 4, verbatim; {seq} is the sequence)
# ---------------------------------------------------------------------------------------------

COPY_ANSWER_FORMAT = "Please answer exactly as 'The answer to your question is: <ANSWER>'"
COPY_ANSWER_PREFIX = "The answer to your question is:"
MATHS_ANSWER_PREFIX = "The final answer to your maths question is:"
MATHS_ANSWER_FORMAT = (
    "Please give the answer on the final line exactly as 'The final answer to your maths question is: xxxx', "
    "where 'xxxx' is your answer."
)

#: Fig. 2 (App. C.1): copying the last digit.
COPY_LAST = "Consider the following sequence: {seq}. What is the last digit in this sequence? " + COPY_ANSWER_FORMAT
#: Fig. 2 first-token condition. The notes quote only the last-digit prompt; "first" replaces "last".
COPY_FIRST = "Consider the following sequence: {seq}. What is the first digit in this sequence? " + COPY_ANSWER_FORMAT
#: Fig. 2(b) hint (verbatim). Where it goes is not stated; we append it after the question.
HINT = "*Hint* It's not necessarily a 1, check carefully"
COPY_LAST_HINT = COPY_LAST + " " + HINT

#: Fig. 11 (App. C.5) prompt formats: the sequence comes last.
COPY_LAST_TYPE1 = (
    "What is the last digit of the following sequence? Please answer exactly as "
    "'The answer to your question is: <ANSWER>'. Here is the sequence: {seq}"
)
COPY_LAST_TYPE2 = (
    "Please answer exactly as 'The answer to your question is: <ANSWER>'. "
    "What is the last digit of the following sequence? {seq}"
)

#: Fig. 3 / 6 (App. C.1) counting prompts (no chain of thought).
SUM_PROMPT = "Please perform the following sum: {seq}. " + MATHS_ANSWER_FORMAT
COUNT_ONES_PROMPT = "Please count the number of ones in the following sequence: {seq}. " + MATHS_ANSWER_FORMAT
COUNT_CAR_PROMPT = (
    "Please count the number of times 'car' appears in the following sentence: '{seq}'. " + MATHS_ANSWER_FORMAT
)
#: Chain-of-thought prefix (App. C.1); its worked examples are only partly quoted in the notes, so the
#: notebooks do not run the CoT rows on a 270M base model.
COT_PREFIX = "Let's think step by step, showing me your reasoning. Here are a few examples:"

#: Fig. 5 (Sec. 4) collapse prompts: question, then the sequence.
COLLAPSE_COUNT_PROMPT = "How many ones are in the following sequences? {seq}"
COLLAPSE_COPY_PROMPT = "Can you copy the following number? {seq}"

PROMPTS: dict[str, str] = {
    "copy_last": COPY_LAST,
    "copy_first": COPY_FIRST,
    "copy_last_hint": COPY_LAST_HINT,
    "copy_last_type1": COPY_LAST_TYPE1,
    "copy_last_type2": COPY_LAST_TYPE2,
    "sum": SUM_PROMPT,
    "count_ones": COUNT_ONES_PROMPT,
    "count_car": COUNT_CAR_PROMPT,
    "collapse_count": COLLAPSE_COUNT_PROMPT,
    "collapse_copy": COLLAPSE_COPY_PROMPT,
}


def format_prompt(template: str, seq: str) -> str:
    """Insert ``seq`` into a prompt template (``{seq}``)."""
    if "{seq}" not in template:
        raise ValueError("prompt template has no {seq} placeholder")
    return template.replace("{seq}", seq)


def completion_prompt(prompt: str, answer_prefix: str = COPY_ANSWER_PREFIX) -> str:
    """Completion-style variant for a base model: the prompt, a newline, then the answer prefix.

    The model only has to continue "... The answer to your question is:" with the value (our
    addition, clearly labelled in the notebooks; the paper used instruction-tuned Gemini/Gemma).
    """
    return f"{prompt}\n{answer_prefix}"


#: In-context examples for a *base* model (our addition; the paper prompted instruction-tuned Gemini
#: and Gemma zero-shot). Two short solved instances of the same prompt, with answers that differ
#: from the test answers where that matters (copy tasks: never 0 or 1), so the examples teach the
#: answer format without giving the answer away.
FEW_SHOT_EXAMPLES: dict[str, tuple[tuple[str, int], ...]] = {
    "first": (("5203", 5), ("71846", 7)),
    "last": (("5203", 3), ("71846", 6)),
    "sum": (("1+1+1", 3), ("1+1+1+1+1+1+1", 7)),
    "count_ones": (("111", 3), ("1111111", 7)),
    "count_bernoulli": (("10110", 3), ("0111011", 5)),
    "count_car": (("car car", 2), ("car car car car car", 5)),
}
#: Which example set each task uses (the copy-last variants share the last-digit examples).
FEW_SHOT_TASK = {
    "first": "first",
    "last": "last",
    "last_hint": "last",
    "interleaved_01": "last",
    "interleaved_10": "last",
    "last_type1": "last",
    "last_type2": "last",
    "sum": "sum",
    "count_ones": "count_ones",
    "count_bernoulli": "count_bernoulli",
    "count_car": "count_car",
}


def few_shot_prompt(template: str, seq: str, examples: Sequence[tuple[str, int]], answer_prefix: str) -> str:
    """The prompt preceded by solved examples, each "<prompt>\n<answer prefix> <answer>", ending with
    the test prompt and the bare answer prefix, so a base model only has to write the value."""
    shots = [f"{format_prompt(template, s)}\n{answer_prefix} {a}" for s, a in examples]
    return "\n\n".join(shots + [completion_prompt(format_prompt(template, seq), answer_prefix)])


CONDITIONS = ("verbatim", "completion", "few_shot")


def _condition(completion: bool, few_shot: bool) -> str:
    if completion and few_shot:
        raise ValueError("choose one of completion=True or few_shot=True")
    return "few_shot" if few_shot else ("completion" if completion else "verbatim")


# ---------------------------------------------------------------------------------------------
# Sequence generators: (sequence text, answer)
# ---------------------------------------------------------------------------------------------


def _check_n(n: int, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"sequence length must be an int >= {minimum}, got {n!r}")
    return int(n)


def ones(n: int) -> tuple[str, int]:
    """n ones, "11…1"; answer n (count the ones; Fig. 5(a)/(c) sequence)."""
    return "1" * _check_n(n), int(n)


def copy_last_sequence(n: int) -> tuple[str, int]:
    """ "1…10": n digits, the last one 0; answer 0 (Fig. 2(a) last-token copying)."""
    return "1" * (_check_n(n, 2) - 1) + "0", 0


def copy_first_sequence(n: int) -> tuple[str, int]:
    """ "01…1": n digits, the first one 0; answer 0 (Fig. 2(a) first-token copying)."""
    return "0" + "1" * (_check_n(n, 2) - 1), 0


def interleaved_sequence(n: int, first: str = "1") -> tuple[str, int]:
    """Fig. 2(c): alternating digits then a final 0; answer 0.

    The paper's legends read "[0,1]*seq length + [0]" and "[1,0]*seq length + [0]"; whether "seq length"
    counts pairs or digits is not stated. Here ``n`` is the total number of digits (as in Fig. 2(a)),
    so the pattern is repeated over the first n-1 digits, then "0".
    """
    _check_n(n, 2)
    if first not in ("0", "1"):
        raise ValueError(f"first must be '0' or '1', got {first!r}")
    other = "1" if first == "0" else "0"
    body = ((first + other) * n)[: n - 1]
    return body + "0", 0


def sum_ones(n: int) -> tuple[str, int]:
    """ "1+1+…+1" with n ones; answer n (Fig. 3, first column)."""
    return "+".join(["1"] * _check_n(n)), int(n)


def bernoulli_digits(n: int, rng: np.random.Generator, p: float = 0.7) -> tuple[str, int]:
    """n i.i.d. Bernoulli(p) digits (1 with probability p, as in Fig. 3); answer the number of ones."""
    _check_n(n)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    bits = rng.random(n) < p
    return "".join("1" if b else "0" for b in bits), int(bits.sum())


def car_sentence(n: int) -> tuple[str, int]:
    """The word 'car' n times, space-separated; answer n (Fig. 3 'car' column).

    The paper does not print its sentences; Fig. 4's true answers at the sequence lengths suggest
    the count equals the length, as here.
    """
    return " ".join(["car"] * _check_n(n)), int(n)


def random_digits_ending_in_one(n: int, rng: np.random.Generator) -> tuple[str, str]:
    """Fig. 5(b) pair: n-1 uniform digits then "1", and the same with one more "1" ("…1" vs "…11")."""
    _check_n(n)
    prefix = "".join(rng.choice(list("0123456789"), n - 1)) if n > 1 else ""
    return prefix + "1", prefix + "11"


def with_commas(digits: str) -> str:
    """Group a digit string with a comma every third digit from the right, as in a number: "1,111,111".

    Fig. 5(d) "adding commas every third digit"; the paper does not say how the n+1 sequence is
    formed, so the longer sequence is regrouped the same way (its commas may shift).
    """
    if not digits or not digits.isdigit():
        raise ValueError(f"expected a non-empty digit string, got {digits!r}")
    head = len(digits) % 3 or 3
    groups = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return ",".join(groups)


def collapse_prompt_pair(kind: str, n: int, rng: np.random.Generator | None = None) -> tuple[str, str]:
    """Prompts of the two sequences Fig. 5 compares (n vs n+1, the extra token repeating the last).

    kind: "count_ones" (a), "count_digits" (b, needs rng), "copy_ones" (c), "copy_commas" (d),
    "type1_ones" (Fig. 12: prompt Type 1 with ones).
    """
    if kind == "count_ones":
        return format_prompt(COLLAPSE_COUNT_PROMPT, "1" * n), format_prompt(COLLAPSE_COUNT_PROMPT, "1" * (n + 1))
    if kind == "count_digits":
        if rng is None:
            raise ValueError("count_digits needs a numpy Generator (rng)")
        a, b = random_digits_ending_in_one(n, rng)
        return format_prompt(COLLAPSE_COUNT_PROMPT, a), format_prompt(COLLAPSE_COUNT_PROMPT, b)
    if kind == "copy_ones":
        return format_prompt(COLLAPSE_COPY_PROMPT, "1" * n), format_prompt(COLLAPSE_COPY_PROMPT, "1" * (n + 1))
    if kind == "copy_commas":
        return (
            format_prompt(COLLAPSE_COPY_PROMPT, with_commas("1" * n)),
            format_prompt(COLLAPSE_COPY_PROMPT, with_commas("1" * (n + 1))),
        )
    if kind == "type1_ones":
        return format_prompt(COPY_LAST_TYPE1, "1" * n), format_prompt(COPY_LAST_TYPE1, "1" * (n + 1))
    raise ValueError(f"unknown collapse kind {kind!r}; use one of {COLLAPSE_KINDS}")


COLLAPSE_KINDS = ("count_ones", "count_digits", "copy_ones", "copy_commas", "type1_ones")


# ---------------------------------------------------------------------------------------------
# Answer parsing
# ---------------------------------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_PREFIX_RES = [
    re.compile(
        r"final\s+answer\s+to\s+your\s+maths?\s+question\s+is\s*[:：]?\s*[*_`'\"\[(]*\s*(" + _NUMBER + ")", re.I
    ),
    re.compile(r"answer\s+to\s+your\s+question\s+is\s*[:：]?\s*[*_`'\"\[(]*\s*(" + _NUMBER + ")", re.I),
    re.compile(r"(?:the\s+)?answer\s+is\s*[:：]?\s*[*_`'\"\[(]*\s*(" + _NUMBER + ")", re.I),
]


def _to_int(tok: str) -> int | None:
    tok = tok.replace(",", "").strip()
    try:
        value = float(tok)
    except ValueError:
        return None
    if not np.isfinite(value) or value != int(value):
        return None
    return int(value)


def parse_answer(text: str, *, digit: bool = False) -> int | None:
    """The integer answer in a model's output, or None if there is none.

    Order: the last "The final answer to your maths question is: X", else the last "The answer to
    your question is: X", else "answer is X", else (fallback, for completion-style prompts whose
    prefix is already in the prompt) the first number in the text. Thousands separators are
    removed ("1,000" -> 1000); placeholders such as "<ANSWER>" or "xxxx" are not numbers. With
    ``digit=True`` (copying tasks) a multi-digit answer counts as its first digit only if the
    model wrote a single digit; otherwise None.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    for rx in _PREFIX_RES:
        hits = rx.findall(text)
        if hits:
            value = _to_int(hits[-1])
            if value is not None:
                return _digit(value, hits[-1], digit)
    m = re.search(_NUMBER, text)
    if m is None:
        return None
    value = _to_int(m.group(0))
    return None if value is None else _digit(value, m.group(0), digit)


def _digit(value: int, raw: str, digit: bool) -> int | None:
    if not digit:
        return value
    raw = raw.replace(",", "").lstrip("+")
    return value if len(raw) == 1 else None


# ---------------------------------------------------------------------------------------------
# Evaluation by greedy decoding
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Item:
    """One evaluation item: a prompt and its expected integer answer, with labels for grouping."""

    prompt: str
    answer: int
    task: str
    length: int
    condition: str = "verbatim"
    digit: bool = False


@dataclasses.dataclass(frozen=True)
class Result:
    item: Item
    output: str
    predicted: int | None

    @property
    def correct(self) -> bool:
        return self.predicted is not None and self.predicted == self.item.answer

    @property
    def abs_error(self) -> float:
        """|predicted - answer|; an unparsable output counts as |answer| (as if it had said 0)."""
        return float(abs((self.predicted if self.predicted is not None else 0) - self.item.answer))

    def as_dict(self) -> dict:
        return {
            **dataclasses.asdict(self.item),
            "output": self.output,
            "predicted": self.predicted,
            "correct": self.correct,
            "abs_error": self.abs_error,
        }


def evaluate(
    generate: Callable[[str, int], str],
    items: Iterable[Item],
    *,
    max_new_tokens: int = 16,
    progress: bool = False,
) -> list[Result]:
    """Greedy-decode each item with ``generate(prompt, max_new_tokens) -> text`` and parse the answers.

    ``generate`` is e.g. ``functools.partial(replicate.glasses.generation.generate, model)`` (greedy,
    deterministic).
    """
    items = list(items)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    it: Iterable[Item] = items
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        it = tqdm(items, desc="generate")
    out = []
    for item in it:
        text = generate(item.prompt, max_new_tokens)
        out.append(Result(item, text, parse_answer(text, digit=item.digit)))
    return out


def copy_items(
    lengths: Sequence[int], *, completion: bool = False, few_shot: bool = False, tasks: Sequence[str] | None = None
) -> list[Item]:
    """Fig. 2 / 11 copying items at each length: first, last, last+hint, interleaved x2, Type 1, Type 2.

    ``tasks`` selects a subset of those names (default: all). ``few_shot`` prepends
    :data:`FEW_SHOT_EXAMPLES` (condition "few_shot"), ``completion`` only the answer prefix.
    """
    condition = _condition(completion, few_shot)
    items: list[Item] = []
    for n in lengths:
        specs = [
            ("first", COPY_FIRST, copy_first_sequence(n)),
            ("last", COPY_LAST, copy_last_sequence(n)),
            ("last_hint", COPY_LAST_HINT, copy_last_sequence(n)),
            ("interleaved_01", COPY_LAST, interleaved_sequence(n, "0")),
            ("interleaved_10", COPY_LAST, interleaved_sequence(n, "1")),
            ("last_type1", COPY_LAST_TYPE1, copy_last_sequence(n)),
            ("last_type2", COPY_LAST_TYPE2, copy_last_sequence(n)),
        ]
        for task, template, (seq, ans) in specs:
            if tasks is not None and task not in tasks:
                continue
            items.append(
                Item(
                    _prompt(template, seq, task, condition, COPY_ANSWER_PREFIX),
                    ans,
                    task,
                    int(n),
                    condition,
                    digit=True,
                )
            )
    return items


def _prompt(template: str, seq: str, task: str, condition: str, answer_prefix: str) -> str:
    if condition == "few_shot":
        return few_shot_prompt(template, seq, FEW_SHOT_EXAMPLES[FEW_SHOT_TASK[task]], answer_prefix)
    prompt = format_prompt(template, seq)
    return completion_prompt(prompt, answer_prefix) if condition == "completion" else prompt


def count_items(
    lengths: Sequence[int],
    rng: np.random.Generator,
    *,
    completion: bool = False,
    few_shot: bool = False,
    p: float = 0.7,
) -> list[Item]:
    """Fig. 3 / 6 counting items at each length: sum of ones, count ones, Bernoulli(p) ones, count 'car'."""
    condition = _condition(completion, few_shot)
    items: list[Item] = []
    for n in lengths:
        specs = [
            ("sum", SUM_PROMPT, sum_ones(n)),
            ("count_ones", COUNT_ONES_PROMPT, ones(n)),
            ("count_bernoulli", COUNT_ONES_PROMPT, bernoulli_digits(n, rng, p)),
            ("count_car", COUNT_CAR_PROMPT, car_sentence(n)),
        ]
        for task, template, (seq, ans) in specs:
            items.append(
                Item(_prompt(template, seq, task, condition, MATHS_ANSWER_PREFIX), ans, task, int(n), condition)
            )
    return items


def copy_and_count_items(
    condition: str,
    copy_lengths: Sequence[int],
    fig11_lengths: Sequence[int],
    count_lengths: Sequence[int],
    rng: np.random.Generator,
) -> list[Item]:
    """Every item notebook 23 asks under one prompt ``condition`` ("verbatim", "completion" or "few_shot").

    All seven copy tasks at ``copy_lengths``; the Type 1 / Type 2 prompts (Fig. 11) also at the
    ``fig11_lengths`` not already in ``copy_lengths``; the four counting tasks at ``count_lengths``
    (Bernoulli strings drawn from ``rng``).
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition={condition!r}: choose one of {CONDITIONS}")
    kw = {"completion": condition == "completion", "few_shot": condition == "few_shot"}
    items = copy_items(copy_lengths, **kw)
    items += copy_items([n for n in fig11_lengths if n not in copy_lengths], tasks=["last_type1", "last_type2"], **kw)
    items += count_items(count_lengths, rng, **kw)
    return items
