"""Bonus interface invariants (shapes, reward-before-insert ordering, resets) and one end-to-end jitted run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate.params import ParameterError
from replicate.recode import baselines, bonus, memory, representations
from replicate.rl import envs, ppo


def _rollout(next_obs, next_ids=None, first=None, obs=None):
    T, E, d = next_obs.shape
    z = jnp.zeros((T, E))
    return ppo.Rollout(
        obs=next_obs if obs is None else obs,
        action=jnp.zeros((T, E), jnp.int32),
        logp=z,
        v_ext=z,
        v_int=z,
        reward=z,
        done=jnp.zeros((T, E), bool),
        first=jnp.zeros((T, E), bool) if first is None else first,
        next_obs=next_obs,
        next_state_id=jnp.zeros((T, E), jnp.int32) if next_ids is None else next_ids,
        success=jnp.zeros((T, E), bool),
    )


@pytest.fixture(scope="module")
def env():
    return envs.deep_sea(4)


def test_counts_bonus_is_inverse_sqrt_of_earlier_visits(env):
    ids = np.array([[0, 1], [0, 0], [1, 2], [0, 1]])
    T, E = ids.shape
    ro = _rollout(jnp.zeros((T, E, env.obs_dim)), jnp.asarray(ids))
    b = bonus.make_bonus("counts", env, E, bonus.BonusConfig(count_c=1e-3))
    st = b.init(jax.random.PRNGKey(0), env)
    st, r, _ = b.intrinsic(st, ro, jax.random.PRNGKey(1))
    # reference: counts before each time step (all envs of one step see the same pre-step counts)
    cnt = np.zeros(env.n_states)
    ref = np.zeros((T, E))
    for t in range(T):
        ref[t] = 1 / (np.sqrt(cnt[ids[t]]) + 1e-3)
        np.add.at(cnt, ids[t], 1)
    np.testing.assert_allclose(np.asarray(r), ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(st), cnt)


def test_recode_bonus_rewards_repeats_less_and_respects_capacity(env):
    T, E = 12, 3
    cells = np.array([0, 5, 10])
    x = np.zeros((T, E, env.obs_dim), np.float32)
    x[:, np.arange(E), cells] = 1.0  # every env revisits its own cell
    b = bonus.make_bonus(
        "recode",
        env,
        E,
        bonus.BonusConfig(
            recode=memory.RecodeConfig(memory_size=16, k=2, eta=1.0), embedding=bonus.EmbeddingConfig("identity")
        ),
    )
    st = b.init(jax.random.PRNGKey(0), env)
    st, r, info = jax.jit(b.intrinsic)(st, _rollout(jnp.asarray(x)), jax.random.PRNGKey(1))
    r = np.asarray(r)
    assert r.shape == (T, E) and np.all(np.isfinite(r)) and np.all(r > 0)
    assert np.all(r[0] == pytest.approx(1 / 1e-3))  # empty memory: N = 0, r = 1/c (reward before insertion)
    assert np.all(r[-1] < 0.5 * r[1])  # repeated cells: counts grow, rewards fall
    assert int(info["recode_atoms"]) <= 16


def test_emm_bonus_resets_at_episode_start(env):
    T, E = 8, 2
    x = np.zeros((T, E, env.obs_dim), np.float32)
    x[..., 3] = 1.0  # the same observation throughout
    first = np.zeros((T, E), bool)
    first[0] = True
    first[5, 0] = True  # env 0 starts a new episode at t = 5; env 1 does not
    cfg = baselines.EpisodicConfig(capacity=10, k=2)
    b = bonus.make_bonus("emm", env, E, bonus.BonusConfig(episodic=cfg, embedding=bonus.EmbeddingConfig("identity")))
    st = b.init(jax.random.PRNGKey(0), env)
    _, r, _ = jax.jit(b.intrinsic)(st, _rollout(jnp.asarray(x), first=jnp.asarray(first)), jax.random.PRNGKey(1))
    r = np.asarray(r)
    assert r.shape == (T, E)
    # at t = 5 env 0's memory holds only the episode's first obs: same situation as at t = 0
    assert r[5, 0] == pytest.approx(r[0, 0], rel=1e-5)
    assert r[5, 1] < r[5, 0]  # env 1 keeps its memory and has seen this obs 6 times


def test_ngu_bonus_is_emm_times_the_clipped_rnd_modulation(env):
    """NGU's reward equals the EMM reward of the same rollout times min(max(1 + (err - mu)/sigma, 1), L), with err
    RND's error before training and mu/sigma the moments of err over the rollout (the state starts empty)."""
    T, E = 6, 3
    x = jax.random.normal(jax.random.PRNGKey(4), (T, E, env.obs_dim))
    first = np.zeros((T, E), bool)
    first[0] = True
    ro = _rollout(x, first=jnp.asarray(first))
    cfg = bonus.BonusConfig(episodic=baselines.EpisodicConfig(capacity=10, k=2),
                            embedding=bonus.EmbeddingConfig("identity"), rnd_minibatches=2,
                            ngu=baselines.NGUConfig(max_modulation=2.0))
    ngu = bonus.make_bonus("ngu", env, E, cfg)
    emm = bonus.make_bonus("emm", env, E, cfg)
    st = ngu.init(jax.random.PRNGKey(0), env)
    st2, r, info = jax.jit(ngu.intrinsic)(st, ro, jax.random.PRNGKey(1))
    _, r_emm, _ = emm.intrinsic(emm.init(jax.random.PRNGKey(0), env), ro, jax.random.PRNGKey(1))
    err = np.asarray(baselines.rnd_reward(cfg.rnd, st["rnd"], x.reshape(T * E, -1))).reshape(T, E).astype(np.float64)
    n0 = 1e-4  # RunningMeanStd's initial count (mean 0, var 1), merged with the rollout's errors
    mu = err.mean() * T * E / (T * E + n0)
    var = (1.0 * n0 + err.var() * T * E + err.mean() ** 2 * n0 * T * E / (T * E + n0)) / (T * E + n0)
    want = np.asarray(r_emm) * np.clip(1 + (err - mu) / np.sqrt(var + 1e-8), 1.0, 2.0)
    np.testing.assert_allclose(np.asarray(r), want, rtol=1e-4)
    assert np.any(want != np.asarray(r_emm))  # the modulation is not trivially 1 on this batch
    # RND's predictor trained on the rollout: the same inputs now have smaller errors
    err2 = np.asarray(baselines.rnd_reward(cfg.rnd, st2["rnd"], x.reshape(T * E, -1)))
    assert err2.mean() < err.mean() and float(info["ngu_modulation"]) >= 1.0


def test_rnd_bonus_learns_repeated_inputs(env):
    T, E = 8, 4
    x = jax.random.normal(jax.random.PRNGKey(3), (T, E, env.obs_dim))
    b = bonus.make_bonus(
        "rnd", env, E, bonus.BonusConfig(rnd=baselines.RNDConfig(learning_rate=1e-3), rnd_epochs=4, rnd_minibatches=2)
    )
    st = b.init(jax.random.PRNGKey(0), env)
    f = jax.jit(b.intrinsic)
    ro = _rollout(x)
    st, r0, _ = f(st, ro, jax.random.PRNGKey(1))
    for i in range(5):
        st, r, _ = f(st, ro, jax.random.PRNGKey(2 + i))
    assert r0.shape == (T, E) and float(r.mean()) < float(r0.mean())


def test_make_bonus_validation(env):
    with pytest.raises(ParameterError, match="unknown"):
        bonus.make_bonus("icm", env, 2)
    assert bonus.make_bonus("none", env, 2) is None
    cart = envs.gymnax_env("CartPole-v1")
    with pytest.raises(ParameterError, match="n_states"):
        bonus.make_bonus("counts", cart, 2)
    with pytest.raises(ParameterError):
        bonus.EmbeddingConfig("pixels")


def test_train_end_to_end_recode_ap(env):
    """One tiny jitted run (two seeds, lax.map): metrics have the documented shapes and stay finite."""
    cfg = ppo.PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, num_minibatches=2, update_epochs=1)
    b = bonus.make_bonus(
        "recode",
        env,
        cfg.num_envs,
        bonus.BonusConfig(
            recode=memory.RecodeConfig(memory_size=16),
            embedding=bonus.EmbeddingConfig("ap", dim=8, ap_hidden=(16,), ap_minibatches=2),
        ),
    )
    _, m = ppo.train_seeds(cfg, env, b, jax.random.split(jax.random.PRNGKey(0), 2))
    assert m["env_steps"].shape == (2, 3) and list(m["env_steps"][0]) == [32, 64, 96]
    assert np.all(m["episodes"][:, -1] == 96 // 4)  # DeepSea-4 episodes last exactly 4 steps
    assert np.all(m["distinct_states"] >= 1) and np.all(m["distinct_states"] <= env.n_states)
    for k in ("loss", "r_int", "ap_loss", "recode_atoms"):
        assert np.all(np.isfinite(m[k])), k


def test_train_end_to_end_ngu(env):
    """NGU proper in a short jitted PPO run (EMM's core is inside it): finite metrics, modulation in [1, L]."""
    cfg = ppo.PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 2, num_minibatches=2, update_epochs=1)
    b = bonus.make_bonus("ngu", env, cfg.num_envs, bonus.BonusConfig(
        embedding=bonus.EmbeddingConfig("random", dim=8), rnd_epochs=1, rnd_minibatches=2))
    _, m = ppo.train_seeds(cfg, env, b, jax.random.split(jax.random.PRNGKey(0), 1))
    assert m["env_steps"].shape == (1, 2)
    for k in ("loss", "r_int", "ngu_episodic"):
        assert np.all(np.isfinite(m[k])), k
    assert np.all(m["ngu_modulation"] >= 1.0) and np.all(m["ngu_modulation"] <= 5.0)


def test_rollout_windows_match_numpy_slicing():
    T, E, d, L = 8, 3, 2, 4
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(T, E, d)).astype(np.float32)
    act = rng.integers(0, 4, (T, E))
    done = rng.random((T, E)) < 0.3
    o, a, v = bonus.rollout_windows(jnp.asarray(obs), jnp.asarray(act), jnp.asarray(done), L)
    assert o.shape == (E * T // L, L, d)
    w = 0
    for e in range(E):  # environment-major, then consecutive windows in time
        for s in range(0, T, L):
            np.testing.assert_array_equal(np.asarray(o[w]), obs[s : s + L, e])
            np.testing.assert_array_equal(np.asarray(a[w]), act[s : s + L, e])
            np.testing.assert_array_equal(np.asarray(v[w]), ~done[s : s + L, e])
            w += 1
    with pytest.raises(ParameterError, match="longer than the rollout"):
        bonus.rollout_windows(jnp.asarray(obs), jnp.asarray(act), jnp.asarray(done), 16)


def test_casm_loss_ignores_actions_across_episode_ends():
    """The masked CE with `valid` equals a NumPy weighted CE over the model's logits."""

    cfg = representations.CASMConfig(
        obs_dim=5,
        n_actions=3,
        embed_dim=4,
        encoder_hidden=(8,),
        model_dim=8,
        n_layers=1,
        n_heads=2,
        seq_len=6,
        classifier_hidden=(8,),
    )
    st = representations.init_casm(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    obs = jnp.asarray(rng.normal(size=(4, 6, 5)), jnp.float32)
    act = jnp.asarray(rng.integers(0, 3, (4, 6)))
    masks = representations.sample_masks(cfg, jax.random.PRNGKey(2), 4)
    valid = jnp.asarray(rng.random((4, 6)) < 0.6)
    casm_loss = jax.jit(representations.casm_loss, static_argnums=0)
    loss, _ = casm_loss(cfg, st.params, obs, act, masks, valid)
    logits = np.asarray(representations.casm_logits(cfg, st.params, obs, act, masks), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    tgt = np.asarray(act)[:, :-1]
    ce = -np.take_along_axis(logp, tgt[..., None], -1)[..., 0]
    w = np.asarray(masks)[:, :-1] * np.asarray(valid)[:, :-1]
    assert float(loss) == pytest.approx((ce * w).sum() / max(w.sum(), 1.0), rel=1e-5)
    full, _ = casm_loss(cfg, st.params, obs, act, masks)
    same, _ = casm_loss(cfg, st.params, obs, act, masks, jnp.ones((4, 6), bool))
    assert float(full) == pytest.approx(float(same), rel=1e-6)


def test_train_end_to_end_recode_casm(env):
    """RECODE on an online CASM embedding inside the jitted PPO loop: finite losses, embedding learns."""
    cfg = ppo.PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, num_minibatches=2, update_epochs=1)
    b = bonus.make_bonus(
        "recode",
        env,
        cfg.num_envs,
        bonus.BonusConfig(
            recode=memory.RecodeConfig(memory_size=16),
            embedding=bonus.EmbeddingConfig(
                "casm", dim=8, ap_hidden=(16,), ap_minibatches=2, casm_seq_len=4, casm_dim=16, casm_heads=2
            ),
        ),
    )
    _, m = ppo.train_seeds(cfg, env, b, jax.random.split(jax.random.PRNGKey(0), 1))
    for k in ("loss", "r_int", "casm_loss", "casm_accuracy", "recode_atoms"):
        assert np.all(np.isfinite(m[k])), k
    assert np.all(m["casm_loss"] > 0)


def test_run_spec_is_hashable_takes_a_mapping_and_owns_no_memory_default():
    from replicate.recode import agents

    spec = agents.RunSpec(ppo={"learning_rate": 3e-4, "gamma": 0.99}, memory_size=64)
    assert spec.ppo == (("learning_rate", 3e-4), ("gamma", 0.99))
    assert hash(spec) == hash(agents.RunSpec(ppo=(("learning_rate", 3e-4), ("gamma", 0.99)), memory_size=64))
    env = envs.deep_sea(4)
    bcfg = spec.bonus_config(env)
    assert bcfg.recode.memory_size == 64 and bcfg.episodic.capacity == 10 and bcfg.episodic.k == 4
    assert agents.RunSpec().bonus_config(env).recode == memory.RecodeConfig()
    assert agents.ppo_config(spec, 4).total_timesteps == 1000 * 4 // 128 * 128 + 128
    with pytest.raises(ParameterError, match="casm_seq_len"):
        agents.RunSpec(embedding="casm", num_steps=12, casm_seq_len=8)
