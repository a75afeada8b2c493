"""dm_control shim, SAC plumbing and dataset generation at toy size (seconds)."""

import jax
import numpy as np

from replicate.pac import data as D
from replicate.pac import datasets as DS
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
    np.testing.assert_allclose(agent.act(params, o, None, deterministic=True), agent.act(snaps[60], o, None, deterministic=True))
    arrays, meta = DS.make_task_dataset("cartpole-balance", 0, {"expert": (params, {})}, {"random": 1, "expert": 2}, seed=0, action_repeat=25, hidden=16)
    D.validate_dataset(arrays, {**meta, "schema_version": D.SCHEMA_VERSION})
    assert arrays["episode_quality"].tolist() == [0, 1, 1] and len(arrays["rewards"]) == 120


def test_mix_to_episodes():
    assert DS.mix_to_episodes(10, 0.2, ("early", "medium", "expert"), 0.2) == {"random": 2, "expert": 2, "early": 3, "medium": 3}
    assert sum(DS.mix_to_episodes(7, 0.5, ("expert",), 0.0).values()) == 7
