"""RECODE's Atari agent: run config, bonus settings and features (no emulator needed here; tests/rl/test_atari.py
covers the environment)."""

import numpy as np
import pytest

from replicate import tolerances
from replicate.nn import actor_critic
from replicate.params import ParameterError
from replicate.recode import atari_agent, bonus, memory
from replicate.rl import atari


def test_unknown_method_fails_before_any_emulator_starts():
    with pytest.raises(ParameterError, match="method"):
        atari_agent.train("counts", atari_agent.RunConfig(), 0)


def test_run_config_is_hashable_and_builds_ppo_and_bonus_configs():
    run = atari_agent.RunConfig(total_frames=4 * 2 * 32 * 3, num_envs=2, num_steps=32, ppo=(("learning_rate", 3e-4),),
                                embed_dim=8, memory_size=500, atari=atari.AtariConfig(game="pitfall"))
    assert hash(run) == hash(atari_agent.RunConfig(**{f: getattr(run, f) for f in run.__dataclass_fields__}))
    cfg = run.ppo_config()
    assert cfg.num_updates == 3 and cfg.learning_rate == 3e-4
    # the Nature CNN's PPO epochs run unrolled (XLA:CPU), unless the run says otherwise
    assert cfg.unroll_learn and not atari_agent.RunConfig(ppo=(("unroll_learn", False),)).ppo_config().unroll_learn
    bcfg = run.bonus_config()
    assert bcfg.recode.memory_size == 500 and bcfg.embedding.dim == 8 and bcfg.embedding.ap_hidden == (256,)
    # seeds and games share one compiled agent per method and settings
    other = atari_agent.RunConfig(**{**{f: getattr(run, f) for f in run.__dataclass_fields__},
                                     "atari": atari.AtariConfig(game="montezuma_revenge")})
    agent = atari_agent.compiled_agent("none", cfg, bcfg, 18, 84, True)
    assert atari_agent.compiled_agent("none", other.ppo_config(), other.bonus_config(), 18, 84, True) is agent
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
    # float32 against float64: the division by 255 (u) and the mean of 4 positive terms (gamma_3; the 1/4 is
    # exact) give a relative error <= gamma_4
    tol = tolerances.gamma(4) * want
    tolerances.assert_within(got, want, tol, "pooled frames")
    with pytest.raises(AssertionError, match="exceed their rounding bound"):  # a pool missing one pixel
        tolerances.assert_within(got, want - frames[..., ::2, ::2].reshape(3, 2, -1) / (4 * 255.0), tol, "pooled")
    env = atari_agent.bonus_env(18, 84, "pitfall")
    assert env.obs_dim == 42 * 42 and env.n_actions == 18 and env.n_states is None
    assert bonus.make_bonus("none", env, 2) is None


def test_run_config_checks_the_env_groups():
    with pytest.raises(ParameterError, match="multiple of groups"):
        atari_agent.RunConfig(num_envs=3, atari=atari.AtariConfig(groups=2))  # EnvPool backend, two groups
    assert atari_agent.RunConfig(num_envs=3).num_envs == 3  # one group by default
    assert atari_agent.RunConfig().atari.backend == "envpool"


def test_act_is_layout_free_and_draws_each_env_with_its_own_key():
    """The jitted act on EnvPool's (E, 4, 84, 84) obs equals act on the (E, 84, 84, 4) transpose, and each
    environment's draw depends on its own key only (so the pipelined groups of atari.collect do not matter)."""
    import jax

    cfg = atari_agent.RunConfig(num_envs=4, num_steps=8).ppo_config()
    init, act, _ = atari_agent.make_agent(cfg, 18, None, None)
    _, act_first, _ = atari_agent.make_agent(cfg, 18, None, None, channels_first=True)
    obs = np.random.default_rng(0).integers(0, 256, size=(4, 84, 84, 4)).astype(np.uint8)
    params = init(jax.random.PRNGKey(0), obs)["params"]
    keys, _ = atari.env_keys(jax.random.PRNGKey(1), 1, 4)
    a, logp, v_ext, v_int = act(params, obs, keys[0])
    b = act_first(params, np.moveaxis(obs, -1, 1), keys[0])
    np.testing.assert_array_equal(a, b[0])
    # The two layouts may run each conv and dense sum in another order. First-order estimate, two float32
    # evaluations: the reductions of lengths n_l (8*8*4, 4*4*32, 3*3*64, 3136, 512) each add <= gamma_{n_l}
    # relative to the scale of what they feed, and the orthogonally initialised layers above carry it to the
    # heads with gain ~1, so the heads move by <= 2 sum_l gamma_{n_l} max|head|; logp adds its log-softmax over
    # 18 logits (exp and log ULPS u each, the sum gamma_18, the shift and subtraction u |.|).
    u, ulps = tolerances.unit_roundoff(np.float32), tolerances.EXP_ULPS
    g = sum(tolerances.gamma(n) for n in (256, 512, 576, 3136, 512))
    logits, *_ = jax.jit(actor_critic.NatureActorCritic(18).apply)(params, obs)
    tol_logp = 2 * (2 * g * np.abs(logits).max() + (2 * ulps + 2) * u * np.abs(logp) + tolerances.gamma(18))
    tol = np.stack([tol_logp, *(np.full(4, 2 * g * np.abs(x).max()) for x in (v_ext, v_int))])
    tolerances.assert_within(np.stack([logp, v_ext, v_int]), np.stack(b[1:]), tol, "channels last vs first")
    swapped = act_first(params, np.moveaxis(obs, -1, 1).swapaxes(-1, -2), keys[0])  # rows and columns swapped
    with pytest.raises(AssertionError, match="exceed their rounding bound"):
        tolerances.assert_within(np.stack([logp, v_ext, v_int]), np.stack(swapped[1:]), tol, "swapped layout")
    halves = [act(params, obs[sl], keys[0, sl])[0] for sl in (slice(0, 2), slice(2, 4))]
    np.testing.assert_array_equal(np.concatenate(halves), a)
    assert a.shape == (4,) and logp.shape == (4,) and np.all(np.asarray(logp) <= 0)


def test_emm_and_ngu_on_atari_use_ngus_episodic_capacity():
    """Atari has no step limit in the bonus env: EMM's/NGU's episodic memory takes NGU's capacity (30 000)."""
    import jax

    env = atari_agent.bonus_env(18, 84, "pitfall")
    for name in ("emm", "ngu"):
        b = bonus.make_bonus(name, env, 2, atari_agent.RunConfig(embed_dim=8).bonus_config())
        st = b.init(jax.random.PRNGKey(0), env)
        assert b.name == name and st["memory"].memory.shape == (2, 30_000, 8)
    assert set(atari_agent.METHODS) == {"none", "rnd", "emm", "ngu", "recode"}
