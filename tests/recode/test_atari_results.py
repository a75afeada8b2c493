"""Notebook 13's analysis helpers on hand-made results (no emulator needed)."""

import numpy as np
import pytest

from replicate import verdicts
from replicate.recode import atari_results

SEEDS = [0, 1]


def _run(rooms, episodes, score_max, running, visited, r_int=0.5):
    n = len(rooms)
    return {
        "rooms": np.asarray(rooms, float),
        "episodes": np.asarray(episodes, float),
        "score_max": np.asarray(score_max, float),
        "return_running": np.asarray(running, float),
        "r_int_raw": np.full(n, r_int),
        "frames": np.arange(1, n + 1) * 64.0,
        "visited_rooms": visited,
    }


@pytest.fixture
def results():
    return {
        ("pitfall", "none", 0): _run([1, 2], [0, 0], [0, 0], [0, -5], [196, 137]),
        ("pitfall", "none", 1): _run([1, 1], [0, 1], [0, -3], [0, 0], [196]),
        ("pitfall", "rnd", 0): _run([1, 3], [0, 1], [0, 2], [0, 1], [196, 137, 18]),
        ("pitfall", "rnd", 1): _run([1, 3], [1, 1], [4, 4], [0, 1], [196, 226, 18]),
        ("pitfall", "recode", 0): _run([2, 4], [1, 2], [1, 7], [0, 2], [196, 137, 18, 113]),
        ("pitfall", "recode", 1): _run([1, 2], [0, 0], [0, 0], [0, 3], [196, 226]),
    }


def test_curves_and_best_ended_episode(results):
    rooms = atari_results.stack(results, "pitfall", "rnd", SEEDS, "rooms")
    assert rooms.shape == (2, 2) and rooms[:, -1].tolist() == [3, 3]
    best = atari_results.best_ended(results, "pitfall", "none", SEEDS)
    assert np.isnan(best[0]).all() and np.isnan(best[1, 0]) and best[1, 1] == -3  # 0.0 before any episode ended is NaN
    assert atari_results.best_score(results, "pitfall", "rnd", SEEDS) == 4.0
    assert atari_results.best_score({("g", "m", 0): _run([1], [0], [0], [0], [1])}, "g", "m", [0]) is None
    assert atari_results.visited_rooms(results, "pitfall", "rnd", SEEDS) == [18, 137, 196, 226]


def test_end_of_budget_summaries_and_the_score_fallback(results):
    methods = ["none", "rnd", "recode"]
    rooms = atari_results.rooms_at_end(results, ["pitfall"], methods, SEEDS)
    assert rooms == {"pitfall": {"none": [2, 1], "rnd": [3, 3], "recode": [4, 2]}}
    assert atari_results.means(rooms) == {"pitfall": {"none": 1.5, "rnd": 3.0, "recode": 3.0}}
    kind, score = atari_results.score_at_end(results, ["pitfall"], methods, SEEDS)
    # recode seed 1 ended no episode: the running return decides
    assert kind["pitfall"] == atari_results.RUNNING
    assert score["pitfall"] == {"none": [-5, 0], "rnd": [1, 1], "recode": [2, 3]}
    ended = {k: v for k, v in results.items() if k[1] != "recode"}
    kind2, score2 = atari_results.score_at_end(ended, ["pitfall"], ["rnd"], SEEDS)
    # every seed ended an episode: each seed's best ended return
    assert kind2["pitfall"] == atari_results.BEST_ENDED and score2["pitfall"] == {"rnd": [2, 4]}
    assert atari_results.episodes_ended(results, ["pitfall"], methods, SEEDS) == {
        "pitfall": {"none": 1, "rnd": 2, "recode": 2}
    }
    rows = atari_results.summary_rows(results, ["pitfall"], methods, SEEDS)
    assert [r["method"] for r in rows] == ["no bonus", "RND", "RECODE (AP)"]
    assert rows[2]["best ended-episode return"] == 7.0 and rows[0]["frames"] == 128


def test_separable_control_needs_some_run_to_differ():
    c = atari_results.separable_control({"none": [1, 1], "recode": [1, 2]}, "rooms")
    assert c["passed"] and c["value"] == 1.0 and c["threshold"] == 0.0 and "rooms" in c["name"]
    assert not atari_results.separable_control({"none": [1, 1], "recode": [1, 1]}, "rooms")["passed"]
    with pytest.raises(ValueError, match="finite"):
        atari_results.separable_control({"none": [np.nan]}, "rooms")


def test_flat_note_only_for_constant_panels():
    note = atari_results.flat_note([np.ones(3), np.array([1.0, np.nan])], "rooms")
    assert note is not None and "rooms = 1" in note
    assert atari_results.flat_note([np.ones(3), np.array([1.0, 2.0])], "rooms") is None
    assert atari_results.flat_note([np.full(2, np.nan)], "rooms") is None


METHODS = ["none", "rnd", "recode"]


def _label(values, methods=METHODS):
    rows = atari_results.verdict_rows({"pitfall": values}, {"pitfall": atari_results.RUNNING}, {"pitfall": values},
                                      methods, "x frames")
    assert rows[0]["verdict"] == rows[1]["verdict"] and verdicts.recompute(rows[0]) == rows[0]["verdict"]
    return rows[0]["verdict"]


@pytest.mark.parametrize(
    "values, label",
    [
        ({"recode": [3, 4, 5, 4, 3], "rnd": [1, 2, 3, 2, 1], "none": [1, 1, 1, 1, 1]}, verdicts.REPRODUCED),
        ({"recode": [3, 4, 5, 4, 3], "rnd": [3, 4, 5, 4, 3], "none": [1, 1, 1, 1, 1]}, verdicts.PARTLY),
        ({"recode": [3, 2, 5, 3, 3], "rnd": [1, 2, 3, 3, 1], "none": [1, 1, 1, 1, 1]}, verdicts.PARTLY),  # CI has 0
        ({"recode": [1, 2, 1, 2, 1], "rnd": [1, 2, 1, 2, 1], "none": [2, 1, 2, 1, 2]}, verdicts.NOT_REPRODUCED),
        # every run the same: the control fails, the set-up cannot separate the methods
        ({"recode": [1, 1, 1], "rnd": [1, 1, 1], "none": [1, 1, 1]}, verdicts.INCONCLUSIVE),
        ({"recode": [3], "rnd": [2], "none": [1]}, verdicts.INCONCLUSIVE),  # one seed: no interval
    ],
)
def test_verdict_rows_reach_every_outcome(values, label):
    assert _label(values) == label


def test_every_rival_run_counts():
    values = {"recode": [3, 4, 5], "rnd": [1, 2, 3], "none": [1, 1, 1], "emm": [1, 2, 1], "ngu": [4, 5, 6]}
    assert _label(values, ["none", "rnd", "emm", "ngu", "recode"]) == verdicts.PARTLY
    with pytest.raises(ValueError, match="recode"):
        _label(values, ["none", "rnd"])
    with pytest.raises(ValueError, match="rival"):
        _label(values, ["recode"])


def test_verdict_rows_are_valid_rows_with_the_game_figure(results):
    methods = ["none", "rnd", "recode"]
    rooms = atari_results.rooms_at_end(results, ["pitfall"], methods, SEEDS)
    kind, score = atari_results.score_at_end(results, ["pitfall"], methods, SEEDS)
    rows = atari_results.verdict_rows(rooms, kind, score, methods, "128 frames")
    assert verdicts.check_rows(rows) == rows and len(rows) == 2
    # two seeds: RECODE's leads (rooms +1.5 and +0 on average) are inside the wide 95% intervals
    assert rows[0]["verdict"] == verdicts.NOT_REPRODUCED and rows[1]["verdict"] == verdicts.NOT_REPRODUCED
    assert all(r["figure"] == "figures/recode_fig_atari_pitfall.png" for r in rows)
    assert "RND 3.0 [3.0, 3.0]" in rows[0]["ours"] and "mean running return" in rows[1]["ours"]
    assert rows[0]["evidence"]["arms"]["RECODE (AP)"] == [4.0, 2.0] and rows[0]["controls"][0]["passed"]
    assert rows[0]["claim"] == "RECODE explores Pitfall! further than no bonus and RND (more rooms)"
    one = {g: {m: v[:1] for m, v in d.items()} for g, d in rooms.items()}  # seed 0 alone: no interval
    assert atari_results.verdict_rows(one, kind, score, methods, "x")[0]["verdict"] == verdicts.INCONCLUSIVE
