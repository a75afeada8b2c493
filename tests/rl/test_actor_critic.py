"""The Nature CNN's matmul convolutions against XLA's convolution (``nn.Conv``), same parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen.initializers import constant, orthogonal

from replicate.nn import actor_critic


@pytest.mark.parametrize("size, stride, hw", [(8, 4, 84), (4, 2, 21), (3, 1, 9), (6, 3, 17)])
def test_strided_conv_equals_lax_conv(size, stride, hw):
    rng = np.random.default_rng(size * 100 + hw)
    x = jnp.asarray(rng.normal(size=(2, 3, hw, hw, 5)).astype(np.float32))  # two leading batch axes
    conv = nn.Conv(7, (size, size), (stride, stride), padding="VALID")
    params = conv.init(jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape).astype(np.float32)), params)
    mine = actor_critic.StridedConv(7, size, stride)

    @jax.jit
    def outputs_and_grads(p, x):  # values, and gradients wrt the parameters and the input, of both
        def loss(m):
            return lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
        grads = jax.grad(loss(conv), (0, 1))(p, x), jax.grad(loss(mine), (0, 1))(p, x)
        return conv.apply(p, x), mine.apply(p, x), *grads

    want, got, g_want, g_got = outputs_and_grads(params, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-3),
                 g_got, g_want)


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


def test_nature_actor_critic_equals_the_xla_conv_network():
    """Forward pass of the whole network (the gradients of its convolutions are checked above)."""
    obs = np.random.default_rng(0).integers(0, 256, (6, 84, 84, 4)).astype(np.uint8)
    net, ref = actor_critic.NatureActorCritic(9), _XlaNature(9)
    params = jax.jit(net.init)(jax.random.PRNGKey(3), obs[:1])["params"]
    ref_params = jax.eval_shape(ref.init, jax.random.PRNGKey(3), obs[:1])["params"]  # shapes only (no slow QR)
    for name in ("Conv_0", "Conv_1", "Conv_2"):  # the convolutions: nn.Conv's parameter names and shapes
        assert jax.tree.map(jnp.shape, params[name]) == jax.tree.map(lambda a: a.shape, ref_params[name])
    fc = params["fc"]["kernel"]  # (out, in), rows orthonormal (x sqrt 2)
    assert fc.shape == (512, 3136)
    np.testing.assert_allclose(np.asarray(fc @ fc.T), 2.0 * np.eye(512), atol=1e-4)
    params = jax.tree.map(lambda a: a + 0.01 * jnp.sign(a), params)  # non-zero biases too

    def as_ref(p):  # the same network in the reference's layout
        q = {k: v for k, v in p.items() if k not in ("fc", "policy")}
        return {**q, "Dense_0": {"kernel": p["fc"]["kernel"].T, "bias": p["fc"]["bias"]}, "Dense_1": p["policy"]}

    assert jax.tree.structure(as_ref(params)) == jax.tree.structure(ref_params)
    got = jax.jit(net.apply)({"params": params}, obs)
    want = jax.jit(ref.apply)({"params": as_ref(params)}, obs)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
