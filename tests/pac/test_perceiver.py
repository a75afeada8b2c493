"""Perceiver actor-critic (paper Sec. 3.2, Fig. 2): shapes, masking, action/value representations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate.pac import perceiver


def test_shapes(tiny, batch):
    cfg, model, params = tiny
    a_idx = perceiver.discretise_actions(batch["action"], cfg.num_action_bins)
    pi, q = jax.jit(model.apply)(params, batch["obs"], batch["obs_mask"], batch["task"], a_idx, batch["action_mask"])
    assert pi.shape == (4, cfg.action_dim, cfg.num_action_bins)
    assert q.shape == (4, cfg.num_value_bins)
    encode = perceiver.PerceiverActorCritic.encode
    z = model.apply(params, batch["obs"], batch["obs_mask"], batch["task"], method=encode)
    assert z.shape == (4, cfg.num_latents, cfg.d_model)
    e, m = model.apply(params, batch["obs"], batch["obs_mask"], batch["task"],
                       method=perceiver.PerceiverActorCritic.tokens)
    assert e.shape == (4, cfg.obs_dim + 1, cfg.d_model) and m.shape == (4, cfg.obs_dim + 1)
    assert bool(m[:, -1].all())  # task token always visible


def test_padded_observations_are_masked(tiny, batch):
    cfg, model, params = tiny
    enc = jax.jit(lambda o, m, t: model.apply(params, o, m, t, method=perceiver.PerceiverActorCritic.encode))
    z1 = enc(batch["obs"], batch["obs_mask"], batch["task"])
    junk = jnp.where(batch["obs_mask"], batch["obs"], 123.0)  # garbage in the padded slots
    z2 = enc(junk, batch["obs_mask"], batch["task"])
    np.testing.assert_allclose(z1, z2, atol=1e-5)
    # A valid observation entry and the task identity do change the encoding.
    z3 = enc(batch["obs"].at[:, 0].add(1.0), batch["obs_mask"], batch["task"])
    z4 = enc(batch["obs"], batch["obs_mask"], 1 - batch["task"])
    assert float(jnp.max(jnp.abs(z1 - z3))) > 1e-4 and float(jnp.max(jnp.abs(z1 - z4))) > 1e-4
    # Unmasking the padded (junk) slots changes it: the mask is what hides them.
    z5 = enc(junk, jnp.ones_like(batch["obs_mask"]), batch["task"])
    assert float(jnp.max(jnp.abs(z1[0] - z5[0]))) > 1e-4


def test_padded_action_dims(tiny, batch):
    cfg, model, params = tiny
    encode = perceiver.PerceiverActorCritic.encode
    z = model.apply(params, batch["obs"], batch["obs_mask"], batch["task"], method=encode)
    pi = model.apply(params, z, batch["action_mask"], method=perceiver.PerceiverActorCritic.policy_logits)
    assert float(jnp.abs(pi[0, 1]).max()) == 0.0  # masked dimension: logits zeroed
    ql = lambda idx: model.apply(params, z, idx, batch["action_mask"], method=perceiver.PerceiverActorCritic.q_logits)  # noqa: E731
    idx = perceiver.discretise_actions(batch["action"], cfg.num_action_bins)
    np.testing.assert_allclose(ql(idx)[0], ql(idx.at[0, 1].set(4))[0], atol=1e-6)  # padded dim ignored
    assert float(jnp.abs(ql(idx)[1] - ql(idx.at[1, 1].set((idx[1, 1] + 2) % 5))[1]).max()) > 1e-5  # valid dim used


def test_batch_independence(tiny, batch):
    cfg, model, params = tiny
    a_idx = perceiver.discretise_actions(batch["action"], cfg.num_action_bins)
    f = jax.jit(model.apply)
    pi, q = f(params, batch["obs"], batch["obs_mask"], batch["task"], a_idx, batch["action_mask"])
    pi1, q1 = f(params, batch["obs"][1:2], batch["obs_mask"][1:2], batch["task"][1:2], a_idx[1:2],
                batch["action_mask"][1:2])
    np.testing.assert_allclose(pi[1:2], pi1, atol=1e-5)
    np.testing.assert_allclose(q[1:2], q1, atol=1e-5)


def test_action_and_value_representation():
    a = jnp.array([-1.0, -0.51, 0.0, 0.49, 1.0, 7.0])
    idx = perceiver.discretise_actions(a, 5)
    np.testing.assert_array_equal(idx, [0, 1, 2, 3, 4, 4])
    np.testing.assert_allclose(perceiver.undiscretise_actions(idx, 5), [-1, -0.5, 0, 0.5, 1, 1])
    atoms = jnp.array([0.0, 1.0, 2.0])
    assert float(perceiver.q_mean(jnp.log(jnp.array([0.25, 0.5, 0.25])), atoms)) == pytest.approx(1.0)


def test_sizes_and_validation():
    counts = []
    for size in ("tiny", "xs", "s"):
        cfg = perceiver.make_config(size, obs_dim=6, action_dim=2, num_tasks=3)
        _, params = perceiver.init_params(cfg, jax.random.PRNGKey(0), abstract=True)
        counts.append(perceiver.param_count(params))
        assert perceiver.flops_per_sample(cfg) > 0
    assert counts == sorted(counts)
    with pytest.raises(ValueError, match="unknown model size"):
        perceiver.make_config("huge", obs_dim=1, action_dim=1, num_tasks=1)
    with pytest.raises(ValueError, match="divisible"):
        perceiver.PerceiverConfig(obs_dim=1, action_dim=1, num_tasks=1, d_model=30, num_heads=4)
