"""dm_control shim, SAC plumbing, expert configs and dataset collection at toy size (seconds)."""

import jax
import numpy as np
import pytest

from replicate.pac import collect, experts, offline_data
from replicate.params import ParameterError
from replicate.rl import sac
from replicate.rl.dmc import TASKS as DMC_TASKS
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


def test_expert_config_sac_settings_and_chunks():
    cfg = experts.ExpertConfig(max_steps=3000, eval_every=500, tiers=["early", "expert"], levels=[0.5], hidden=64,
                               action_repeat=4)
    assert cfg.tiers == ("early", "expert") and cfg.levels == (0.5,) and cfg.num_chunks == 6
    s = cfg.sac_config()
    assert (s.hidden, s.batch_size, s.warmup_steps, s.buffer_size) == (64, 128, 750, 3000)  # warm-up: a quarter
    big = experts.ExpertConfig(max_steps=100_000, eval_every=5000, tiers=["a"], levels=[], hidden=8, action_repeat=4)
    assert big.sac_config().warmup_steps == 1000 and big.sac_config().buffer_size == 100_000


@pytest.mark.parametrize("kwargs, message", [
    (dict(levels=[0.6, 0.3], tiers=["a", "b", "expert"]), "TIER_LEVELS"),
    (dict(levels=[1.0]), "TIER_LEVELS"),
    (dict(levels=[]), "one per tier"),
    (dict(tiers=["a", "a"]), "TIERS"),
    (dict(max_steps=0), "EXPERT_MAX_STEPS"),
    (dict(max_steps=750), "multiple of EXPERT_EVAL_EVERY"),
    (dict(eval_every=100, max_steps=1000), "episode length"),
    (dict(hidden=0), "SAC_HIDDEN"),
    (dict(tol=0.0), "tol"),
])
def test_expert_config_rejects(kwargs, message):
    base = dict(max_steps=1000, eval_every=500, tiers=["early", "expert"], levels=[0.5], hidden=8, action_repeat=4)
    with pytest.raises(ParameterError, match=message):
        experts.ExpertConfig(**{**base, **kwargs})


def test_tier_snapshots_first_to_reach_each_level():
    stoch = [10.0, 30.0, 55.0, 80.0, 100.0, 90.0]
    # random 0, expert = snapshot 4 (100): levels 0.25 -> >= 25 (index 1), 0.5 -> >= 50 (index 2).
    assert experts.tier_snapshots(stoch, 4, 0.0, [0.25, 0.5]) == [1, 2, 4]
    # Relative to a random return of 20 and the expert at index 5 (90): 0.5 -> >= 55 (index 2).
    assert experts.tier_snapshots(stoch, 5, 20.0, [0.5]) == [2, 5]
    # An expert below the random policy: no snapshot reaches the level, which falls back to the expert.
    assert experts.tier_snapshots([0.0, 2.0, 5.0], 2, 10.0, [0.5]) == [2, 2]


def test_load_snapshots_and_summary_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m replicate.pac.experts"):
        experts.load_snapshots("cartpole-balance", ["expert"], directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m replicate.pac.experts"):
        experts.load_summary("cartpole-balance", directory=tmp_path)
    (tmp_path / "summary.json").write_text('{"tiers": {"expert": {"step": 5}}}')
    assert experts.load_summary("cartpole-balance", directory=tmp_path) == {"tiers": {"expert": {"step": 5}}}


def test_train_expert_stops_when_flat_resumes_and_writes_tiers(tmp_path):
    """Cartpole at action repeat 25 (40-step episodes): chunks of one episode, a plateau read after 3 chunks at
    most; the summary holds the curves and the tiers; a checkpointed run gives the same snapshots."""
    cfg = experts.ExpertConfig(max_steps=200, eval_every=40, tiers=["early", "expert"], levels=[0.5], hidden=8,
                               action_repeat=25, eval_episodes=1, window=1, tol=1e6, min_steps=80)
    summary = experts.train_expert("cartpole-balance", cfg, seed=0, out_dir=tmp_path / "a")
    assert summary["flat"] and summary["steps"] == 80  # tol is huge: flat at the first point past min_steps
    assert summary["curve"]["steps"] == [40, 80] and len(summary["curve"]["stochastic"]) == 2
    assert len(summary["training_returns"]) == 2 and summary["env_steps"] == 80 * 25
    assert list(summary["tiers"]) == ["early", "expert"] and summary["tiers"]["expert"]["step"] == 80
    assert experts.load_summary("cartpole-balance", directory=tmp_path / "a")["tiers"] == summary["tiers"]
    snaps = experts.load_snapshots("cartpole-balance", cfg.tiers, directory=tmp_path / "a")
    assert list(snaps) == ["early", "expert"] and snaps["expert"][1]["hidden"] == 8
    assert experts.is_current(summary, cfg, 0) and not experts.is_current(summary, cfg, 1)
    again = experts.train_expert("cartpole-balance", cfg, seed=0, out_dir=tmp_path / "b", ckpt_dir=tmp_path / "ck")
    assert again["curve"] == summary["curve"] and not (tmp_path / "ck").exists()
    b = experts.load_snapshots("cartpole-balance", cfg.tiers, directory=tmp_path / "b")
    jax.tree_util.tree_map(np.testing.assert_array_equal, b["expert"][0], snaps["expert"][0])


def test_published_sac_returns_are_sourced():
    for task, rows in experts.PUBLISHED_SAC.items():
        assert task in DMC_TASKS and all(r["source"] and r["env_steps"] > 0 for r in rows)
