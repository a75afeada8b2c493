"""replicate.verdicts: labels, row validation, the shared comparison rules, and the README's freshness."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from replicate import readme as readme_blocks
from replicate import verdicts
from replicate.params import repo_root


def test_labels_are_the_four_of_contributing():
    assert verdicts.LABELS == ("reproduced", "partly", "not reproduced at this scale", "inconclusive")


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
    assert "predate the verdict rows" in lines[3]
    assert "no metrics yet" in lines[4]
    readme = f"intro\n{verdicts.BEGIN}\nold table\n{verdicts.END}\noutro\n"
    out = verdicts.render_readme(readme, md)
    assert out.startswith("intro\n") and out.endswith("outro\n") and "old table" not in out
    with pytest.raises(ValueError, match="markers"):
        verdicts.render_readme("no markers", md)
    (tmp_path / "00_e.json").write_text(json.dumps({"metrics": {}, "run": {"profile": "cpu", "wall_time_s": 90.0,
                                                                          "git_dirty": False}}))
    times = readme_blocks.timings_table(tmp_path, ["00_e", "13_z"])
    assert "| cpu | 1.5 min | yes |" in times and "**0.0 h** (90 s)" in times
    # A stage without a notebook (the PAC experts) comes before the notebook it feeds, its summaries' time summed.
    data = tmp_path / "data"
    (data / "metrics").mkdir(parents=True)
    (data / "metrics" / "30_pac_datasets.json").write_text(json.dumps({"metrics": {}, "run": {"profile": "cpu",
                                                                                              "wall_time_s": 10.0}}))
    for task, sec in (("a", 100.0), ("b", 50.0)):
        (data / "pac" / "experts" / "cpu" / task).mkdir(parents=True)
        (data / "pac" / "experts" / "cpu" / task / "summary.json").write_text(json.dumps({"train_seconds": sec}))
    times = readme_blocks.timings_table(data / "metrics", ["00_e", "30_pac_datasets"]).splitlines()
    assert times[3].startswith("| `pac_experts`") and "| cpu | 2.5 min |" in times[3]
    assert times[4].startswith("| [`30_pac_datasets`]") and "(160 s)" in times[-1]
    counts = verdicts.verdict_counts(tmp_path, ["11_x", "12_y", "13_z"])
    assert counts == {"RECODE": {"reproduced": 0, "partly": 1, "not reproduced at this scale": 0, "inconclusive": 0,
                                 verdicts.PENDING: 0}}
    assert "| RECODE | 0 | 1 | 0 | 0 | 0 |" in verdicts.counts_table(tmp_path, ["11_x"])
    # A stage whose code changed since its run: its rows count as awaiting a re-run and are marked.
    assert "| RECODE | 0 | 0 | 0 | 0 | 1 |" in verdicts.counts_table(tmp_path, ["11_x"], stale={"11_x"})
    assert verdicts.STALE_NOTE in verdicts.readme_table(tmp_path, ["11_x"], stale={"11_x"})


def test_readme_counts_and_claims_page_are_fresh():
    """The README's verdict counts and docs/claims.md equal what the committed metrics generate (`make readme`)."""
    root = repo_root()
    readme = (root / "README.md").read_text(encoding="utf-8")
    new_readme, new_claims = readme_blocks.generated(root)
    assert new_readme == readme, "README.md is stale: run `make readme`"
    claims = (root / verdicts.CLAIMS).read_text(encoding="utf-8")
    assert new_claims == claims, "docs/claims.md is stale: run `make readme`"


def test_committed_rows_agree_with_their_evidence():
    """Every committed row that stores evidence gets the same verdict when recomputed from it."""
    root = repo_root()
    checked = 0
    for path in sorted((root / "data" / "metrics").glob("*.json")):
        for r in json.loads(path.read_text(encoding="utf-8")).get("metrics", {}).get("verdicts", []) or []:
            if "evidence" in r:
                assert verdicts.recompute(r) == r["verdict"], (path.name, r["claim"])
                checked += 1
    print(f"{checked} rows recomputed from their evidence")


# ----------------------------------------------------------------------------- the shared rules reach every outcome

CTRL_OK = [verdicts.control("oracle beats no bonus", True, 0.5, 0.0)]
CTRL_FAIL = [verdicts.control("oracle beats no bonus", False, -0.1, 0.0)]


def test_paired_interval_is_the_t_interval_of_seed_differences():
    a, b = np.array([3.0, 4.0, 5.5, 4.2, 3.9]), np.array([1.0, 2.5, 2.0, 3.0, 1.1])
    m, lo, hi = verdicts.paired_interval(a, b)
    ref = stats.t.interval(0.95, 4, loc=(a - b).mean(), scale=stats.sem(a - b))
    assert m == pytest.approx((a - b).mean()) and (lo, hi) == pytest.approx(ref)
    assert verdicts.paired_interval(a, b, higher_is_better=False)[0] == pytest.approx(-m)
    assert verdicts.beats(a, b) and not verdicts.beats(b, a)
    assert not verdicts.beats(a, a)  # a tie beats nobody
    assert not verdicts.beats([2.0], [1.0])  # one seed: no interval, beats nobody
    # Seed pairing matters: a shared per-seed offset cancels.
    offset = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    assert verdicts.beats(offset + 1.0 + 0.01 * np.arange(5), offset)
    with pytest.raises(ValueError, match="equal-length"):
        verdicts.paired_interval([1.0, 2.0], [1.0])


def test_compare_reaches_every_outcome():
    arms = {"A": [5.0, 6.0, 5.5, 6.2, 5.8], "B": [1.0, 1.2, 0.9, 1.1, 1.3], "C": [5.1, 6.3, 5.2, 6.0, 5.9]}
    rep, ev = verdicts.compare({k: arms[k] for k in "AB"}, "A", ["B"], metric="m", controls=CTRL_OK)
    assert rep == verdicts.REPRODUCED and ev["arms"]["A"] == arms["A"] and ev["than"] == ["B"]
    assert verdicts.compare(arms, "A", ["B", "C"], metric="m")[0] == verdicts.PARTLY
    assert verdicts.compare(arms, "B", ["A", "C"], metric="m")[0] == verdicts.NOT_REPRODUCED
    assert verdicts.compare(arms, "A", ["B"], metric="m", controls=CTRL_FAIL)[0] == verdicts.INCONCLUSIVE
    one_seed = {k: v[:1] for k, v in arms.items()}
    assert verdicts.compare(one_seed, "A", ["B"], metric="m")[0] == verdicts.INCONCLUSIVE
    # lower is better: B (smaller) beats A
    assert verdicts.compare(arms, "B", ["A"], metric="m", higher_is_better=False)[0] == verdicts.REPRODUCED
    with pytest.raises(ValueError, match="same seeds"):
        verdicts.compare({"A": [1.0, 2.0], "B": [1.0]}, "A", ["B"], metric="m")


def test_comparison_row_stores_evidence_that_recomputes():
    arms = {"A": [5.0, 6.0, 5.5, 6.2, 5.8], "B": [1.0, 1.2, 0.9, 1.1, 1.3]}
    r = verdicts.comparison_row("A beats B", "paper", "figures/x.png", arms, "A", ["B"], metric="AUC",
                                controls=CTRL_OK)
    assert r["verdict"] == verdicts.REPRODUCED and verdicts.recompute(r) == r["verdict"]
    assert "A - B = " in r["ours"] and "5 seeds" in r["ours"] and "seed-paired" in r["rule"]
    assert json.loads(json.dumps(r)) == r  # JSON round trip
    failed = verdicts.comparison_row("A beats B", "paper", "", arms, "A", ["B"], metric="AUC", controls=CTRL_FAIL)
    assert failed["verdict"] == verdicts.INCONCLUSIVE
    # A row whose control failed cannot claim anything else.
    with pytest.raises(ValueError, match="control failed"):
        verdicts.check_rows([{**failed, "verdict": verdicts.REPRODUCED}])
    with pytest.raises(ValueError, match="same seeds"):
        verdicts.check_rows([{**r, "evidence": {**r["evidence"], "arms": {"A": [1.0], "B": [1.0, 2.0]}}}])


def test_threshold_reaches_every_outcome():
    above = [0.9, 0.92, 0.91, 0.93, 0.9]
    assert verdicts.threshold(above, 0.8, metric="rho")[0] == verdicts.REPRODUCED
    straddle_above = [0.95, 0.7, 0.9, 0.85, 0.75]
    assert verdicts.threshold(straddle_above, 0.8, metric="rho")[0] == verdicts.PARTLY
    assert verdicts.threshold([0.7, 0.72, 0.71], 0.8, metric="rho")[0] == verdicts.NOT_REPRODUCED
    assert verdicts.threshold(above, 0.8, metric="rho", controls=CTRL_FAIL)[0] == verdicts.INCONCLUSIVE
    assert verdicts.threshold([0.9], 0.8, metric="rho")[0] == verdicts.INCONCLUSIVE  # no interval
    # one value with a margin (e.g. a reading error): clears, straddles, falls short
    assert verdicts.threshold([0.9], 0.8, metric="x", margin=0.05)[0] == verdicts.REPRODUCED
    assert verdicts.threshold([0.82], 0.8, metric="x", margin=0.05)[0] == verdicts.PARTLY
    assert verdicts.threshold([0.5], 0.8, metric="x", margin=0.05)[0] == verdicts.NOT_REPRODUCED
    assert verdicts.threshold([0.5], 0.8, metric="x", higher_is_better=False, margin=0.05)[0] == verdicts.REPRODUCED
    r = verdicts.threshold_row("c", "p", "", straddle_above, 0.8, metric="rho")
    assert verdicts.recompute(r) == r["verdict"] == verdicts.PARTLY


def test_match_reaches_every_outcome():
    assert verdicts.match(-0.47, -0.46, 0.03, metric="slope")[0] == verdicts.REPRODUCED
    assert verdicts.match(-0.58, -0.46, 0.03, metric="slope")[0] == verdicts.PARTLY  # steeper, same sign
    assert verdicts.match(0.2, -0.46, 0.03, metric="slope")[0] == verdicts.NOT_REPRODUCED  # direction contradicted
    assert verdicts.match(-0.47, -0.46, 0.03, metric="slope", controls=CTRL_FAIL)[0] == verdicts.INCONCLUSIVE
    assert verdicts.match(float("nan"), -0.46, 0.03, metric="slope")[0] == verdicts.INCONCLUSIVE
    assert verdicts.match(3.0, 4.5, 0.5, metric="ratio", direction="above1")[0] == verdicts.PARTLY
    assert verdicts.match(0.9, 4.5, 0.5, metric="ratio", direction="above1")[0] == verdicts.NOT_REPRODUCED
    assert verdicts.match(3.0, 4.5, 0.5, metric="ratio", direction="none")[0] == verdicts.NOT_REPRODUCED
    r = verdicts.match_row("c", "p", "", -0.58, -0.46, 0.03, metric="slope", reason="read over two decades")
    assert verdicts.recompute(r) == r["verdict"] == verdicts.PARTLY and "two decades" in r["rule"]


def test_iqm_and_probability_of_improvement():
    from rliable import metrics

    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 0.3, size=(10, 3))
    y = rng.normal(0.0, 0.3, size=(10, 3))
    est, lo, hi = verdicts.iqm_ci(x, reps=300)
    assert est == pytest.approx(metrics.aggregate_iqm(x)) and lo < est < hi
    p, plo, phi = verdicts.probability_of_improvement(x, y, reps=300)
    assert p == pytest.approx(metrics.probability_of_improvement(x, y)) and p > 0.9 and plo <= p <= phi
    p_same = verdicts.probability_of_improvement(x, x, reps=300)
    assert p_same[0] == pytest.approx(0.5) and p_same[1] < 0.5 < p_same[2]
    # Stratified: a task's runs are only ever resampled within that task (constant tasks stay constant).
    const = np.tile(np.array([[0.0, 10.0]]), (6, 1))
    assert verdicts.stratified_bootstrap(const, lambda s: float(s[:, 1].mean()), reps=50)[1:] == (10.0, 10.0)
