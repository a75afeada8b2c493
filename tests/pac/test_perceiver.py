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
        assert perceiver.train_flops_per_sample(cfg, method="BC") > 0
    assert counts == sorted(counts)
    with pytest.raises(ValueError, match="unknown model size"):
        perceiver.make_config("huge", obs_dim=1, action_dim=1, num_tasks=1)
    with pytest.raises(ValueError, match="divisible"):
        perceiver.PerceiverConfig(obs_dim=1, action_dim=1, num_tasks=1, d_model=30, num_heads=4)


def test_train_flops_hand_count():
    """A hand count for a tiny config (d=4, 2 latents, 3 obs dims -> 4 tokens, 1 action dim, 3 bins, 5 atoms)."""
    from replicate.pac.losses import PACConfig

    cfg = perceiver.PerceiverConfig(obs_dim=3, action_dim=1, num_tasks=2, d_model=4, num_latents=2, num_heads=1,
                                    num_self_attention=1, mlp_ratio=2, num_action_bins=3, num_value_bins=5)
    d, h = 4, 8
    # encoder cross-attention: q,o proj 2 latents; k,v proj 4 tokens; scores + sum 2x4; MLP 2 latents.
    enc_x = 2 * (2 * 2 * d * d + 2 * 4 * d * d + 2 * 2 * 4 * d + 2 * 2 * d * h)  # 768
    enc_s = 2 * (2 * 2 * d * d + 2 * 2 * d * d + 2 * 2 * 2 * d + 2 * 2 * d * h)  # 576
    pol = 2 * (2 * 1 * d * d + 2 * 2 * d * d + 2 * 1 * 2 * d + 2 * 1 * d * h) + 2 * 1 * d * 3  # 376
    critic = 2 * 1 * 3 * d + (2 * (2 * d * d + 4 * d * d + 4 * d + 2 * d * h)) + 2 * d * 5  # 24 + 352 + 40
    assert (enc_x + enc_s, pol, critic) == (1344, 376, 416)
    assert perceiver.forward_flops(cfg) == {"encoder": 1344.0, "policy": 376.0, "critic": 416.0}
    m = 3
    bc = 3 * (1344 + 376)
    pac = 3 * (1344 + 376 + 416) + 2 * (1344 + 376) + 2 * m * 416 + 2 * 5 * 5
    assert perceiver.train_flops_per_sample(cfg, method="BC") == bc
    assert perceiver.train_flops_per_sample(cfg, PACConfig(num_policy_samples=m), "PAC") == pac
    with pytest.raises(ValueError, match="method"):
        perceiver.train_flops_per_sample(cfg, PACConfig(), "BC+Q")
    with pytest.raises(ValueError, match="pac_cfg"):
        perceiver.train_flops_per_sample(cfg, None, "PAC")


@pytest.mark.parametrize("method", ["BC", "PAC"])
def test_train_flops_match_xla_cost_analysis(method):
    """The count covers what the compiled loss + gradient computes: XLA's FLOPs (which also count the
    element-wise work we leave out: LayerNorm, softmax, GELU, the C51 weights) lie within [1.0, 1.2] x ours."""
    from replicate.pac import losses

    b = 64
    cfg = perceiver.make_config("s", obs_dim=24, action_dim=6, num_tasks=2, num_action_bins=21, num_value_bins=51)
    model, params = perceiver.init_params(cfg, jax.random.PRNGKey(0))
    pac = losses.PACConfig(num_policy_samples=8)
    k = jax.random.split(jax.random.PRNGKey(1), 4)
    batch = dict(obs=jax.random.normal(k[0], (b, 24)), next_obs=jax.random.normal(k[1], (b, 24)),
                 obs_mask=jnp.ones((b, 24), bool), task=jnp.zeros((b,), jnp.int32),
                 action=jax.random.uniform(k[2], (b, 6), minval=-1, maxval=1), action_mask=jnp.ones((b, 6), bool),
                 reward=jax.random.uniform(k[3], (b,)), discount=jnp.ones((b,)))
    if method == "BC":
        fn = jax.jit(jax.value_and_grad(lambda p, d: losses.bc_loss(p, d, model)))
        lowered = fn.lower(params, batch)
    else:
        fn = jax.jit(jax.value_and_grad(lambda p, lt, t, d, key: losses.pac_loss(p, t, lt, d, key, model, pac)[0],
                                        argnums=(0, 1)))
        lowered = fn.lower(params, jnp.float32(0.0), params, batch, jax.random.PRNGKey(2))
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if not cost or "flops" not in cost:
        pytest.skip("XLA cost analysis gives no FLOP count on this backend")
    ratio = cost["flops"] / (perceiver.train_flops_per_sample(cfg, pac, method) * b)
    assert 1.0 <= ratio <= 1.2, ratio


def test_size_table_in_docstring_is_computed():
    """The docstring's table equals :func:`perceiver.size_table`; the smallest preset's count (from abstract
    shapes) equals the parameters of a real initialisation."""
    table = perceiver.size_table()
    doc = {line.split()[0]: int(line.split()[-1].replace(",", "")) for line in perceiver.__doc__.splitlines()
           if line.split() and line.split()[0] in perceiver.SIZES}
    assert doc == {row["size"]: row["params"] for row in table}
    assert [row["params"] for row in table] == sorted(row["params"] for row in table)
    assert max(doc.values()) > 1e7  # up to tens of millions (the paper's smallest models)
    for row in table[:1]:  # one real initialisation checks the abstract path (each costs a compilation)
        cfg = perceiver.make_config(row["size"], obs_dim=24, action_dim=6, num_tasks=4, num_action_bins=21)
        assert perceiver.param_count(perceiver.init_params(cfg, jax.random.PRNGKey(0))[1]) == row["params"]
