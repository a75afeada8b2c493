"""dm_control shim, SAC plumbing, expert configs and dataset collection at toy size (seconds)."""

import jax
import numpy as np
import pytest

from replicate.pac import collect, experts, offline_data
from replicate.params import ParameterError
from replicate.rl import sac
from replicate.rl.dmc import DMCEnv


def test_dmc_env_and_sac_snapshots(tmp_path):
    env = DMCEnv("cartpole-balance", seed=0, action_repeat=25)  # 40-step episodes
    assert (env.obs_dim, env.action_dim, env.episode_length) == (5, 1, 40)
    cfg = sac.SACConfig(hidden=16, batch_size=8, warmup_steps=20, update_every=10)
    agent, state, snaps, log = sac.train(env, 60, jax.random.PRNGKey(0), cfg, snapshot_steps=(30,))
    assert sorted(snaps) == [30, 60] and len(log) == 1
    sac.save_actor(tmp_path / "a.npz", snaps[60], {"tier": "expert"})
    params, meta = sac.load_actor(tmp_path / "a.npz")
    assert meta == {"tier": "expert"}
    o = np.zeros((2, 5), np.float32)
    np.testing.assert_allclose(agent.act(params, o, None, deterministic=True),
                               agent.act(snaps[60], o, None, deterministic=True))
    snapshots = {"expert": (params, {})}
    arrays, meta = collect.make_task_dataset("cartpole-balance", 0, snapshots, {"random": 1, "expert": 2}, seed=0,
                                             action_repeat=25, hidden=16)
    offline_data.validate_dataset(arrays, {**meta, "schema_version": offline_data.SCHEMA_VERSION})
    assert arrays["episode_quality"].tolist() == [0, 1, 1] and len(arrays["rewards"]) == 120


def test_mix_to_episodes():
    tiers = ("early", "medium", "expert")
    assert collect.mix_to_episodes(10, 0.2, tiers, 0.2) == {"random": 2, "expert": 2, "early": 3, "medium": 3}
    assert sum(collect.mix_to_episodes(7, 0.5, ("expert",), 0.0).values()) == 7
    with pytest.raises(ParameterError, match="RANDOM_SHARE"):
        collect.mix_to_episodes(10, 0.8, tiers, 0.4)


def test_expert_config_snapshots_and_sac_settings():
    cfg = experts.ExpertConfig(steps=3000, tiers=["early", "expert"], hidden=64, action_repeat=4, fractions=[0.25, 1.0])
    assert cfg.tiers == ("early", "expert") and cfg.snapshot_steps == (750, 3000)
    s = cfg.sac_config()
    assert (s.hidden, s.batch_size, s.warmup_steps) == (64, 128, 750)  # warm-up: a quarter of the steps
    assert experts.ExpertConfig(steps=30000, tiers=["a"], hidden=8, action_repeat=1).sac_config().warmup_steps == 1000
    even = experts.ExpertConfig(steps=9, tiers=["a", "b", "c"], hidden=8, action_repeat=1)
    assert even.snapshot_fractions == (1 / 3, 2 / 3, 1.0) and even.snapshot_steps == (3, 6, 9)
    tiny = experts.ExpertConfig(steps=2, tiers=["a", "b"], hidden=8, action_repeat=1, fractions=[0.01, 1])
    assert tiny.snapshot_steps == (1, 2)  # at least one step


@pytest.mark.parametrize("kwargs, message", [
    (dict(fractions=[1.0, 0.25]), "SNAPSHOT_FRACTIONS"),
    (dict(fractions=[0.25, 0.5]), "SNAPSHOT_FRACTIONS"),
    (dict(fractions=[1.0]), "one entry per tier"),
    (dict(tiers=["a", "a"]), "TIERS"),
    (dict(steps=0), "EXPERT_STEPS"),
    (dict(hidden=0), "SAC_HIDDEN"),
])
def test_expert_config_rejects(kwargs, message):
    base = dict(steps=100, tiers=["early", "expert"], hidden=8, action_repeat=4)
    with pytest.raises(ParameterError, match=message):
        experts.ExpertConfig(**{**base, **kwargs})


def test_load_snapshots_and_summary_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m replicate.pac.experts"):
        experts.load_snapshots("cartpole-balance", ["expert"], directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m replicate.pac.experts"):
        experts.load_summary("cartpole-balance", directory=tmp_path)
    (tmp_path / "summary.json").write_text('{"tiers": {"expert": {"step": 5}}}')
    assert experts.load_summary("cartpole-balance", directory=tmp_path) == {"tiers": {"expert": {"step": 5}}}


def test_train_expert_writes_snapshots_and_summary(tmp_path):
    cfg = experts.ExpertConfig(steps=40, tiers=["early", "expert"], hidden=8, action_repeat=25, fractions=[0.5, 1.0],
                               eval_episodes=1)
    summary = experts.train_expert("cartpole-balance", cfg, seed=0, out_dir=tmp_path)
    assert [m["step"] for m in summary["tiers"].values()] == [20, 40]
    assert experts.load_summary("cartpole-balance", directory=tmp_path)["tiers"] == summary["tiers"]
    snaps = experts.load_snapshots("cartpole-balance", cfg.tiers, directory=tmp_path)
    assert list(snaps) == ["early", "expert"] and snaps["expert"][1]["hidden"] == 8
