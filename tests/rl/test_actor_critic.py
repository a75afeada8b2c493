"""The Nature CNN's matmul convolutions against XLA's convolution (``nn.Conv``), same parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen.initializers import constant, orthogonal

from replicate.nn import actor_critic


@pytest.mark.parametrize("size, stride, hw", [(8, 4, 84), (4, 2, 20), (3, 1, 9), (4, 2, 21), (6, 3, 17), (2, 2, 7)])
def test_strided_conv_equals_lax_conv(size, stride, hw):
    rng = np.random.default_rng(size * 100 + hw)
    x = jnp.asarray(rng.normal(size=(2, 3, hw, hw, 5)).astype(np.float32))  # two leading batch axes
    conv = nn.Conv(7, (size, size), (stride, stride), padding="VALID")
    params = conv.init(jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape).astype(np.float32)), params)
    want = conv.apply(params, x)
    got = actor_critic.StridedConv(7, size, stride).apply(params, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


def test_strided_conv_rejects_a_stride_not_dividing_the_kernel():
    with pytest.raises(ValueError, match="multiple of the stride"):
        actor_critic.strided_conv(jnp.zeros((1, 9, 9, 2)), jnp.zeros((3, 3, 2, 4)), jnp.zeros(4), 2)


class _XlaNature(nn.Module):
    """The Nature CNN written with ``nn.Conv`` (the reference)."""

    n_actions: int

    @nn.compact
    def __call__(self, x):
        x = jnp.asarray(x, jnp.float32) / 255.0
        init = orthogonal(np.sqrt(2))
        for f, k, s in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            x = nn.relu(nn.Conv(f, (k, k), (s, s), padding="VALID", kernel_init=init, bias_init=constant(0.0))(x))
        x = nn.relu(nn.Dense(512, kernel_init=init, bias_init=constant(0.0))(x.reshape(x.shape[:-3] + (-1,))))
        logits = nn.Dense(self.n_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(x)
        v_ext = nn.Dense(1, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="v_ext")(x)[..., 0]
        v_int = nn.Dense(1, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="v_int")(x)[..., 0]
        return logits, v_ext, v_int


def test_nature_actor_critic_equals_the_xla_conv_network_with_the_same_init():
    obs = np.random.default_rng(0).integers(0, 256, (6, 84, 84, 4)).astype(np.uint8)
    net, ref = actor_critic.NatureActorCritic(9), _XlaNature(9)
    params = net.init(jax.random.PRNGKey(3), obs[:1])["params"]
    ref_params = ref.init(jax.random.PRNGKey(3), obs[:1])["params"]
    for name in ("Conv_0", "Conv_1", "Conv_2"):  # the convolutions: nn.Conv's parameters and initialisation
        jax.tree.map(np.testing.assert_array_equal, params[name], ref_params[name])
    fc = params["fc"]["kernel"]  # (out, in), rows orthonormal (x sqrt 2)
    assert fc.shape == (512, 3136)
    np.testing.assert_allclose(np.asarray(fc @ fc.T), 2.0 * np.eye(512), atol=1e-4)
    params = jax.tree.map(lambda a: a + 0.01 * jnp.sign(a), params)  # non-zero biases too

    def as_ref(p):  # the same network in the reference's layout
        q = {k: v for k, v in p.items() if k not in ("fc", "policy")}
        return {**q, "Dense_0": {"kernel": p["fc"]["kernel"].T, "bias": p["fc"]["bias"]}, "Dense_1": p["policy"]}

    assert jax.tree.structure(as_ref(params)) == jax.tree.structure(ref_params)
    for got, want in zip(net.apply({"params": params}, obs), ref.apply({"params": as_ref(params)}, obs)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)

    g = jax.grad(lambda p: sum(jnp.sum(jnp.sin(t)) for t in net.apply({"params": p}, obs)))(params)
    g_ref = jax.grad(lambda p: sum(jnp.sum(jnp.sin(t)) for t in ref.apply({"params": p}, obs)))(as_ref(params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4),
                 as_ref(g), g_ref)
