"""PAC objective (paper Sec. 3.1) against hand-computed values and a NumPy transcription."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import tolerances
from replicate.pac import losses
from replicate.pac.perceiver import PerceiverActorCritic, discretise_actions


def test_pieces_hand_computed():
    # log pi: uniform logits over 4 bins, second dimension masked -> log(1/4).
    lp = losses.action_log_prob(jnp.zeros((1, 2, 4)), jnp.array([[1, 3]]), jnp.array([[True, False]]))
    assert float(lp[0]) == pytest.approx(math.log(0.25), abs=1e-6)
    # C51 projection on atoms (0, 1, 2), r = 0.5, gamma = 0.5.
    atoms = jnp.array([0.0, 1.0, 2.0])
    nxt = jnp.eye(3)
    got = losses.categorical_projection(nxt, jnp.full(3, 0.5), jnp.ones(3), atoms, 0.5)
    np.testing.assert_allclose(got, [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5]], atol=1e-6)
    got0 = losses.categorical_projection(nxt, jnp.full(3, 0.5), jnp.zeros(3), atoms, 0.5)  # terminal: all mass at r
    np.testing.assert_allclose(got0, [[0.5, 0.5, 0.0]] * 3, atol=1e-6)
    # Policy loss: log pi(a|s) = -1, samples -2, -3 with Q = 1, 0, eta = 1, alpha = 0.5.
    w = losses.improvement_weights(jnp.array([[1.0, 0.0]]), 1.0)
    e = math.e
    # float32 softmax of (1, 0) against float64: each weight's exp (ULPS u), their sum (ULPS u + u) and the
    # division (u) give a relative error <= (2 ULPS + 2) u
    u, ulps = tolerances.unit_roundoff(np.float32), tolerances.EXP_ULPS
    np.testing.assert_allclose(w, [[e / (e + 1), 1 / (e + 1)]], rtol=(2 * ulps + 2) * u, atol=0)
    pl = losses.policy_loss(jnp.array([-1.0]), jnp.array([[-2.0, -3.0]]), w, 0.5)
    expect = -(0.5 * (-2 * e / (e + 1) - 3 / (e + 1)) + 0.5 * -1.0)
    assert float(pl[0]) == pytest.approx(expect, rel=1e-6)  # = 1.63447
    assert float(pl[0]) == pytest.approx(1.634471, abs=1e-5)
    # Temperature dual: 0.1 + log((e + 1) / 2).
    td = losses.temperature_dual(jnp.array([[1.0, 0.0]]), jnp.asarray(1.0), 0.1)
    assert float(td) == pytest.approx(0.1 + math.log((e + 1) / 2), rel=1e-6)
    # Critic cross-entropy.
    ce = losses.critic_loss(jnp.zeros((1, 4)), jnp.array([[0.5, 0.5, 0.0, 0.0]]))
    assert float(ce[0]) == pytest.approx(math.log(4.0), rel=1e-6)


def _np_project(p, r, d, atoms, gamma):
    """Textbook C51 projection loop (Bellemare et al. 2017, Alg. 1)."""
    out = np.zeros_like(p)
    dz = atoms[1] - atoms[0]
    for b in range(p.shape[0]):
        for j, zj in enumerate(atoms):
            tz = np.clip(r[b] + gamma * d[b] * zj, atoms[0], atoms[-1])
            pos = (tz - atoms[0]) / dz
            lo, hi = int(np.floor(pos)), int(np.ceil(pos))
            if lo == hi:
                out[b, lo] += p[b, j]
            else:
                out[b, lo] += p[b, j] * (hi - pos)
                out[b, hi] += p[b, j] * (pos - lo)
    return out


def _softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def test_full_loss_matches_numpy(tiny, batch):
    cfg, model, params = tiny
    key = jax.random.PRNGKey(3)
    # Target differs from online, as after some training.
    target = jax.tree_util.tree_map(lambda x: x * 0.9, params)
    pcfg = losses.PACConfig(alpha=0.3, gamma=0.9, num_policy_samples=3, learn_temperature=False, init_temperature=0.7)
    total, aux = jax.jit(lambda p, t: losses.pac_loss(p, t, jnp.zeros(()), batch, key, model, pcfg))(params, target)

    b = {k: np.asarray(v) for k, v in batch.items()}
    atoms = np.asarray(cfg.value_atoms)
    apply = jax.jit(model.apply, static_argnames="method")
    mdl = lambda p, *a, method: np.asarray(apply(p, *a, method=method))  # noqa: E731
    enc = PerceiverActorCritic.encode
    z = apply(params, batch["obs"], batch["obs_mask"], batch["task"], method=enc)
    zt = apply(target, batch["obs"], batch["obs_mask"], batch["task"], method=enc)
    znt = apply(target, batch["next_obs"], batch["obs_mask"], batch["task"], method=enc)
    logits = mdl(params, z, batch["action_mask"], method=PerceiverActorCritic.policy_logits)
    a_idx = np.asarray(discretise_actions(batch["action"], cfg.num_action_bins))
    samples = np.asarray(aux["_samples"])
    amask = b["action_mask"]
    logsm = np.log(_softmax(logits))

    def logp(idx):  # idx (B, A)
        return np.array([sum(logsm[i, d, idx[i, d]] for d in range(idx.shape[1]) if amask[i, d])
                         for i in range(idx.shape[0])])

    # Policy term.
    qs = np.zeros((4, 3))
    for j in range(3):
        ql = mdl(target, zt, samples[:, j], batch["action_mask"], method=PerceiverActorCritic.q_logits)
        qs[:, j] = (_softmax(ql) * atoms).sum(-1)
    np.testing.assert_allclose(aux["_q_samples"], qs, rtol=1e-4, atol=1e-5)
    w = _softmax(qs / 0.7)
    improve = sum(w[:, j] * logp(samples[:, j]) for j in range(3))
    l_pi = np.mean(-(0.7 * improve + 0.3 * logp(a_idx)))
    # Critic term: bootstrap samples come from the target policy on s' (same key split as the loss).
    _, k_next = jax.random.split(key)
    pn = apply(target, znt, batch["action_mask"], method=PerceiverActorCritic.policy_logits)
    nxt = np.asarray(jnp.swapaxes(jax.random.categorical(k_next, pn, axis=-1, shape=(3, 4, 2)), 0, 1))
    probs = np.mean([_softmax(mdl(target, znt, nxt[:, j], batch["action_mask"], method=PerceiverActorCritic.q_logits))
                     for j in range(3)], axis=0)
    tgt = _np_project(probs, b["reward"], b["discount"], atoms, 0.9)
    np.testing.assert_allclose(aux["_target_probs"], tgt, atol=1e-5)
    ql = mdl(params, z, a_idx, batch["action_mask"], method=PerceiverActorCritic.q_logits)
    l_q = np.mean(-(tgt * np.log(_softmax(ql))).sum(-1))
    assert float(aux["policy_loss"]) == pytest.approx(l_pi, rel=1e-4)
    assert float(aux["critic_loss"]) == pytest.approx(l_q, rel=1e-4)
    assert float(total) == pytest.approx(l_pi + l_q, rel=1e-4)


def _grads(fn, params):
    return jax.jit(jax.grad(fn))(params)


def _policy_only(tree):
    return {k: v for k, v in tree["params"].items() if k.startswith("policy")}


def test_alpha_one_is_behaviour_cloning(tiny, batch):
    cfg, model, params = tiny
    key = jax.random.PRNGKey(5)
    pcfg = losses.PACConfig(learn_temperature=False, num_policy_samples=2)
    # alpha and the critic weight are traced: one compilation serves BC, BC+Q and PAC.
    loss = jax.jit(lambda p, a, c: losses.pac_loss(p, params, jnp.zeros(()), batch, key, model, pcfg, a, c)[0])
    grad = jax.jit(jax.grad(
        lambda p, a, c: losses.pac_loss(p, params, jnp.zeros(()), batch, key, model, pcfg, a, c)[0]))
    bc = jax.jit(lambda p: losses.bc_loss(p, batch, model))(params)  # jitted: one compilation, not op by op
    g_bc = jax.jit(jax.grad(lambda p: losses.bc_loss(p, batch, model)))(params)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # noqa: E731
    # alpha = 1 and no critic: the whole loss and gradient are BC's.
    assert float(loss(params, 1.0, 0.0)) == pytest.approx(float(bc), rel=1e-6)
    jax.tree_util.tree_map(close, grad(params, 1.0, 0.0), g_bc)
    # The static-config path gives the same (PACConfig(alpha=1, critic_weight=0)).
    pure = losses.PACConfig(alpha=1.0, critic_weight=0.0, learn_temperature=False, num_policy_samples=2)
    static = jax.jit(lambda p: losses.pac_loss(p, params, jnp.zeros(()), batch, key, model, pure)[0])
    assert float(static(params)) == pytest.approx(float(bc), rel=1e-5)
    # alpha = 1 with the critic trained ("BC+Q"): the policy decoder's gradient is still BC's.
    jax.tree_util.tree_map(close, _policy_only(grad(params, 1.0, 1.0)), _policy_only(g_bc))
    # alpha < 1 changes the policy gradient (the Q term is active).
    g_rl = grad(params, 0.5, 0.0)
    leaves = zip(jax.tree_util.tree_leaves(_policy_only(g_rl)), jax.tree_util.tree_leaves(_policy_only(g_bc)))
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in leaves)
    assert diff > 1e-4


def test_target_network_gets_no_gradient_and_fixes_the_td_target(tiny, batch):
    cfg, model, params = tiny
    key = jax.random.PRNGKey(7)
    pcfg = losses.PACConfig(num_policy_samples=2)
    f = jax.jit(lambda p, t: losses.pac_loss(p, t, jnp.zeros(()), batch, key, model, pcfg))
    g_t = jax.jit(jax.grad(lambda t: f(params, t)[0]))(params)
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree_util.tree_leaves(g_t))
    # The TD target and the improvement samples depend only on the target parameters.
    moved = jax.tree_util.tree_map(lambda x: x + 0.1, params)
    _, a1 = f(params, params)
    _, a2 = f(moved, params)
    np.testing.assert_allclose(a1["_target_probs"], a2["_target_probs"], atol=1e-6)
    np.testing.assert_array_equal(a1["_samples"], a2["_samples"])
    assert float(a1["critic_loss"]) != pytest.approx(float(a2["critic_loss"]))


def test_temperature_gradient_direction():
    # d/d eta of the dual at large eta is ~ epsilon - KL > 0 for spread-out Q: eta shrinks; ~ epsilon for flat Q.
    q = jnp.array([[0.0, 0.0, 0.0]])
    g = jax.grad(lambda e: losses.temperature_dual(q, e, 0.1))(1.0)
    assert float(g) == pytest.approx(0.1, rel=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="alpha"):
        losses.PACConfig(alpha=1.5)
    with pytest.raises(ValueError, match="gamma"):
        losses.PACConfig(gamma=1.0)
