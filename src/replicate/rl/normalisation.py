"""Running mean / variance for normalising observations (RND) and intrinsic rewards or returns (PPO).

:class:`RunningMeanStd` merges each batch into the running moments with the parallel update of
Chan et al. (1979): for a batch of ``n`` samples with mean ``m_b`` and variance ``v_b``,
``mean <- mean + delta n / N'`` and ``var <- (var N + v_b n + delta^2 N n / N') / N'`` with
``delta = m_b - mean`` and ``N' = N + n``. The count starts at ``eps`` (1e-4) and the variance at 1,
as in the RND and CleanRL implementations.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class RunningMeanStd(NamedTuple):
    """Running moments of vectors of shape ``mean.shape`` (``()`` for scalars)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @staticmethod
    def create(shape=(), eps: float = 1e-4) -> "RunningMeanStd":
        return RunningMeanStd(
            jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(eps, jnp.float32)
        )

    def update(self, x) -> "RunningMeanStd":
        """Merge a batch: every leading axis of ``x`` beyond the moments' shape is a sample axis."""
        x = jnp.asarray(x, jnp.float32).reshape((-1,) + self.mean.shape)
        bm, bv, bc = jnp.mean(x, axis=0), jnp.var(x, axis=0), x.shape[0]
        delta = bm - self.mean
        tot = self.count + bc
        mean = self.mean + delta * bc / tot
        m2 = self.var * self.count + bv * bc + delta**2 * self.count * bc / tot
        return RunningMeanStd(mean, m2 / tot, tot)

    def std(self) -> jax.Array:
        return jnp.sqrt(self.var + 1e-8)
