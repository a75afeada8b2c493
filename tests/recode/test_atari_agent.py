"""RECODE's Atari agent: run config, bonus settings and features (no emulator needed here; tests/rl/test_atari.py
covers the environment)."""

import numpy as np
import pytest

from replicate.params import ParameterError
from replicate.recode import atari_agent, bonus, memory
from replicate.rl import atari


def test_unknown_method_fails_before_any_emulator_starts():
    with pytest.raises(ParameterError, match="method"):
        atari_agent.train("ngu", atari_agent.RunConfig(), 0)


def test_run_config_is_hashable_and_builds_ppo_and_bonus_configs():
    run = atari_agent.RunConfig(total_frames=4 * 2 * 32 * 3, num_envs=2, num_steps=32, ppo=(("learning_rate", 3e-4),),
                                embed_dim=8, memory_size=500, atari=atari.AtariConfig(game="pitfall"))
    assert hash(run) == hash(atari_agent.RunConfig(**{f: getattr(run, f) for f in run.__dataclass_fields__}))
    cfg = run.ppo_config()
    assert cfg.num_updates == 3 and cfg.learning_rate == 3e-4
    bcfg = run.bonus_config()
    assert bcfg.recode.memory_size == 500 and bcfg.embedding.dim == 8 and bcfg.embedding.ap_hidden == (256,)
    # without its own value the run takes RecodeConfig's default (one default per concept)
    assert atari_agent.RunConfig().bonus_config().recode == memory.RecodeConfig()
    with pytest.raises(ParameterError, match="embedding"):
        atari_agent.RunConfig(embedding="pixels")


def test_bonus_features_average_pool_the_newest_frame():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 2, 84, 84)).astype(np.uint8)
    got = np.asarray(atari_agent.bonus_features(frames))
    want = (frames.astype(np.float64) / 255.0).reshape(3, 2, 42, 2, 42, 2).mean(axis=(3, 5)).reshape(3, 2, -1)
    assert got.shape == (3, 2, 42 * 42)
    np.testing.assert_allclose(got, want, atol=1e-6)
    env = atari_agent.bonus_env(18, 84, "pitfall")
    assert env.obs_dim == 42 * 42 and env.n_actions == 18 and env.n_states is None
    assert bonus.make_bonus("none", env, 2) is None
