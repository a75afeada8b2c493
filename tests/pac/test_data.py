"""PAC dataset schema: round trip, validation errors that say what is wrong, task merging."""

import json

import numpy as np
import pytest

from replicate.pac import data as D


def make_dataset(episodes=3, length=4, obs_dim=3, act_dim=2, task_id=1, seed=0):
    rng = np.random.default_rng(seed)
    obs, nxt, act, rew, ep, step, qual = [], [], [], [], [], [], []
    for e in range(episodes):
        o = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        obs.append(o[:-1]); nxt.append(o[1:])
        act.append(rng.uniform(-1, 1, (length, act_dim)))
        rew.append(rng.uniform(0, 1, length))
        ep.append(np.full(length, e)); step.append(np.arange(length)); qual.append(np.full(length, e % 3))
    rew_all = np.concatenate(rew)
    eq = np.array([e % 3 for e in range(episodes)], np.int8)
    arrays = dict(
        observations=np.concatenate(obs), next_observations=np.concatenate(nxt), actions=np.concatenate(act),
        rewards=rew_all, discounts=np.ones(episodes * length), episode_ids=np.concatenate(ep),
        step_in_episode=np.concatenate(step), task_id=np.full(episodes * length, task_id),
        quality=np.concatenate(qual), episode_returns=np.array([r.sum() for r in rew]), episode_quality=eq,
    )
    arrays = {k: np.asarray(v).astype(D.SCHEMA[k][1]) for k, v in arrays.items()}
    meta = dict(schema_version=1, task="toy-task", task_id=task_id, obs_dim=obs_dim, action_dim=act_dim,
                quality_names=["random", "medium", "expert"], expert_return=3.0, random_return=0.5)
    return arrays, meta


def test_round_trip(tmp_path):
    arrays, meta = make_dataset()
    path = D.write_dataset(tmp_path / "toy.npz", arrays, meta)
    got, got_meta = D.read_dataset(path)
    assert got_meta == meta
    for k in D.SCHEMA:
        np.testing.assert_array_equal(got[k], arrays[k])
        assert got[k].dtype == np.dtype(D.SCHEMA[k][1])
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporary file left behind
    rows = D.dataset_summary(got, got_meta)
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
    with pytest.raises(D.DatasetError, match=message):
        D.validate_dataset(arrays, meta)


def test_write_refuses_malformed(tmp_path):
    arrays, meta = make_dataset()
    arrays["actions"] = arrays["actions"] * 2
    with pytest.raises(D.DatasetError):
        D.write_dataset(tmp_path / "bad.npz", arrays, meta)
    assert not (tmp_path / "bad.npz").exists()


def test_read_reports_missing_and_stale(tmp_path):
    with pytest.raises(D.DatasetError, match="no such dataset"):
        D.read_dataset(tmp_path / "nope.npz")
    arrays, meta = make_dataset()
    np.savez(tmp_path / "old.npz", **arrays, meta_json=np.array(json.dumps({**meta, "schema_version": 0})))
    with pytest.raises(D.DatasetError, match="schema_version"):
        D.read_dataset(tmp_path / "old.npz")


def test_merge_pads_and_masks():
    a1 = make_dataset(obs_dim=3, act_dim=1, task_id=0)
    a2 = make_dataset(obs_dim=5, act_dim=2, task_id=1, seed=1)
    m = D.merge_tasks([a1, a2])
    assert m["obs"].shape == (24, 5) and m["action"].shape == (24, 2)
    assert m["obs_mask"][:12].sum(1).tolist() == [3] * 12 and m["obs_mask"][12:].all()
    assert np.all(m["obs"][:12, 3:] == 0) and np.all(m["action"][:12, 1:] == 0)
    np.testing.assert_allclose(m["obs"][:12, :3].mean(0), 0, atol=1e-5)  # standardised per task
    assert m["obs"].dtype == np.float32 and m["task"].tolist() == [0] * 12 + [1] * 12
    assert m["obs_dim"].tolist() == [3, 5] and m["action_dim"].tolist() == [1, 2]
