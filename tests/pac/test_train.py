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
    make_chunk = lambda n: lambda st, k: train.make_train_fn(model, pac, tc, n)(st, data, k)  # noqa: E731
    s, metrics, _, _ = train.train_in_chunks(s0, make_chunk, jax.random.PRNGKey(3), 60, chunk=2)
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


def test_evaluate_scores_any_policy_callable_like_a_direct_rollout():
    """:func:`train.evaluate` with a scripted policy (constant action) on a padded two-task mix gives, per task,
    the mean return of direct ``DMCEnv`` rollouts with the same seeds, mapped through expert/random returns; the
    policy sees standardised, padded observations and the masks."""
    import pytest

    pytest.importorskip("dm_control")
    from replicate.rl.dmc import DMCEnv

    tasks = [("cartpole-balance", 5, 1), ("point_mass-easy", 4, 2)]
    o_max, a_max = 5, 2
    merged = {"obs": np.zeros((1, o_max), np.float32), "action": np.zeros((1, a_max), np.float32),
              "obs_dim": np.array([5, 4]), "action_dim": np.array([1, 2]),
              "obs_mean": np.full((2, o_max), 0.5, np.float32), "obs_std": np.full((2, o_max), 2.0, np.float32)}
    metas = [{"task": t, "task_id": i, "expert_return": 200.0, "random_return": 10.0} for i, (t, _, _) in
             enumerate(tasks)]
    seen = []

    def policy(obs, obs_mask, task, action_mask):
        seen.append((obs.copy(), obs_mask.copy(), task.copy(), action_mask.copy()))
        return np.where(action_mask, 0.3, 7.0)  # padded entries must be dropped before env.step

    out = train.evaluate(policy, merged, metas, episodes=2, seed=1, action_repeat=4)
    obs0, obs_mask, task, action_mask = seen[0]
    assert task.tolist() == [0, 0, 1, 1] and obs_mask[2:, 4:].sum() == 0 and action_mask[:2, 1:].sum() == 0
    assert np.all(obs0[2:, 4] == 0)  # padding stays zero after standardisation
    for i, (name, obs_dim, act_dim) in enumerate(tasks):
        rets = []
        for e in range(2):
            env = DMCEnv(name, seed=50_000 + 97 * 1 + e, action_repeat=4)
            o, ret, last = env.reset(), 0.0, False
            np.testing.assert_allclose(obs0[2 * i + e, :obs_dim], (o - 0.5) / 2.0, rtol=1e-5)
            while not last:
                st = env.step(np.full(act_dim, 0.3))
                ret, last = ret + st.reward, st.last
            rets.append(ret)
        assert out[name]["return"] == pytest.approx(np.mean(rets))
        assert out[name]["normalised"] == pytest.approx((np.mean(rets) - 10.0) / 190.0)
    row = train.score_row(out)
    assert row["normalised_mean"] == pytest.approx(np.mean([out[t]["normalised"] for t, _, _ in tasks]))


def test_update_flops_and_steps_per_budget_per_method():
    """One FLOP budget, each method's own count: the Perceiver's per sample x batch, the peers' per update with
    the task one-hot in the observation width; steps rounded to whole chunks."""
    import pytest

    from replicate.pac import experiment, offline_peers
    from replicate.pac.perceiver import train_flops_per_sample
    from replicate.params import ParameterError

    merged = {"obs": np.zeros((4, 6), np.float32), "action": np.zeros((4, 2), np.float32), "obs_dim": np.array([6, 3])}
    net = make_config("tiny", obs_dim=6, action_dim=2, num_tasks=2, num_action_bins=5, num_value_bins=11, v_max=10.0)
    pac = PACConfig(num_policy_samples=3)
    tc = train.TrainConfig(batch_size=8)
    peers = {"TD3+BC": offline_peers.TD3BCConfig(hidden=(16,), batch_size=8), "IQL": offline_peers.IQLConfig()}
    for m in ("BC", "PAC"):
        assert experiment.update_flops(m, net, pac, tc, peers, merged) == train_flops_per_sample(net, pac, m) * 8
    assert experiment.update_flops("TD3+BC", net, pac, tc, peers, merged) == offline_peers.update_flops(
        peers["TD3+BC"], 6 + 2, 2)
    with pytest.raises(ParameterError):
        experiment.update_flops("CQL", net, pac, tc, peers, merged)
    assert experiment.steps_for_budget(1e6, 1e3, 100) == 1000
    assert experiment.steps_for_budget(1e6, 1e3, 300) == 900
    assert experiment.steps_for_budget(1e3, 1e3, 100) == 100  # at least one chunk


def test_bc_runs_its_own_step_without_critic_or_target_work():
    """The chunk a BC run compiles (experiment.train_chunk) costs what BC is charged (XLA's count within [1.0, 1.3] x
    train_flops_per_sample("BC") x batch: encoder and policy decoder only) and far less than PAC's step; BC+Q and PAC
    compile the full step."""
    import pytest

    from replicate.pac import experiment
    from replicate.pac.perceiver import train_flops_per_sample

    b = 32
    net = make_config("s", obs_dim=24, action_dim=6, num_tasks=2, num_action_bins=21, num_value_bins=51)
    pac = PACConfig(num_policy_samples=4)
    tc = train.TrainConfig(batch_size=b)
    model, s0 = train.init_state(net, pac, tc, jax.random.PRNGKey(0))
    n = 256
    data = {"obs": jnp.zeros((n, 24)), "next_obs": jnp.zeros((n, 24)), "obs_mask": jnp.ones((n, 24), bool),
            "action": jnp.zeros((n, 6)), "action_mask": jnp.ones((n, 6), bool), "reward": jnp.zeros(n),
            "discount": jnp.ones(n), "task": jnp.zeros(n, jnp.int32)}
    flops = {}
    for name, (a, cw) in {"BC": experiment.BC, "PAC": (0.75, 1.0), "BC+Q": (1.0, 1.0)}.items():
        fn = experiment.train_chunk(model, pac, tc, 1, a, cw)
        cost = fn.lower(s0, data, jax.random.PRNGKey(1), a, cw).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        if not cost or "flops" not in cost:
            pytest.skip("XLA cost analysis gives no FLOP count on this backend")
        flops[name] = cost["flops"]
    assert 1.0 <= flops["BC"] / (train_flops_per_sample(net, pac, "BC") * b) <= 1.3
    assert flops["BC"] < 0.6 * flops["PAC"] and flops["BC+Q"] > 0.9 * flops["PAC"]
    assert experiment.update_flops(experiment.FILTERED_BC, net, pac, tc, {}, {}) == train_flops_per_sample(
        net, pac, "BC") * b


def test_iql_trains_on_its_own_reward_scale_per_task():
    """IQL's D4RL rescaling, 1000 / (max - min episode return), from each task's episodes (offline_peers.
    iql_reward_scale); TD3+BC keeps the Perceiver's reward scale."""
    from replicate.pac import experiment, offline_peers

    merged = {"return_span": np.array([250.0, 800.0])}
    tc = train.TrainConfig(reward_scale=0.25)
    np.testing.assert_allclose(experiment.peer_reward_scale("IQL", merged, tc),
                               [offline_peers.iql_reward_scale(np.array([0.0, 250.0])), 1000 / 800])
    assert experiment.peer_reward_scale("TD3+BC", merged, tc) == 0.25


def test_run_method_passes_each_peer_its_reward_scale(monkeypatch):
    """run_method hands IQL its per-task D4RL scale and TD3+BC the Perceiver's, with the update count it was given."""
    from replicate.pac import experiment, offline_peers

    seen = {}

    def fake_run(cfg, merged, metas, seed, **kw):
        seen[offline_peers.method_name(cfg)] = (cfg.num_updates, kw["reward_scale"])
        return {"steps": cfg.num_updates}

    monkeypatch.setattr(offline_peers, "run", fake_run)
    merged = {"obs": np.zeros((4, 3), np.float32), "action": np.zeros((4, 1), np.float32), "obs_dim": np.array([3, 2]),
              "return_span": np.array([100.0, 400.0])}
    net = make_config("tiny", obs_dim=3, action_dim=1, num_tasks=2, num_action_bins=5, num_value_bins=11, v_max=10.0)
    peers = {"TD3+BC": offline_peers.TD3BCConfig(hidden=(8,)), "IQL": offline_peers.IQLConfig(hidden=(8,))}
    tc = train.TrainConfig(reward_scale=0.25)
    for m in ("TD3+BC", "IQL"):
        row = experiment.run_method(m, merged, [], net, PACConfig(), tc, peers, 0, steps=300, eval_episodes=0,
                                    action_repeat=4, chunk=100)
        assert row["method"] == m and row["train_flops"] == row["flops_per_update"] * 300
    assert seen["TD3+BC"] == (300, 0.25)
    np.testing.assert_allclose(seen["IQL"][1], [10.0, 2.5])
    assert seen["IQL"][0] == 300
