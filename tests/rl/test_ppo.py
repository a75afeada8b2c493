"""PPO pieces against plain NumPy references: GAE, the clipped loss, intrinsic normalisation."""

import jax.numpy as jnp
import numpy as np
import pytest

from replicate import tolerances
from replicate.params import ParameterError
from replicate.rl import ppo

U = tolerances.unit_roundoff(np.float32)
ULPS = tolerances.EXP_ULPS  # accuracy assumed of float32 exp and log, in units of U


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


def gae_bound(r, v, d, last_v, gamma, lam):
    """:func:`gae_numpy` in float64 and bounds on how far ppo.gae's float32 evaluation may be from it (first
    order, step by step backwards): each step rounds gamma and gamma lam (u each), their products (u each), the
    sums r + ., . - v and delta + . (u of each result), and carries the next advantage's error times gamma lam;
    the return adds the rounding of adv + v. Returns ``(adv, ret, adv_bound, ret_bound)``."""
    r, v, d, last_v = (np.asarray(x, np.float64) for x in (r, v, d, last_v))
    adv, ret = gae_numpy(r, v, d, last_v, gamma, lam)
    err = np.zeros_like(adv)
    nxt_err, nxt_adv, nxt_v = np.zeros_like(last_v), np.zeros_like(last_v), last_v
    for t in reversed(range(r.shape[0])):
        nonterm = 1.0 - d[t]
        boot = r[t] + gamma * nxt_v * nonterm
        err[t] = (gamma * lam * nonterm * (nxt_err + 2 * U * np.abs(nxt_adv)) + 2 * U * gamma * np.abs(nxt_v) * nonterm
                  + U * (np.abs(boot) + np.abs(boot - v[t]) + np.abs(adv[t])))
        nxt_err, nxt_adv, nxt_v = err[t], adv[t], v[t]
    return adv, ret, err, err + U * np.abs(ret)


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
    _, ret_exact, _, ret_b = gae_bound(r, v, np.zeros((3, 1)), [3.0], 0.9, 1.0)
    np.testing.assert_allclose(ret_exact[:, 0], mc, rtol=1e-14)
    tolerances.assert_within(np.asarray(ret)[:, 0], mc, ret_b[:, 0], "discounted returns")
    with pytest.raises(AssertionError, match="exceed their rounding bound"):  # the last reward one step off
        tolerances.assert_within(np.asarray(ret)[:, 0], [mc[0] - g**3 * 3 + g**2 * 3, *mc[1:]], ret_b[:, 0])


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

    # NumPy transcription of Schulman et al. 2017, Eqs. 7 and 9, in float64, with first-order bounds on how far
    # ppo_loss's float32 evaluation may be from it (sums in any order: gamma_n of the absolute terms)
    x = logits.astype(np.float64)
    lp = lsm(x)
    logp = lp[np.arange(B), a]
    ent = -(np.exp(lp) * lp).sum(-1).mean()
    adv = batch["adv"].astype(np.float64)
    # log_softmax: the shift (u |x - max|), the exps (ULPS u, and the shift's error) and their sum (gamma_A), the
    # log (ULPS u |lse|) and the subtraction (u |lp|)
    shift = x - x.max(-1, keepdims=True)
    lse = np.log(np.exp(shift).sum(-1, keepdims=True))
    lp_err = U * np.abs(shift) + ULPS * U + tolerances.gamma(A) + U * np.abs(shift).max(-1, keepdims=True)
    lp_err = lp_err + ULPS * U * np.abs(lse) + U * np.abs(lp)
    adv_err = np.zeros(B)
    if norm_adv:  # the mean (gamma_B), the deviations (u), the std (var: gamma_B + 3u, halved by sqrt, + u), /
        dev, sd = adv - adv.mean(), adv.std()
        adv = dev / (sd + 1e-8)
        sd_err = ((tolerances.gamma(B) + 3 * U) / 2 + U) * sd
        adv_err = (tolerances.gamma(B) * np.abs(batch["adv"]).mean() + U * np.abs(dev)) / sd + np.abs(adv) * (
            sd_err / sd + 2 * U)
    rho = np.exp(logp - old_logp)
    rho_err = rho * (lp_err[np.arange(B), a] + U * np.abs(logp - old_logp) + ULPS * U)
    assert np.any(np.abs(rho - 1) > 0.2)  # the clip is exercised
    terms = np.minimum(rho * adv, np.clip(rho, 0.8, 1.2) * adv)
    pg = -np.mean(terms)
    r_hi = np.maximum(rho, 1.2)  # min and clip are 1-Lipschitz; the clip's bounds round by u
    pg_err = np.mean(np.abs(adv) * (rho_err + 1.2 * U) + r_hi * adv_err + U * r_hi * np.abs(adv))
    pg_err += tolerances.gamma(B) * np.abs(terms).mean()

    def vl(v, old, ret):
        """The value loss and its bound: squares of differences (3u of each), the clipped one's inner sum."""
        v, old, ret = (np.asarray(t, np.float64) for t in (v, old, ret))
        sq, sq_err = (v - ret) ** 2, 3 * U * (v - ret) ** 2
        if clip_value:
            c = np.clip(v - old, -0.2, 0.2)
            inner = old + c - ret
            inner_err = U * (np.abs(v - old) + 0.2 + np.abs(old + c) + np.abs(inner))
            sq, sq_err = np.maximum(sq, inner**2), np.maximum(sq_err, 2 * np.abs(inner) * inner_err + U * inner**2)
        return 0.5 * np.mean(sq), 0.5 * (np.mean(sq_err) + tolerances.gamma(B) * np.mean(sq))

    vl_e, vl_e_err = vl(v_e, batch["v_ext"], batch["ret_ext"])
    vl_i, vl_i_err = vl(v_i, batch["v_int"], batch["ret_int"])
    v_loss = vl_e + 0.7 * vl_i
    v_err = vl_e_err + 0.7 * vl_i_err + 2 * U * 0.7 * vl_i + U * v_loss  # 0.7 and its product, the sum
    p = np.exp(lp)
    ent_err = (p * (lp_err + ULPS * U) * np.abs(lp) + p * lp_err + U * p * np.abs(lp)).sum(-1).mean()
    ent_err += tolerances.gamma(A) * np.abs(p * lp).sum(-1).mean() + tolerances.gamma(B) * ent
    expect = pg + 0.5 * v_loss - 0.01 * ent
    total_err = (pg_err + 0.5 * v_err + 0.01 * ent_err + U * 0.5 * v_loss + 2 * U * 0.01 * ent
                 + U * abs(pg + 0.5 * v_loss) + U * abs(expect))
    tolerances.assert_within(float(aux["pg_loss"]), pg, pg_err, "pg_loss")
    tolerances.assert_within(float(aux["v_loss"]), v_loss, v_err, "v_loss")
    tolerances.assert_within(float(aux["entropy"]), ent, ent_err, "entropy")
    tolerances.assert_within(float(total), expect, total_err, "total loss")
    with pytest.raises(AssertionError, match="exceed their rounding bound"):  # the ratio left unclipped
        tolerances.assert_within(float(aux["pg_loss"]), -np.mean(rho * adv), pg_err, "pg_loss")
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
    # Unrolled, XLA may fuse and order each of the S = 2 epochs x 2 minibatches = 4 Adam steps' sums differently.
    # No clean bound follows through Adam; to first order every loss, gradient and moment of a step differs by
    # its reductions' relative rounding, gamma_N with N = 5 + 64 + 64 + 3 + 16 the dots along the network and the
    # minibatch mean, and the parameters by lr times that (a flipped update of a near-0 gradient component
    # changes the loss only at second order), accumulating over the steps: rtol = 2 S gamma_N ~ 7e-5.
    rtol = 2 * 4 * tolerances.gamma(5 + 64 + 64 + 3 + 16)
    for a, b in zip(jax.tree.leaves(out[False]), jax.tree.leaves(out[True])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=0)
    # ... far below what one Adam step moves a parameter (~lr = 1e-3), so a skipped or repeated minibatch fails
    assert rtol * max(float(np.abs(x).max()) for x in jax.tree.leaves(out[False][0])) < 1e-3 / 10
