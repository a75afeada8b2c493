"""Actor-critic networks for PPO with two value heads (extrinsic and intrinsic, RND: Burda et al. 2019, Sec. 2.3).

Both return ``(logits, v_ext, v_int)``; initialisation as in CleanRL / PureJaxRL (orthogonal, zero biases).
"""

from __future__ import annotations

import flax.linen as nn
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


class NatureActorCritic(nn.Module):
    """Nature-CNN torso (Mnih et al. 2015: conv 32x8x8/4, 64x4x4/2, 64x3x3/1, dense 512) shared by the policy
    and the two value heads -> logits, v_ext, v_int. Input uint8 (..., 84, 84, stack)."""

    n_actions: int

    @nn.compact
    def __call__(self, x):
        x = jnp.asarray(x, jnp.float32) / 255.0
        init = orthogonal(np.sqrt(2))
        x = nn.relu(nn.Conv(32, (8, 8), (4, 4), padding="VALID", kernel_init=init, bias_init=constant(0.0))(x))
        x = nn.relu(nn.Conv(64, (4, 4), (2, 2), padding="VALID", kernel_init=init, bias_init=constant(0.0))(x))
        x = nn.relu(nn.Conv(64, (3, 3), (1, 1), padding="VALID", kernel_init=init, bias_init=constant(0.0))(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        x = nn.relu(nn.Dense(512, kernel_init=init, bias_init=constant(0.0))(x))
        logits = nn.Dense(self.n_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(x)
        v_ext = nn.Dense(1, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="v_ext")(x)[..., 0]
        v_int = nn.Dense(1, kernel_init=orthogonal(0.01), bias_init=constant(0.0), name="v_int")(x)[..., 0]
        return logits, v_ext, v_int
