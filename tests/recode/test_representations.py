"""AP and CASM: they learn the inverse dynamics of a grid world, CASM masks as specified."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import tolerances
from replicate.recode import representations
from replicate.recode.streams import GridStream


@pytest.fixture(scope="module")
def grid():
    gs = GridStream(size=6, n_actors=8, episode_len=16, n_episodes=60, n_phases=1, bias=0.0, embed_dim=16, noise=0.05)
    cells, acts = gs.trajectories()
    obs = gs.observe(cells, np.random.default_rng(0))  # (E, T+1, A, d)
    return gs, cells, acts, obs


def _not_wall(cells, acts, size):
    """Transitions whose action changed the cell (a wall bump makes the action ambiguous)."""
    return cells[:, 1:] != cells[:, :-1]


def test_ap_learns_inverse_dynamics(grid):
    gs, cells, acts, obs = grid
    mask = _not_wall(cells, acts, gs.size)
    o, o2, a = obs[:, :-1][mask], obs[:, 1:][mask], acts[mask]
    cfg = representations.APConfig(
        obs_dim=16, n_actions=4, embed_dim=8, hidden=(64,), classifier_hidden=(64,), learning_rate=3e-3
    )
    st = representations.init_ap(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    for _ in range(400):
        i = rng.integers(0, len(a), 128)
        st, m = representations.checked_ap_train_step(cfg, st, o[i], a[i], o2[i])
    logits = representations.APModel(cfg).apply(st.params, jnp.asarray(o), jnp.asarray(o2))
    assert float(jnp.mean(jnp.argmax(logits, -1) == a)) > 0.9  # chance: 0.25
    assert representations.ap_embed(cfg, st.params, jnp.asarray(o[:5])).shape == (5, 8)
    with pytest.raises(ValueError, match="feature size"):
        representations.checked_ap_train_step(cfg, st, o[:4, :3], a[:4], o2[:4, :3])


def test_casm_masks_and_causality():
    cfg = representations.CASMConfig(
        obs_dim=5, n_actions=4, embed_dim=8, model_dim=32, n_layers=1, n_heads=2, seq_len=6
    )
    st = representations.init_casm(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(1, 6, 5)).astype(np.float32))
    act = jnp.asarray(rng.integers(0, 4, size=(1, 6)))
    masks = jnp.array([[True, False, True, True, False, True]])
    base = representations.casm_logits(cfg, st.params, obs, act, masks)
    # a masked action's true value is invisible: changing a_0 (masked) changes no logits
    assert np.allclose(
        base, representations.casm_logits(cfg, st.params, obs, act.at[0, 0].set((act[0, 0] + 1) % 4), masks), atol=1e-6
    )
    # a given action is visible: changing a_1 (given) changes the prediction of later actions
    assert not np.allclose(
        base[0, 2:],
        representations.casm_logits(cfg, st.params, obs, act.at[0, 1].set((act[0, 1] + 1) % 4), masks)[0, 2:],
        atol=1e-6,
    )
    # a masked observation is invisible (o_1 is masked since a_1 is given)
    assert np.allclose(base, representations.casm_logits(cfg, st.params, obs.at[0, 1].add(1.0), act, masks), atol=1e-6)
    # causal: logits for a_0 (from slots of o_0, o_1) do not depend on o_3
    assert np.allclose(
        base[0, 0], representations.casm_logits(cfg, st.params, obs.at[0, 3].add(1.0), act, masks)[0, 0], atol=1e-6
    )
    m = representations.sample_masks(cfg, jax.random.PRNGKey(1), 1000)
    assert 0.45 < float(m.mean()) < 0.55


def test_casm_learns_masked_actions(grid):
    gs, cells, acts, obs = grid
    T = 8
    o = np.transpose(obs[:, :T], (0, 2, 1, 3)).reshape(-1, T, 16)
    a = np.transpose(acts[:, :T], (0, 2, 1)).reshape(-1, T)
    moved = np.transpose((cells[:, 1 : T + 1] != cells[:, :T]), (0, 2, 1)).reshape(-1, T)
    cfg = representations.CASMConfig(
        obs_dim=16,
        n_actions=4,
        embed_dim=8,
        model_dim=32,
        n_layers=1,
        n_heads=2,
        seq_len=T,
        learning_rate=2e-3,
        n_masks=2,
    )
    st = representations.init_casm(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(2)
    key = jax.random.PRNGKey(3)
    for _ in range(300):
        key, sk = jax.random.split(key)
        i = rng.integers(0, len(a), 32)
        st, m = representations.checked_casm_train_step(cfg, st, o[i], a[i], sk)
    masks = jnp.ones((len(a), T), bool)  # every action masked, every observation given
    pred = np.asarray(
        jnp.argmax(representations.casm_logits(cfg, st.params, jnp.asarray(o), jnp.asarray(a), masks), -1)
    )
    ok = moved[:, :-1]
    assert np.mean(pred[ok] == a[:, :-1][ok]) > 0.85  # chance: 0.25
    assert representations.casm_embed(cfg, st.params, jnp.asarray(o[0])).shape == (T, 8)


def test_pure_train_steps_trace_inside_scan_and_equal_the_checked_steps():
    rng = np.random.default_rng(5)
    apc = representations.APConfig(obs_dim=4, n_actions=3, embed_dim=2, hidden=(8,), classifier_hidden=(8,))
    o = rng.normal(size=(3, 6, 4)).astype(np.float32)
    a = rng.integers(0, 3, size=(3, 6)).astype(np.int32)
    st0 = representations.init_ap(apc, jax.random.PRNGKey(0))
    st_scan, m_scan = jax.lax.scan(
        lambda s, x: representations.ap_train_step(apc, s, *x),
        st0,
        (jnp.asarray(o), jnp.asarray(a), jnp.asarray(o[:, ::-1])),
    )
    st = st0
    for t in range(3):
        st, m = representations.checked_ap_train_step(apc, st, o[t], a[t], o[t, ::-1])
        if t == 0:
            st_1 = st  # after the first step
    # Inside scan XLA may fuse and order a step's sums differently, so the third step's losses agree to rounding
    # only. No clean bound follows through Adam; to first order each evaluation of the loss is within gamma_N of
    # exact (N the reductions along the network and the batch: 4 + 8 + 4 + 8 + 3 + 6 for AP), and the rounding of
    # the T - 1 earlier steps moves the parameters by lr times a relative gradient error of that size (a
    # flipped update of a near-0 gradient component is second order in the loss): rtol = 2 T gamma_N ...
    rtol = 2 * 3 * tolerances.gamma(4 + 8 + 4 + 8 + 3 + 6)
    np.testing.assert_allclose(np.asarray(m["loss"]), np.asarray(m_scan["loss"][-1]), rtol=rtol)
    # ... below what leaving out the second step's update changes (1e-4 relative at AP's lr = 5e-4)
    _, skipped = representations.checked_ap_train_step(apc, st_1, o[2], a[2], o[2, ::-1])
    assert abs(float(skipped["loss"]) / float(m["loss"]) - 1) > 3 * rtol

    csc = representations.CASMConfig(
        obs_dim=4, n_actions=3, embed_dim=2, model_dim=8, n_layers=1, n_heads=2, seq_len=3, n_masks=1
    )
    cs0 = representations.init_casm(csc, jax.random.PRNGKey(1))
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    obs_w, act_w = o.reshape(3, 2, 3, 4), a.reshape(3, 2, 3)
    cs_scan, cm_scan = jax.lax.scan(
        lambda s, x: representations.casm_train_step(csc, s, *x), cs0, (jnp.asarray(obs_w), jnp.asarray(act_w), keys)
    )
    cs = cs0
    for t in range(3):
        cs, cm = representations.checked_casm_train_step(csc, cs, obs_w[t], act_w[t], keys[t])
        if t == 0:
            cs_1 = cs
    # As for AP, with N = 4 + 3 * 8 + 4 + 6 + 8 + 8 + 3 + 6 (embedding, q/k/v, scores over the head dimension,
    # attention over the 2 * 3 tokens, output and MLP, logits, the loss's sum); the second step's update moves
    # this loss by ~1e-2
    rtol = 2 * 3 * tolerances.gamma(4 + 3 * 8 + 4 + 6 + 8 + 8 + 3 + 6)
    np.testing.assert_allclose(np.asarray(cm["loss"]), np.asarray(cm_scan["loss"][-1]), rtol=rtol)
    _, skipped = representations.checked_casm_train_step(csc, cs_1, obs_w[2], act_w[2], keys[2])
    assert abs(float(skipped["loss"]) / float(cm["loss"]) - 1) > 3 * rtol
    # casm_loss is the loss the step minimises: at the masks it draws, it reproduces the reported loss. The key is
    # the first whose masks hide an action that carries loss (a_t, t < T - 1), so the comparison is not 0 == 0.
    mkey = next(k for k in jax.random.split(jax.random.PRNGKey(3), 64)
                if bool(representations.sample_masks(csc, k, 2)[:, :-1].any()))
    masks = representations.sample_masks(csc, mkey, 2)
    loss, _ = representations.casm_loss(csc, cs0.params, jnp.asarray(obs_w[0]), jnp.asarray(act_w[0]), masks)
    assert float(loss) > 0.1  # cross-entropy of an untrained 3-way classifier: ~log 3
    # same function, same inputs, same masks: jit vs eager may only reorder the few sums (N <= 40 terms)
    np.testing.assert_allclose(float(loss), float(_casm_step_loss(csc, cs0, obs_w[0], act_w[0], mkey)),
                               rtol=2 * tolerances.gamma(4 + 3 * 8 + 4 + 6 + 8 + 8 + 3 + 6))
    with pytest.raises(ValueError, match="expected obs"):
        representations.checked_casm_train_step(csc, cs0, obs_w[0, :, :2], act_w[0, :, :2], keys[0])


def _casm_step_loss(cfg, state, obs, actions, key):
    return representations.casm_train_step(cfg, state, jnp.asarray(obs), jnp.asarray(actions), key)[1]["loss"]
