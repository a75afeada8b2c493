"""Verdicts as data: the rows every paper notebook writes to ``metrics["verdicts"]``.

A verdict row compares one claim of a paper with what we measured::

    {"claim": "...", "paper": "the paper's number or statement", "ours": "our number",
     "verdict": "reproduced" | "partly" | "not reproduced at this scale", "figure": "figures/....png"}

Each notebook states its verdict *rule* in narration before the results cell, computes the label with
code (never by hand), builds the rows with :func:`row` and writes them with its other metrics.
``python -m replicate.verdicts readme`` regenerates the README's results table from the committed
metrics files (``tests/test_verdicts.py`` fails when the README is stale); ``dvc metrics show``
lists every verdict.

The comparison rules shared by several notebooks live here too:

* :func:`explores_better`: the censored "explores better" comparison of two exploration summaries
  (seeds solved first, then median steps/episodes to the first success; when both medians are
  censored at the budget, the final success rate breaks the tie);
* :func:`from_wins`: the label of "A beats every rival" (all: reproduced; some: partly; none: not);
* :func:`mean_ci`: mean and a Student-t confidence interval over seeds.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced at this scale"
LABELS: tuple[str, ...] = (REPRODUCED, PARTLY, NOT_REPRODUCED)
FIELDS: tuple[str, ...] = ("claim", "paper", "ours", "verdict", "figure")


def check_label(verdict: str) -> str:
    """Return ``verdict`` if it is one of :data:`LABELS`, else raise ``ValueError`` naming them."""
    if verdict not in LABELS:
        raise ValueError(f"verdict {verdict!r} is not allowed; use one of {list(LABELS)} (replicate.verdicts)")
    return verdict


def row(claim: str, paper: str, ours: str, verdict: str, figure: str = "") -> dict[str, str]:
    """One verdict row; ``figure`` is the figure the claim is read from (``""`` when none)."""
    out = {"claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "figure": figure}
    return check_rows([out])[0]


def check_rows(rows: Any) -> list[dict[str, str]]:
    """Validate a list of verdict rows (exact fields, non-empty text, allowed labels); return it.

    An empty list is allowed: a notebook that only builds data or measures the setup judges no claim.
    """
    if not isinstance(rows, (list, tuple)):
        raise ValueError("verdicts must be a list of rows {claim, paper, ours, verdict, figure}")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or set(r) != set(FIELDS):
            got = sorted(r) if isinstance(r, Mapping) else type(r).__name__
            raise ValueError(f"verdict row {i} has fields {got}; expected exactly {list(FIELDS)}")
        for f in FIELDS:
            if not isinstance(r[f], str):
                raise ValueError(f"verdict row {i}: field {f!r} must be a string, got {type(r[f]).__name__}")
            if f != "figure" and not r[f].strip():
                raise ValueError(f"verdict row {i}: field {f!r} is empty; say what the paper/our run shows")
        check_label(r["verdict"])
        out.append({f: r[f] for f in FIELDS})
    return out


def table(rows: Sequence[Mapping[str, str]]):
    """The rows as a pandas DataFrame, for display in the notebook."""
    import pandas as pd

    return pd.DataFrame(check_rows(list(rows)), columns=list(FIELDS))


# ----------------------------------------------------------------------------- rules


def from_wins(wins: int, rivals: int) -> str:
    """Label of "beats every rival": all ``rivals`` beaten: reproduced; some: partly; none: not reproduced."""
    if rivals < 1 or not 0 <= wins <= rivals:
        raise ValueError(f"need 0 <= wins <= rivals and rivals >= 1; got wins={wins}, rivals={rivals}")
    return REPRODUCED if wins == rivals else PARTLY if wins > 0 else NOT_REPRODUCED


def explores_better(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Does summary ``a`` explore better than ``b``? (the censored rule of notebooks 11 and 12).

    Each summary holds ``solved`` (fraction of seeds that succeeded within the budget), ``median``
    (median steps or episodes to the first success, censored at the budget), ``censored`` (whether
    that median is the budget) and optionally ``final_success`` (success rate at the end). ``a`` is
    better when it solved at least as many seeds and either reached success sooner (smaller median)
    or, both medians being censored, ends with a higher success rate.
    """
    if a["solved"] < b["solved"]:
        return False
    if a["median"] < b["median"]:
        return True
    both_censored = bool(a.get("censored")) and bool(b.get("censored"))
    return both_censored and a.get("final_success", 0.0) > b.get("final_success", 0.0)


def explores_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same seeds solved, same median and same final success rate: a tie under :func:`explores_better`."""
    return (a["solved"] == b["solved"] and a["median"] == b["median"]
            and a.get("final_success", 0.0) == b.get("final_success", 0.0))


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval ``(mean, lo, hi)`` of independent values (seeds).

    With one value the interval is ``(nan, nan)``: one seed gives no interval.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"mean_ci needs at least one finite value, got {x.tolist()}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


# ----------------------------------------------------------------------------- formatting


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    """``"0.42 [0.30, 0.55]"``; ``"0.42"`` when the interval is undefined (one seed)."""
    if math.isnan(lo) or math.isnan(hi):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_median(summary: Mapping[str, Any]) -> str:
    """``"median [q25, q75]"`` of a censored summary, with ``" (censored)"`` when the median is the budget."""
    s = summary
    return f"{s['median']:.0f} [{s['q25']:.0f}, {s['q75']:.0f}]" + (" (censored)" if s.get("censored") else "")


# ----------------------------------------------------------------------------- README table

BEGIN = "<!-- verdicts:begin (generated by `python -m replicate.verdicts readme`; do not edit) -->"
END = "<!-- verdicts:end -->"


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("|", "\\|")).strip()


def readme_table(metrics_dir: Path, notebooks: Sequence[str]) -> str:
    """Markdown table of every verdict row in ``metrics_dir/<stem>.json`` for each paper notebook stem.

    A notebook whose metrics file has no verdict rows (not yet re-run since it gained them) gets one
    row that says so, instead of a verdict.
    """
    lines = ["| notebook | claim | paper | ours | verdict | profile |", "|---|---|---|---|---|---|"]
    for stem in notebooks:
        path = metrics_dir / f"{stem}.json"
        link = f"[`{stem}`](reports/{stem}.ipynb)"
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        rows = data.get("metrics", {}).get("verdicts")
        profile = data.get("run", {}).get("profile", "—")
        try:
            rows = check_rows(rows)
        except ValueError:
            reason = "no metrics yet" if not data else "metrics predate verdict rows: re-run the stage (`dvc repro`)"
            lines.append(f"| {link} | — | — | — | *{reason}* | {profile} |")
            continue
        if not rows:
            note = "*judges no paper claim (builds data / measures the setup)*"
            lines.append(f"| {link} | {note} | — | — | — | {profile} |")
        for r in rows:
            claim = _cell(r["claim"]) + (f" ([figure]({r['figure']}))" if r["figure"] else "")
            paper, ours = _cell(r["paper"]), _cell(r["ours"])
            lines.append(f"| {link} | {claim} | {paper} | {ours} | **{r['verdict']}** | {profile} |")
    return "\n".join(lines)


def paper_notebooks(root: Path) -> list[str]:
    """Stems of the paper notebooks (every ``notebooks/NN_*.ipynb`` except ``00_*``), in order."""
    return sorted(p.stem for p in (root / "notebooks").glob("[1-9][0-9]_*.ipynb"))


def render_readme(readme: str, table_md: str) -> str:
    """``readme`` with the text between :data:`BEGIN` and :data:`END` replaced by ``table_md``."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md lacks the markers {BEGIN!r} ... {END!r}; add them where the table goes")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table_md}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from replicate import io
    from replicate.params import repo_root

    parser = argparse.ArgumentParser(prog="python -m replicate.verdicts")
    parser.add_argument("command", choices=["readme", "check"],
                        help="readme: rewrite README.md's results table; check: exit 1 if it is stale")
    args = parser.parse_args(argv)
    root = repo_root()
    readme_path = root / "README.md"
    old = readme_path.read_text(encoding="utf-8")
    new = render_readme(old, readme_table(root / "data" / "metrics", paper_notebooks(root)))
    if args.command == "check":
        if new != old:
            print("README.md's results table is stale: run `python -m replicate.verdicts readme`", file=sys.stderr)
            return 1
        return 0
    if new != old:
        io.write_text(readme_path, new)
        print("README.md: results table regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
