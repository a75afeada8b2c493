"""PAC dataset schema: round trip, validation errors that say what is wrong, task merging."""

import json

import numpy as np
import pytest

from replicate.pac import offline_data, paths


def make_dataset(episodes=3, length=4, obs_dim=3, act_dim=2, task_id=1, seed=0):
    rng = np.random.default_rng(seed)
    obs, nxt, act, rew, ep, step, qual = [], [], [], [], [], [], []
    for e in range(episodes):
        o = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        obs.append(o[:-1])
        nxt.append(o[1:])
        act.append(rng.uniform(-1, 1, (length, act_dim)))
        rew.append(rng.uniform(0, 1, length))
        ep.append(np.full(length, e))
        step.append(np.arange(length))
        qual.append(np.full(length, e % 3))
    rew_all = np.concatenate(rew)
    eq = np.array([e % 3 for e in range(episodes)], np.int8)
    arrays = dict(
        observations=np.concatenate(obs), next_observations=np.concatenate(nxt), actions=np.concatenate(act),
        rewards=rew_all, discounts=np.ones(episodes * length), episode_ids=np.concatenate(ep),
        step_in_episode=np.concatenate(step), task_id=np.full(episodes * length, task_id),
        quality=np.concatenate(qual), episode_returns=np.array([r.sum() for r in rew]), episode_quality=eq,
    )
    arrays = {k: np.asarray(v).astype(offline_data.SCHEMA[k][1]) for k, v in arrays.items()}
    meta = dict(schema_version=1, task="toy-task", task_id=task_id, obs_dim=obs_dim, action_dim=act_dim,
                quality_names=["random", "medium", "expert"], expert_return=3.0, random_return=0.5)
    return arrays, meta


def test_round_trip(tmp_path):
    arrays, meta = make_dataset()
    path = offline_data.write_dataset(tmp_path / "toy.npz", arrays, meta)
    got, got_meta = offline_data.read_dataset(path)
    assert got_meta == meta
    for k in offline_data.SCHEMA:
        np.testing.assert_array_equal(got[k], arrays[k])
        assert got[k].dtype == np.dtype(offline_data.SCHEMA[k][1])
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporary file left behind
    rows = offline_data.tier_summary(got, got_meta)
    assert [r["tier"] for r in rows] == ["random", "medium", "expert"]
    assert sum(r["transitions"] for r in rows) == 12


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda a, m: a.pop("rewards"), "missing arrays"),
        (lambda a, m: a.__setitem__("actions", a["actions"] * 3), r"outside \[-1, 1\]"),
        (lambda a, m: a.__setitem__("rewards", a["rewards"].astype(np.float64)), "dtype float64"),
        (lambda a, m: a["observations"].__setitem__((0, 0), np.nan), "NaN"),
        (lambda a, m: a.__setitem__("episode_ids", a["episode_ids"][::-1].copy()), "episode_ids"),
        (lambda a, m: a.__setitem__("discounts", a["discounts"] + 1), "discounts"),
        (lambda a, m: a.__setitem__("quality", a["quality"] * 0 + 2), "quality differs"),
        (lambda a, m: a["next_observations"].__setitem__((0, 0), 99.0), "next_observations"),
        (lambda a, m: a["episode_returns"].__setitem__(0, 99.0), "episode_returns"),
        (lambda a, m: a.__setitem__("observations", a["observations"][:-1]), "length"),
        (lambda a, m: m.__setitem__("obs_dim", 7), "width"),
        (lambda a, m: m.__setitem__("task_id", 0), "task_id"),
        (lambda a, m: m.pop("expert_return"), "meta_json lacks"),
    ],
)
def test_validation_errors(corrupt, message):
    arrays, meta = make_dataset()
    corrupt(arrays, meta)
    with pytest.raises(offline_data.DatasetError, match=message):
        offline_data.validate_dataset(arrays, meta)


def test_write_refuses_malformed(tmp_path):
    arrays, meta = make_dataset()
    arrays["actions"] = arrays["actions"] * 2
    with pytest.raises(offline_data.DatasetError):
        offline_data.write_dataset(tmp_path / "bad.npz", arrays, meta)
    assert not (tmp_path / "bad.npz").exists()


def test_read_reports_missing_and_stale(tmp_path):
    with pytest.raises(offline_data.DatasetError, match="no such dataset"):
        offline_data.read_dataset(tmp_path / "nope.npz")
    arrays, meta = make_dataset()
    np.savez(tmp_path / "old.npz", **arrays, meta_json=np.array(json.dumps({**meta, "schema_version": 0})))
    with pytest.raises(offline_data.DatasetError, match="schema_version"):
        offline_data.read_dataset(tmp_path / "old.npz")


def test_merge_pads_and_masks():
    a1 = make_dataset(obs_dim=3, act_dim=1, task_id=0)
    a2 = make_dataset(obs_dim=5, act_dim=2, task_id=1, seed=1)
    m = offline_data.merge_tasks([a1, a2])
    assert m["obs"].shape == (24, 5) and m["action"].shape == (24, 2)
    assert m["obs_mask"][:12].sum(1).tolist() == [3] * 12 and m["obs_mask"][12:].all()
    assert np.all(m["obs"][:12, 3:] == 0) and np.all(m["action"][:12, 1:] == 0)
    np.testing.assert_allclose(m["obs"][:12, :3].mean(0), 0, atol=1e-5)  # standardised per task
    assert m["obs"].dtype == np.float32 and m["task"].tolist() == [0] * 12 + [1] * 12
    assert m["obs_dim"].tolist() == [3, 5] and m["action_dim"].tolist() == [1, 2]


def test_named_datasets_round_trip_and_expert_share(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "pac_root", lambda profile: tmp_path / profile)
    per_task = [make_dataset(task_id=0), make_dataset(obs_dim=5, task_id=1, seed=1)]
    per_task[1][1]["task"] = "other-task"
    for _, meta in per_task:
        meta["mix"] = {"random": 1, "medium": 1, "expert": 1}
    files = offline_data.write_datasets("cpu/toy", per_task)
    assert [f.name for f in files] == ["toy-task.npz", "other-task.npz"]
    got = offline_data.read_datasets("cpu/toy")
    assert [m["task"] for _, m in got] == ["toy-task", "other-task"]
    np.testing.assert_array_equal(got[1][0]["observations"], per_task[1][0]["observations"])
    assert offline_data.expert_share([m for _, m in got]) == pytest.approx(1 / 3)
    assert offline_data.expert_share([{"quality_names": ["random", "x"], "mix": {"random": 3, "x": 1}},
                                      {"quality_names": ["random", "x"], "mix": {"random": 1, "x": 1}}]) == 0.375
    with pytest.raises(offline_data.DatasetError, match="notebooks/30_pac_datasets"):
        offline_data.read_datasets("cpu/missing")
    # A subset of the tasks: ids keep their numbers, the left-out task is absent from the rows.
    sub, _, metas = offline_data.load_mixed("cpu/toy", tasks=["other-task"])
    assert [m["task"] for m in metas] == ["other-task"] and set(sub["task"].tolist()) == {1}
    assert sub["obs_dim"].tolist() == [0, 5] and len(sub["reward"]) == len(per_task[1][0]["rewards"])
    with pytest.raises(offline_data.DatasetError, match="no task"):
        offline_data.load_mixed("cpu/toy", tasks=["walker-walk"])


def test_holdout_split_partitions_episodes_and_shares_normalisation(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "pac_root", lambda profile: tmp_path / profile)
    per_task = [make_dataset(episodes=6, task_id=0), make_dataset(episodes=6, obs_dim=5, task_id=1, seed=1)]
    per_task[1][1]["task"] = "other-task"
    offline_data.write_datasets("cpu/toy", per_task)
    hold = offline_data.holdout_mask(6, 2)
    assert hold.tolist() == [True, False, False, False, False, True]  # spread: first and last
    assert offline_data.holdout_mask(6, 3).sum() == 3
    train, held, metas = offline_data.load_mixed("cpu/toy", holdout_episodes=2)
    assert len(train["reward"]) == 2 * 4 * 4 and len(held["reward"]) == 2 * 2 * 4  # episodes of 4 steps
    # Held-out rows are exactly the held-out episodes' rewards, in order.
    want = np.concatenate([a["rewards"][hold[a["episode_ids"]]] for a, _ in per_task])
    np.testing.assert_allclose(held["reward"], want)
    # Both use the training statistics: undo the training normalisation and recover the raw observations.
    a0 = per_task[0][0]
    raw = held["obs"][:8, :3] * train["obs_std"][0, :3] + train["obs_mean"][0, :3]
    np.testing.assert_allclose(raw, a0["observations"][hold[a0["episode_ids"]]], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(held["obs_mean"], train["obs_mean"])
    mu = a0["observations"][~hold[a0["episode_ids"]]].mean(0)
    np.testing.assert_allclose(train["obs_mean"][0, :3], mu, rtol=1e-5, atol=1e-6)
    full, none, _ = offline_data.load_mixed("cpu/toy")
    assert none is None and len(full["reward"]) == 48
    with pytest.raises(offline_data.DatasetError, match="HOLDOUT_EPISODES"):
        offline_data.load_mixed("cpu/toy", holdout_episodes=6)


def test_select_episodes_keeps_per_episode_arrays_aligned():
    arrays, _ = make_dataset(episodes=3)
    keep = np.array([False, True, True])
    sub = offline_data.select_episodes(arrays, keep)
    assert sub["episode_returns"].tolist() == arrays["episode_returns"][1:].tolist()
    assert len(sub["rewards"]) == 8 and set(sub["episode_ids"].tolist()) == {1, 2}
    np.testing.assert_array_equal(offline_data.pad_columns(np.ones((2, 1)), 3), [[1, 0, 0], [1, 0, 0]])


def test_expert_only_keeps_best_tier_renumbered_and_normalisation():
    arrays, meta = make_dataset(episodes=7)  # qualities 0,1,2,0,1,2,0: episodes 2 and 5 are expert
    meta = {**meta, "mix": {"random": 3, "medium": 2, "expert": 2}}
    sub, sub_meta = offline_data.expert_only(arrays, meta)
    offline_data.validate_dataset(sub, sub_meta, where="expert_only")  # schema-valid on its own
    assert sub["episode_quality"].tolist() == [2, 2] and set(sub["quality"].tolist()) == {2}
    assert sub["episode_ids"].tolist() == [0] * 4 + [1] * 4
    np.testing.assert_array_equal(sub["rewards"], np.concatenate([arrays["rewards"][8:12], arrays["rewards"][20:24]]))
    assert (sub_meta["expert_return"], sub_meta["random_return"]) == (3.0, 0.5)
    assert sub_meta["mix"] == {"random": 0, "medium": 0, "expert": 2}
    with pytest.raises(offline_data.DatasetError, match="no episodes of the best tier"):
        offline_data.expert_only(*make_dataset(episodes=2))


def test_top_episodes_keeps_the_best_returns_and_the_normalisation():
    arrays, meta = make_dataset(episodes=10)
    meta = {**meta, "mix": {"random": 4, "medium": 3, "expert": 3}}
    sub, sub_meta = offline_data.top_episodes(arrays, meta, 0.3)
    offline_data.validate_dataset(sub, sub_meta, where="top_episodes")
    best = np.sort(arrays["episode_returns"])[::-1][:3]
    np.testing.assert_allclose(np.sort(sub["episode_returns"])[::-1], best)
    assert sorted(set(sub["episode_ids"].tolist())) == [0, 1, 2] and len(sub["rewards"]) == 12
    kept = np.isin(arrays["episode_returns"], best)
    assert sub_meta["mix"] == {name: int((arrays["episode_quality"][kept] == q).sum())
                               for q, name in enumerate(meta["quality_names"])}
    assert (sub_meta["expert_return"], sub_meta["random_return"]) == (3.0, 0.5)
    assert len(offline_data.top_episodes(arrays, meta, 0.01)[0]["episode_returns"]) == 1  # at least one episode
    with pytest.raises(offline_data.DatasetError, match="FILTER_TOP"):
        offline_data.top_episodes(arrays, meta, 0.0)


def test_merge_records_each_tasks_return_span():
    a0, m0 = make_dataset(episodes=4, task_id=0, seed=1)
    a1, m1 = make_dataset(episodes=3, task_id=1, seed=2, obs_dim=2, act_dim=1)
    merged = offline_data.merge_tasks([(a0, m0), (a1, m1)])
    np.testing.assert_allclose(merged["return_span"], [np.ptp(a0["episode_returns"]), np.ptp(a1["episode_returns"])],
                               rtol=1e-6)
