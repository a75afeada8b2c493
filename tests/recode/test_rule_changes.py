"""Disclosure of verdict-rule changes: old labels beside the new ones, flips named with their direction."""

import pytest

from replicate import verdicts
from replicate.recode import rule_changes

R, P, N, INC = verdicts.REPRODUCED, verdicts.PARTLY, verdicts.NOT_REPRODUCED, verdicts.INCONCLUSIVE


def test_change_names_the_direction():
    assert rule_changes.change(R, R) == "unchanged"
    assert rule_changes.change(N, R).endswith("(flip towards the claim)")
    assert rule_changes.change(R, P).endswith("(flip against the claim)")
    assert rule_changes.change(R, INC).endswith("(now inconclusive)")
    assert rule_changes.change(INC, N).endswith("(was inconclusive)")
    assert rule_changes.change(P, N).startswith(f"{P} -> {N}")
    with pytest.raises(ValueError):
        rule_changes.change("done", R)


def test_label_changes_table():
    rows = [verdicts.row("a", "p", "o", R), verdicts.row("b2", "p", "o", INC), verdicts.row("c", "p", "o", N)]
    old = [{"claim": "a", "label": N, "now": "a"}, {"claim": "b", "label": R, "now": "b2"},
           {"claim": "gone", "label": P, "now": None}]
    t = rule_changes.label_changes(old, rows)
    assert list(t["new claim"]) == ["a", "b2", "(dropped)", "c"]
    assert list(t["new label"]) == [R, INC, "—", N]
    assert list(t["change"]) == [rule_changes.change(N, R), rule_changes.change(R, INC), "row dropped", "new row"]
    with pytest.raises(ValueError, match="not a claim"):
        rule_changes.label_changes([{"claim": "a", "label": R, "now": "zzz"}], rows)
