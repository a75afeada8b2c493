"""Shared fixtures for the PAC tests: one tiny network and a tiny batch with padding."""

import jax
import jax.numpy as jnp
import pytest

from replicate.pac.perceiver import init_params, make_config

OBS, ACT, TASKS, B = 5, 2, 2, 4


@pytest.fixture(scope="session")
def tiny():
    cfg = make_config("tiny", obs_dim=OBS, action_dim=ACT, num_tasks=TASKS, num_action_bins=5, num_value_bins=11,
                      v_max=10.0)
    model, params = init_params(cfg, jax.random.PRNGKey(0))
    # Non-zero heads so the decoders' outputs depend on their inputs (they are zero-initialised).
    p = jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(len(str(path))), x.shape)
        if any("head" in str(k) for k in path) else x,
        params,
    )
    return cfg, model, p


@pytest.fixture(scope="session")
def batch():
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(1), 4)
    obs_mask = jnp.ones((B, OBS), bool).at[0, 3:].set(False).at[2, 3:].set(False)
    act_mask = jnp.ones((B, ACT), bool).at[0, 1].set(False).at[2, 1].set(False)
    return dict(
        obs=jax.random.normal(k1, (B, OBS)) * obs_mask,
        next_obs=jax.random.normal(k2, (B, OBS)) * obs_mask,
        obs_mask=obs_mask,
        task=jnp.array([0, 1, 0, 1]),
        action=jax.random.uniform(k3, (B, ACT), minval=-1, maxval=1) * act_mask,
        action_mask=act_mask,
        reward=jax.random.uniform(k4, (B,)),
        discount=jnp.array([1.0, 1.0, 0.0, 1.0]),
    )
