"""PPO pieces against plain NumPy references: GAE, the clipped loss, intrinsic normalisation."""

import jax.numpy as jnp
import numpy as np
import pytest

from replicate.params import ParameterError
from replicate.rl import ppo


def gae_numpy(r, v, d, last_v, gamma, lam):
    T = r.shape[0]
    adv = np.zeros_like(r)
    nxt_adv = np.zeros_like(last_v)
    nxt_v = last_v
    for t in reversed(range(T)):
        nonterm = 1.0 - d[t]
        delta = r[t] + gamma * nxt_v * nonterm - v[t]
        nxt_adv = delta + gamma * lam * nonterm * nxt_adv
        adv[t] = nxt_adv
        nxt_v = v[t]
    return adv, adv + v


def test_gae_matches_numpy_loop():
    rng = np.random.default_rng(0)
    T, E = 9, 3
    r = rng.normal(size=(T, E)).astype(np.float32)
    v = rng.normal(size=(T, E)).astype(np.float32)
    d = rng.random((T, E)) < 0.3
    last = rng.normal(size=E).astype(np.float32)
    adv, ret = ppo.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(d), jnp.asarray(last), 0.97, 0.9)
    adv_np, ret_np = gae_numpy(r, v, d.astype(np.float32), last, 0.97, 0.9)
    np.testing.assert_allclose(np.asarray(adv), adv_np, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), ret_np, rtol=1e-5, atol=1e-5)


def test_gae_lambda_one_no_dones_is_discounted_return_minus_value():
    r = np.array([1.0, 0.0, 2.0], np.float32)[:, None]
    v = np.array([0.5, -1.0, 0.25], np.float32)[:, None]
    adv, ret = ppo.gae(jnp.asarray(r), jnp.asarray(v), jnp.zeros((3, 1)), jnp.asarray([3.0]), 0.9, 1.0)
    g = 0.9
    mc = [1 + g * 0 + g**2 * 2 + g**3 * 3, 0 + g * 2 + g**2 * 3, 2 + g * 3]
    np.testing.assert_allclose(np.asarray(ret)[:, 0], mc, rtol=1e-6)


@pytest.mark.parametrize("clip_value,norm_adv", [(False, False), (True, True)])
def test_ppo_loss_matches_numpy(clip_value, norm_adv):
    rng = np.random.default_rng(1)
    B, A = 6, 3
    cfg = ppo.PPOConfig(num_envs=2, num_steps=3, total_timesteps=6, num_minibatches=1, clip_eps=0.2,
                        ent_coef=0.01, vf_coef=0.5, clip_value=clip_value, normalise_advantages=norm_adv)
    logits = rng.normal(size=(B, A)).astype(np.float32)
    old_logits = logits + rng.normal(scale=0.5, size=(B, A)).astype(np.float32)  # ratios beyond the clip
    a = rng.integers(0, A, B)
    lsm = lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))  # noqa: E731
    old_logp = lsm(old_logits)[np.arange(B), a]
    batch = {"action": a, "logp": old_logp, "adv": rng.normal(size=B).astype(np.float32),
             "v_ext": rng.normal(size=B).astype(np.float32), "v_int": rng.normal(size=B).astype(np.float32),
             "ret_ext": rng.normal(size=B).astype(np.float32), "ret_int": rng.normal(size=B).astype(np.float32)}
    v_e = rng.normal(size=B).astype(np.float32)
    v_i = rng.normal(size=B).astype(np.float32)
    total, aux = ppo.ppo_loss(cfg, jnp.asarray(logits), jnp.asarray(v_e), jnp.asarray(v_i),
                              {k: jnp.asarray(x) for k, x in batch.items()}, int_weight=0.7)

    # NumPy transcription of Schulman et al. 2017, Eqs. 7 and 9
    lp = lsm(logits)
    logp = lp[np.arange(B), a]
    ent = -(np.exp(lp) * lp).sum(-1).mean()
    adv = batch["adv"]
    if norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    rho = np.exp(logp - old_logp)
    assert np.any(np.abs(rho - 1) > 0.2)  # the clip is exercised
    pg = -np.mean(np.minimum(rho * adv, np.clip(rho, 0.8, 1.2) * adv))

    def vl(v, old, ret):
        if clip_value:
            vc = old + np.clip(v - old, -0.2, 0.2)
            return 0.5 * np.mean(np.maximum((v - ret) ** 2, (vc - ret) ** 2))
        return 0.5 * np.mean((v - ret) ** 2)

    v_loss = vl(v_e, batch["v_ext"], batch["ret_ext"]) + 0.7 * vl(v_i, batch["v_int"], batch["ret_int"])
    expect = pg + 0.5 * v_loss - 0.01 * ent
    np.testing.assert_allclose(float(aux["pg_loss"]), pg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(aux["v_loss"]), v_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(aux["entropy"]), ent, rtol=1e-5)
    np.testing.assert_allclose(float(total), expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(aux["clipfrac"]), np.mean(np.abs(rho - 1) > 0.2))


def _moments_numpy(xs):
    """Exact mean/var of all values merged with the prior pseudo-observation (mean 0, var 1, count 1e-4)."""
    x = np.concatenate([np.ravel(v) for v in xs]).astype(np.float64)
    c0 = 1e-4
    tot = c0 + x.size
    mean = x.sum() / tot
    m2 = c0 * (1.0 + mean**2) + ((x - mean) ** 2).sum()
    return mean, m2 / tot


def test_intrinsic_return_normalisation_matches_numpy_over_two_rollouts():
    rng = np.random.default_rng(2)
    T, E, g = 5, 4, 0.9
    r1 = rng.random((T, E)).astype(np.float32) * np.arange(1, E + 1)  # envs differ: axis mix-ups show
    r2 = rng.random((T, E)).astype(np.float32)
    st = ppo.int_norm_init(E)
    st, n1 = ppo.normalise_intrinsic(st, jnp.asarray(r1), g, "return")
    st, n2 = ppo.normalise_intrinsic(st, jnp.asarray(r2), g, "return")
    # reference: the discounted return filter runs over time in every env and carries across rollouts
    filt = np.zeros(E)
    rets = []
    for r in (r1, r2):
        out = np.zeros((T, E))
        for t in range(T):
            filt = g * filt + r[t]
            out[t] = filt
        rets.append(out)
    _, var1 = _moments_numpy(rets[:1])
    _, var2 = _moments_numpy(rets)
    np.testing.assert_allclose(np.asarray(n1), r1 / np.sqrt(var1 + 1e-8), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(n2), r2 / np.sqrt(var2 + 1e-8), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(st.filt), filt, rtol=1e-5)


def test_intrinsic_reward_normalisation_and_off():
    rng = np.random.default_rng(3)
    r = rng.random((6, 3)).astype(np.float32) * 5
    st, n = ppo.normalise_intrinsic(ppo.int_norm_init(3), jnp.asarray(r), 0.99, "reward")
    _, var = _moments_numpy([r])
    np.testing.assert_allclose(np.asarray(n), r / np.sqrt(var + 1e-8), rtol=1e-4)
    _, n0 = ppo.normalise_intrinsic(ppo.int_norm_init(3), jnp.asarray(r), 0.99, "none")
    np.testing.assert_array_equal(np.asarray(n0), r)


def test_config_validation():
    with pytest.raises(ParameterError, match="num_minibatches"):
        ppo.PPOConfig(num_envs=3, num_steps=3, total_timesteps=9, num_minibatches=2)
    with pytest.raises(ParameterError, match="int_norm"):
        ppo.PPOConfig(int_norm="rms")
    with pytest.raises(ParameterError, match="below one rollout"):
        ppo.PPOConfig(num_envs=4, num_steps=4, total_timesteps=8)
    with pytest.raises(ParameterError, match="unroll_learn"):
        ppo.PPOConfig(unroll_learn=1)


def test_unrolled_learn_equals_scanned_learn():
    """``unroll_learn`` changes how XLA runs the epochs and minibatches, not what they compute."""
    import types

    import jax
    import optax

    from replicate.nn import actor_critic

    T, E, n_actions, obs_dim = 8, 4, 3, 5
    rng = np.random.default_rng(0)
    traj = types.SimpleNamespace(
        obs=jnp.asarray(rng.normal(size=(T, E, obs_dim)), jnp.float32),
        action=jnp.asarray(rng.integers(0, n_actions, (T, E)), jnp.int32),
        logp=jnp.full((T, E), -np.log(n_actions), jnp.float32),
        v_ext=jnp.asarray(rng.normal(size=(T, E)), jnp.float32),
        v_int=jnp.asarray(rng.normal(size=(T, E)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=(T, E)), jnp.float32),
        done=jnp.asarray(rng.random((T, E)) < 0.1),
    )
    r_int = jnp.asarray(rng.random((T, E)), jnp.float32)
    out = {}
    for unroll in (False, True):
        cfg = ppo.PPOConfig(num_envs=E, num_steps=T, total_timesteps=T * E, update_epochs=2, num_minibatches=2,
                            unroll_learn=unroll)
        net = actor_critic.ActorCritic(n_actions, cfg.hidden, cfg.activation)
        tx = optax.adam(1e-3)
        params = net.init(jax.random.PRNGKey(0), traj.obs[0])
        out[unroll] = jax.jit(lambda p, o: ppo.learn(cfg, net, tx, p, o, traj, r_int, jnp.zeros(E), jnp.zeros(E),
                                                     1.0, 1.0, jax.random.PRNGKey(1)))(params, tx.init(params))
    for a, b in zip(jax.tree.leaves(out[False]), jax.tree.leaves(out[True])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
