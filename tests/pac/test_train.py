"""Offline training loop: target-network copies, learning signal; SAC/dm_control plumbing."""

import jax
import jax.numpy as jnp
import numpy as np

from replicate.pac import train
from replicate.pac.losses import PACConfig
from replicate.pac.perceiver import make_config


def test_target_copied_every_period_and_bc_improves():
    rng = np.random.default_rng(0)
    n = 64
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    data = {
        "obs": obs, "next_obs": obs, "obs_mask": np.ones((n, 3), bool),
        "action": np.clip(obs[:, :1], -1, 1),  # a deterministic function of the observation
        "action_mask": np.ones((n, 1), bool), "reward": np.ones(n, np.float32),
        "discount": np.ones(n, np.float32), "task": np.zeros(n, np.int32),
    }
    data = {k: jnp.asarray(v) for k, v in data.items()}
    net = make_config("tiny", obs_dim=3, action_dim=1, num_tasks=1, num_action_bins=5, num_value_bins=11, v_max=10.0)
    pac = PACConfig(alpha=1.0, critic_weight=0.0, learn_temperature=False, num_policy_samples=1, target_update_period=3)
    tc = train.TrainConfig(batch_size=16, learning_rate=3e-3)
    model, s0 = train.init_state(net, pac, tc, jax.random.PRNGKey(0))
    fn = train.make_train_fn(model, pac, tc, 2)
    s2, m2 = fn(s0, data, jax.random.PRNGKey(1))

    def same(a, b):
        leaves = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
        return all(bool(jnp.array_equal(x, y)) for x, y in leaves)

    assert int(s2.step) == 2 and same(s2.target_params, s0.params) and not same(s2.params, s0.params)
    s4, m4 = fn(s2, data, jax.random.PRNGKey(2))  # steps 3, 4: copy at step 3 only
    assert not same(s4.target_params, s0.params) and not same(s4.target_params, s4.params)
    s, metrics, _ = train.fit(model, s0, data, jax.random.PRNGKey(3), pac, tc, 60, chunk=2)
    assert metrics["bc_nll"].shape == (60,)
    assert metrics["bc_nll"][-10:].mean() < metrics["bc_nll"][:5].mean() - 0.2


def test_bc_only_step_matches_alpha_one_without_critic():
    rng = np.random.default_rng(1)
    n = 32
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    data = {k: jnp.asarray(v) for k, v in dict(
        obs=obs, next_obs=obs, obs_mask=np.ones((n, 3), bool), action=np.clip(obs[:, :1], -1, 1),
        action_mask=np.ones((n, 1), bool), reward=np.ones(n, np.float32), discount=np.ones(n, np.float32),
        task=np.zeros(n, np.int32)).items()}
    net = make_config("tiny", obs_dim=3, action_dim=1, num_tasks=1, num_action_bins=5, num_value_bins=11, v_max=10.0)
    pac = PACConfig(learn_temperature=False, num_policy_samples=1)
    tc = train.TrainConfig(batch_size=8)
    model, s0 = train.init_state(net, pac, tc, jax.random.PRNGKey(0))
    a, _ = train.make_train_fn(model, pac, tc, 2, bc_only=True)(s0, data, jax.random.PRNGKey(4), 1.0, 0.0)
    b, _ = train.make_train_fn(model, pac, tc, 2)(s0, data, jax.random.PRNGKey(4), 1.0, 0.0)
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), a.params, b.params)


def test_flop_method_and_run_charge():
    from replicate.pac import experiment

    assert experiment.flop_method(*experiment.BC) == "BC"
    assert experiment.flop_method(0.75, 1.0) == "PAC"
    assert experiment.flop_method(1.0, 1.0) == "PAC"  # BC+Q needs the target passes for its critic
    assert experiment.flop_method(0.5, 0.0) == "PAC"  # the improvement term samples from the target policy
