"""Disclosing verdict-rule changes (notebooks 10 and 13): each old row's label beside its successor's new label.

A notebook whose rules changed states the old rule in narration and shows :func:`label_changes`: the old label (read
from the committed ``data/metrics/<stem>.json`` before the change), the label the run gives under the new rule, and
whether the verdict flipped, in which direction. Nothing here predicts a label: the run computes them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from replicate import verdicts

# How strongly each label supports the claim (inconclusive: no support either way).
_SUPPORT = {verdicts.REPRODUCED: 2, verdicts.PARTLY: 1, verdicts.NOT_REPRODUCED: 0}


def change(old: str, new: str) -> str:
    """``"unchanged"``, or ``"<old> -> <new>"`` with the direction: towards the claim (more support), against it
    (less support), or to / from inconclusive."""
    verdicts.check_label(old)
    verdicts.check_label(new)
    if old == new:
        return "unchanged"
    if new == verdicts.INCONCLUSIVE:
        how = "now inconclusive"
    elif old == verdicts.INCONCLUSIVE:
        how = "was inconclusive"
    else:
        how = "flip towards the claim" if _SUPPORT[new] > _SUPPORT[old] else "flip against the claim"
    return f"{old} -> {new} ({how})"


def label_changes(old: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]):
    """A display table (pandas DataFrame) of the rule changes.

    ``old``: the committed rows before the change, each ``{"claim": old claim, "label": old verdict, "now": claim of
    the row that replaces it, or None when it was dropped}``; ``rows``: the verdict rows of this run. Rows of this run
    that replace no old row are listed as new.
    """
    rows = verdicts.check_rows(list(rows))
    by_claim = {r["claim"]: r["verdict"] for r in rows}
    out, used = [], set()
    for o in old:
        label = verdicts.check_label(o["label"])
        now = o.get("now")
        if now is not None and now not in by_claim:
            raise ValueError(f"old row {o['claim']!r} points to {now!r}, which is not a claim of this run's rows")
        new = by_claim.get(now) if now is not None else None
        used.add(now)
        out.append({"old claim": o["claim"], "old label": label, "new claim": now or "(dropped)",
                    "new label": new or "—", "change": change(label, new) if new else "row dropped"})
    for r in rows:
        if r["claim"] not in used:
            out.append({"old claim": "(none)", "old label": "—", "new claim": r["claim"], "new label": r["verdict"],
                        "change": "new row"})
    import pandas as pd

    return pd.DataFrame(out, columns=["old claim", "old label", "new claim", "new label", "change"])
