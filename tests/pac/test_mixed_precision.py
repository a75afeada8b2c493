"""bfloat16 compute (PerceiverConfig.compute_dtype): float32 parameters, gradients and optimizer state; outputs
close to the float32 network on the same parameters; a PAC update in bf16 tracks the float32 one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate.pac import perceiver, train
from replicate.pac.losses import PACConfig
from replicate.params import ParameterError

DIMS = dict(obs_dim=5, action_dim=2, num_tasks=2, num_action_bins=7, num_value_bins=11, v_max=10.0)


def _inputs(batch=6, seed=0):
    rng = np.random.default_rng(seed)
    obs = jnp.asarray(rng.normal(size=(batch, DIMS["obs_dim"])), jnp.float32)
    obs_mask = jnp.arange(DIMS["obs_dim"])[None] < jnp.asarray(rng.integers(2, 6, batch))[:, None]
    task = jnp.asarray(rng.integers(0, 2, batch), jnp.int32)
    action_idx = jnp.asarray(rng.integers(0, 7, (batch, 2)), jnp.int32)
    return obs, obs_mask, task, action_idx, jnp.ones((batch, 2), bool)


def _perturbed(params, scale=0.05):
    """Initial heads are zero (constant logits); perturb every parameter so the comparison means something."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def test_unknown_compute_dtype_is_rejected_with_the_choices():
    with pytest.raises(ParameterError, match="bfloat16"):
        perceiver.make_config("tiny", compute_dtype="float16", **DIMS)


def test_bf16_forward_is_close_to_float32_and_returns_float32_logits():
    f32 = perceiver.make_config("xs", **DIMS)
    bf16 = perceiver.make_config("xs", compute_dtype="bfloat16", **DIMS)
    _, params = perceiver.init_params(f32, jax.random.PRNGKey(0))
    _, params_bf16_init = perceiver.init_params(bf16, jax.random.PRNGKey(0))
    # same parameter tree, all float32, whatever the compute dtype
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(params_bf16_init)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params_bf16_init)} == {jnp.dtype(jnp.float32)}
    params = _perturbed(params)
    out32 = jax.jit(perceiver.PerceiverActorCritic(f32).apply)(params, *_inputs())  # jitted: one compilation each
    out16 = jax.jit(perceiver.PerceiverActorCritic(bf16).apply)(params, *_inputs())
    for a, b in zip(out32, out16):
        assert b.dtype == jnp.float32
        rel = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
        assert 0.0 < rel < 0.05, rel  # bf16 has an 8-bit mantissa: different, but within a few percent
    # the bf16 run really computes in bf16: its intermediate activations are bfloat16
    net16 = perceiver.PerceiverActorCritic(bf16)
    z = jax.jit(lambda p, *x: net16.apply(p, *x, method=perceiver.PerceiverActorCritic.encode))(params, *_inputs()[:3])
    assert z.dtype == jnp.bfloat16


def test_bf16_pac_update_keeps_float32_state_and_tracks_the_float32_update():
    rng = np.random.default_rng(1)
    n = 64
    obs = rng.normal(size=(n, DIMS["obs_dim"])).astype(np.float32)
    data = {
        "obs": obs, "next_obs": np.roll(obs, 1, 0), "obs_mask": np.ones((n, DIMS["obs_dim"]), bool),
        "action": np.clip(obs[:, :2], -1, 1), "action_mask": np.ones((n, 2), bool),
        "reward": rng.uniform(size=n).astype(np.float32), "discount": np.full(n, 0.99, np.float32),
        "task": rng.integers(0, 2, n).astype(np.int32),
    }
    data = {k: jnp.asarray(v) for k, v in data.items()}
    pac = PACConfig(num_policy_samples=2, target_update_period=5)
    tc = train.TrainConfig(batch_size=16, learning_rate=1e-3)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        net = perceiver.make_config("tiny", compute_dtype=dtype, **DIMS)
        model, state = train.init_state(net, pac, tc, jax.random.PRNGKey(0))
        fn = train.make_train_fn(model, pac, tc, 40)
        state, metrics = fn(state, data, jax.random.PRNGKey(1))
        leaves = jax.tree_util.tree_leaves((state.params, state.target_params, state.opt_state))
        assert {x.dtype for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves if jnp.issubdtype(x.dtype, jnp.floating))
        losses[dtype] = np.asarray(metrics["loss"])
    # same data, keys and initial parameters: the bf16 loss curve follows the float32 one
    np.testing.assert_allclose(losses["bfloat16"][:5], losses["float32"][:5], rtol=0.05)
    late = abs(losses["bfloat16"][-10:].mean() - losses["float32"][-10:].mean())
    assert late < 0.1 * abs(losses["float32"][:5].mean())
