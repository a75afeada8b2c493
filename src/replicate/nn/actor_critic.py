"""Actor-critic networks for PPO with two value heads (extrinsic and intrinsic, RND: Burda et al. 2019, Sec. 2.3).

Both return ``(logits, v_ext, v_int)``; initialisation as in CleanRL / PureJaxRL (orthogonal, zero biases).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant, orthogonal


class ActorCritic(nn.Module):
    """Actor MLP -> logits; critic MLP -> (v_ext, v_int) from two linear heads (separate trunks)."""

    n_actions: int
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        act = nn.tanh if self.activation == "tanh" else nn.relu
        a = x
        for h in self.hidden:
            a = act(nn.Dense(h, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(a))
        logits = nn.Dense(self.n_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(a)
        c = x
        for h in self.hidden:
            c = act(nn.Dense(h, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(c))
        v_ext = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0), name="v_ext")(c)[..., 0]
        v_int = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0), name="v_int")(c)[..., 0]
        return logits, v_ext, v_int


def strided_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int) -> jax.Array:
    """A VALID 2-D convolution (NHWC input, HWIO kernel, square stride dividing the kernel size) computed as
    space-to-depth + a sum of matrix products; equal to ``lax.conv_general_dilated`` up to rounding.

    Space-to-depth by ``stride`` turns the strided convolution into a stride-1 one with a ``kernel / stride``
    square kernel on ``stride^2`` times the channels; that is a sum over the ``(kernel / stride)^2`` kernel
    offsets of one matrix product each (a shifted slice of the input times that offset's ``(channels, out)``
    matrix). XLA:CPU runs the Nature CNN this way ~1.5-2x faster than with its convolution, forward and backward
    at the agent's batch sizes (measured on a 2-core CPU; benchmarks/ppo_throughput.py)."""
    kh, kw, c, o = kernel.shape
    if kh != kw or kh % stride:
        raise ValueError(f"strided_conv needs a square kernel whose size is a multiple of the stride; got kernel "
                         f"{kh}x{kw}, stride {stride}")
    *lead, h, w, cx = x.shape
    if cx != c:
        raise ValueError(f"strided_conv: input has {cx} channels, kernel expects {c}")
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    x = x[..., : (ho - 1) * stride + kh, : (wo - 1) * stride + kw, :]  # the rows/columns the output reads
    q = kh // stride
    if stride > 1:
        hs, ws = x.shape[-3] // stride, x.shape[-2] // stride
        x = x.reshape(*lead, hs, stride, ws, stride, c)
        x = jnp.moveaxis(x, -4, -3).reshape(*lead, hs, ws, stride * stride * c)  # (.., hs, ws, (a, b, c))
        kernel = kernel.reshape(q, stride, q, stride, c, o).transpose(0, 2, 1, 3, 4, 5)
    kernel = kernel.reshape(q * q, stride * stride * c, o)
    out = sum(x[..., i:i + ho, j:j + wo, :] @ kernel[i * q + j] for i in range(q) for j in range(q))
    return out + bias


class StridedConv(nn.Module):
    """``nn.Conv(features, (size, size), (stride, stride), padding="VALID")`` with the same parameters (``kernel``
    HWIO, ``bias``), computed by :func:`strided_conv`."""

    features: int
    size: int
    stride: int
    kernel_init: object = orthogonal(np.sqrt(2))
    bias_init: object = constant(0.0)

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (self.size, self.size, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        return strided_conv(x, kernel, bias, self.stride)


class NatureActorCritic(nn.Module):
    """Nature-CNN torso (Mnih et al. 2015: conv 32x8x8/4, 64x4x4/2, 64x3x3/1, dense 512) shared by the policy
    and the two value heads -> logits, v_ext, v_int. Input uint8 (..., 84, 84, stack).

    The convolutions are :class:`StridedConv` (the parameters, names and initialisation of ``nn.Conv``). The dense
    layer stores its kernel as (512, 3136) (out, in: PyTorch's ``Linear`` layout; orthogonal init as CleanRL):
    with the agent's small acting batches XLA:CPU's product against an (in, out) kernel runs ~2x slower."""

    n_actions: int

    @nn.compact
    def __call__(self, x):
        x = jnp.asarray(x, jnp.float32) / 255.0
        x = nn.relu(StridedConv(32, 8, 4, name="Conv_0")(x))
        x = nn.relu(StridedConv(64, 4, 2, name="Conv_1")(x))
        x = nn.relu(StridedConv(64, 3, 1, name="Conv_2")(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        x = nn.relu(nn.Einsum((512, x.shape[-1]), "...i,oi->...o", kernel_init=orthogonal(np.sqrt(2)),
                              bias_init=constant(0.0), name="fc")(x))
        logits = nn.Dense(self.n_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="policy")(x)
        v_ext = nn.Dense(1, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="v_ext")(x)[..., 0]
        v_int = nn.Dense(1, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="v_int")(x)[..., 0]
        return logits, v_ext, v_int
