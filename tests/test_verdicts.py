"""replicate.verdicts: labels, row validation, the shared comparison rules, and the README's freshness."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from replicate import verdicts
from replicate.params import repo_root


def test_labels_are_the_three_of_contributing():
    assert verdicts.LABELS == ("reproduced", "partly", "not reproduced at this scale")


def test_row_rejects_unknown_label_and_missing_fields():
    r = verdicts.row("c", "p", "o", "partly", "figures/x.png")
    assert r == {"claim": "c", "paper": "p", "ours": "o", "verdict": "partly", "figure": "figures/x.png"}
    with pytest.raises(ValueError, match="not allowed"):
        verdicts.row("c", "p", "o", "not reproduced")
    with pytest.raises(ValueError, match="fields"):
        verdicts.check_rows([{"claim": "c", "paper": "p", "ours": "o", "verdict": "partly"}])
    with pytest.raises(ValueError, match="empty"):
        verdicts.row("c", " ", "o", "partly")
    assert verdicts.check_rows([]) == []
    with pytest.raises(ValueError, match="must be a list"):
        verdicts.check_rows({"claim": "partly"})


def test_from_wins():
    assert verdicts.from_wins(2, 2) == verdicts.REPRODUCED
    assert verdicts.from_wins(1, 2) == verdicts.PARTLY
    assert verdicts.from_wins(0, 2) == verdicts.NOT_REPRODUCED
    with pytest.raises(ValueError):
        verdicts.from_wins(3, 2)


def test_explores_better_censored_rule():
    a = {"solved": 1.0, "median": 100, "censored": False, "final_success": 0.2}
    b = {"solved": 1.0, "median": 200, "censored": False, "final_success": 0.9}
    assert verdicts.explores_better(a, b) and not verdicts.explores_better(b, a)
    # fewer seeds solved never wins, whatever the median
    assert not verdicts.explores_better({**a, "solved": 0.5}, b)
    # both censored at the budget: the final success rate decides
    ca = {"solved": 0.0, "median": 500, "censored": True, "final_success": 0.3}
    cb = {"solved": 0.0, "median": 500, "censored": True, "final_success": 0.1}
    assert verdicts.explores_better(ca, cb) and not verdicts.explores_better(cb, ca)
    # equal medians, one not censored: no win
    assert not verdicts.explores_better({**ca, "censored": False}, cb)
    assert verdicts.explores_equal(ca, dict(ca)) and not verdicts.explores_equal(ca, cb)


def test_mean_ci_matches_scipy_t_interval():
    x = np.array([0.1, 0.4, 0.35, 0.2, 0.5])
    m, lo, hi = verdicts.mean_ci(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert m == pytest.approx(x.mean()) and (lo, hi) == pytest.approx(ref)
    m1, lo1, hi1 = verdicts.mean_ci([0.3])
    assert m1 == 0.3 and math.isnan(lo1) and math.isnan(hi1)
    with pytest.raises(ValueError):
        verdicts.mean_ci([np.nan, 1.0])


def test_formatting():
    assert verdicts.fmt_ci(0.4219, 0.3, 0.55) == "0.42 [0.30, 0.55]"
    assert verdicts.fmt_ci(0.4219, math.nan, math.nan) == "0.42"
    s = {"median": 1234.4, "q25": 1000, "q75": 2000, "censored": True}
    assert verdicts.fmt_median(s) == "1234 [1000, 2000] (censored)"


def test_readme_table_from_metrics(tmp_path):
    (tmp_path / "11_x.json").write_text(json.dumps({"metrics": {"verdicts": [
        verdicts.row("A | B", "paper says", "we got", "partly", "figures/f.png")]}, "run": {"profile": "cpu"}}))
    (tmp_path / "12_y.json").write_text(json.dumps({"metrics": {"verdicts": {"old": "partly"}}, "run": {}}))
    md = verdicts.readme_table(tmp_path, ["11_x", "12_y", "13_z"])
    lines = md.splitlines()
    assert "A \\| B ([figure](figures/f.png))" in lines[2] and "**partly**" in lines[2] and "| cpu |" in lines[2]
    assert "predate verdict rows" in lines[3]
    assert "no metrics yet" in lines[4]
    readme = f"intro\n{verdicts.BEGIN}\nold table\n{verdicts.END}\noutro\n"
    out = verdicts.render_readme(readme, md)
    assert out.startswith("intro\n") and out.endswith("outro\n") and "old table" not in out
    with pytest.raises(ValueError, match="markers"):
        verdicts.render_readme("no markers", md)


def test_readme_results_table_is_fresh():
    """The README's results table equals what the committed metrics generate (run `make readme` if not)."""
    root = repo_root()
    readme = (root / "README.md").read_text(encoding="utf-8")
    table = verdicts.readme_table(root / "data" / "metrics", verdicts.paper_notebooks(root))
    assert verdicts.render_readme(readme, table) == readme, "README.md is stale: run `make readme`"
