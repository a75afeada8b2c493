"""A plain ReLU multi-layer perceptron (Flax)."""

from __future__ import annotations

import flax.linen as nn


class MLP(nn.Module):
    """Dense layers of widths ``features`` with ReLU between them (none after the last)."""

    features: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        for i, f in enumerate(self.features):
            x = nn.Dense(f)(x)
            if i < len(self.features) - 1:
                x = nn.relu(x)
        return x
