"""Seeding and PRNG handling: explicit keys, no global state.

Notebooks take an integer ``SEED`` parameter and turn it into keys here; library code only
ever receives keys.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np


def key(seed: int) -> jax.Array:
    """A typed-free (raw uint32) JAX PRNG key from an integer seed."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return jax.random.PRNGKey(int(seed))


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """Stack one key per seed, shape ``(len(seeds), 2)``: ready for ``jax.vmap`` over seeds."""
    return jax.numpy.stack([key(s) for s in seeds])


def numpy_rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent NumPy generator for ``seed`` and an optional stream id (e.g. a worker index)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, stream)]))

