"""Notebook 11/12's run drivers: RECODE's reward bound and run-spanning discount, and the curves a run returns."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from replicate.params import ParameterError
from replicate.recode import agents, memory


def test_run_spanning_gamma_has_the_run_as_its_horizon():
    g = agents.run_spanning_gamma(36_000)
    assert memory.effective_memory_horizon(g) == pytest.approx(36_000)
    assert (1 - 1 / 36_000) ** 36_000 == pytest.approx(math.exp(-1), rel=1e-4)  # what a first count keeps at the end
    assert memory.effective_memory_horizon(memory.RecodeConfig().gamma) == pytest.approx(1000)  # the paper's 0.999
    with pytest.raises(ParameterError):
        agents.run_spanning_gamma(1)


def test_for_run_sets_the_discount_only_when_asked_and_recode_c_reaches_the_memory():
    spec = agents.RunSpec(memory_size=64, recode_c=1.0, recode_gamma=0.99)
    assert spec.for_run(1000) is spec
    spanning = dataclasses.replace(spec, recode_gamma_spans_run=True).for_run(36_000)
    assert spanning.recode_gamma == pytest.approx(1 - 1 / 36_000) and not spanning.recode_gamma_spans_run
    from replicate.rl import envs

    rc = spanning.bonus_config(envs.deep_sea(4)).recode
    assert rc.c == 1.0 and rc.gamma == pytest.approx(1 - 1 / 36_000) and rc.memory_size == 64
    assert agents.RunSpec().bonus_config(envs.deep_sea(4)).recode.c == memory.RecodeConfig().c
    assert agents.recode_config(64, None, None, 0.5).c == 0.5 and agents.recode_config(64, None).c == 1e-3
    with pytest.raises(ParameterError):
        agents.RunSpec(recode_c=0.0)


def test_deep_sea_run_returns_per_update_curves_and_recode_c_bounds_the_reward():
    """RECODE's reward 1 / (sqrt(N) + c) is at most 1 / c, reached by an embedding with no atom in reach (the first
    one, on an empty memory): 1000 with c = 1e-3, 1 with c = 1."""
    spec = agents.RunSpec(budget_episodes=64, num_envs=4, num_steps=8, embedding="random", embed_dim=8,
                          memory_size=32, ppo={"update_epochs": 1, "num_minibatches": 2})
    r = agents.deep_sea_run(4, "recode", [0, 1], dataclasses.replace(spec, recode_c=1.0))
    U = r["steps"].shape[1]
    assert U == 64 * 4 // 32 and r["success_rate"].shape == (2, U) and r["coverage"].shape == (2, U)
    for k in agents.DIAGNOSTICS:
        assert r[k].shape == (2, U) and np.all(np.isfinite(r[k])), k
    assert np.all((r["coverage"] > 0) & (r["coverage"] <= 1))
    np.testing.assert_allclose(r["coverage"], r["distinct"] / agents.reachable_cells(4))
    assert np.all(r["r_int_raw_max"] <= 1.0 + 1e-6) and np.all(r["r_int_raw_max"][:, 0] == pytest.approx(1.0))
    for c in (1e-3, 1.0):  # the memory's first reward is 1 / c
        cfg = memory.RecodeConfig(memory_size=16, c=c)
        e = np.ones((1, 3), np.float32)
        _, out = memory.step(cfg, memory.init(cfg, 3), e, memory.draw_noise(cfg, jax.random.PRNGKey(0), 1))
        assert float(out.reward[0]) == pytest.approx(1 / c, rel=1e-5)
    assert np.all((r["policy_entropy"] >= 0) & (r["policy_entropy"] <= np.log(2) + 1e-5))
