"""RECODE's Fig. 1 toy: the stream's geometry and the claim that a shorter memory horizon follows the recent square."""

import jax
import numpy as np
import pytest

from replicate import verdicts
from replicate.params import ParameterError
from replicate.recode import memory, toy_density


def test_stream_rounds_lie_in_their_squares():
    toy = toy_density.ToyConfig(rounds=20, points=256)
    xs = np.asarray(toy_density.stream(toy, jax.random.PRNGKey(0)))
    assert xs.shape == (20, 256, 2)
    side = 1 + np.sqrt(np.arange(20))
    assert (xs >= 0).all() and (xs <= side[:, None, None]).all()
    # uniform on the square: the mean of each round is close to side / 2 (256 * 2 samples, sd ~ side / 45)
    np.testing.assert_allclose(xs.mean(axis=(1, 2)), side / 2, atol=4 * side.max() / 45)


def test_weighted_mean_and_history_mean():
    atoms = np.array([[0.0, 0.0], [2.0, 4.0]])
    np.testing.assert_allclose(toy_density.weighted_mean(atoms, np.array([1.0, 3.0])), [1.5, 3.0])
    toy = toy_density.ToyConfig()
    assert toy_density.history_mean(toy) == pytest.approx(np.mean([(1 + np.sqrt(t)) / 2 for t in range(101)]))
    with pytest.raises(ValueError):
        toy_density.weighted_mean(atoms, np.zeros(2))


def test_no_discount_keeps_every_point_and_shorter_horizon_moves_towards_the_centre():
    toy = toy_density.ToyConfig(rounds=41, points=64)
    means = {}
    for gamma in (0.99, 0.999, 1.0):
        cfg = memory.RecodeConfig(memory_size=128, gamma=gamma, discount_per="embedding")
        out = toy_density.run(toy, cfg, jax.random.PRNGKey(1))
        means[gamma] = float(out["weighted_mean"].mean())
        if gamma == 1.0:
            # no discount: the counts add up to the number of points fed (evictions hand their count over)
            assert out["counts"].sum() == pytest.approx(toy.rounds * toy.points, rel=1e-4)
    centre = float(toy_density.square_side(toy.rounds - 1)) / 2
    assert means[1.0] < means[0.999] < means[0.99] < centre + 0.5
    assert means[1.0] == pytest.approx(toy_density.history_mean(toy), rel=0.1)


def test_config_validation():
    with pytest.raises(ParameterError, match="rounds"):
        toy_density.ToyConfig(rounds=0)
    with pytest.raises(ParameterError, match="Algorithm 1"):
        toy_density.run(toy_density.ToyConfig(rounds=2), memory.RecodeConfig(memory_size=16, discount_per="call"),
                        jax.random.PRNGKey(0))


def test_history_control():
    c = toy_density.history_control([3.9, 3.8], history=3.85)
    assert c["passed"] and c["value"] == pytest.approx(0.0) and c["threshold"] == 0.15
    assert not toy_density.history_control([3.0, 3.1], history=3.85)["passed"]  # 21% off
    with pytest.raises(ValueError):
        toy_density.history_control([], history=3.85)


def test_verdict_row_reaches_every_outcome():
    h = 3.85
    one = np.array([3.80, 3.90, 3.85, 3.86, 3.84])

    def label(mid, small, history=h):
        row = toy_density.verdict_row({1.0: one, 0.999: np.asarray(mid), 0.99: np.asarray(small)}, history, "f.png")
        assert verdicts.recompute(row) == row["verdict"]
        assert row["evidence"]["better"] == "γ=0.99" and row["evidence"]["than"] == ["γ=0.999", "γ=1"]
        return row["verdict"]

    assert label(one + 0.7, one + 1.4) == verdicts.REPRODUCED
    assert label(one + 1.4, one + 1.4) == verdicts.PARTLY  # beats gamma = 1 only, ties with 0.999
    assert label(one, one) == verdicts.NOT_REPRODUCED
    assert label(one + 0.7, one + 1.4, history=5.0) == verdicts.INCONCLUSIVE  # gamma = 1 misses the history
    row = toy_density.verdict_row({1.0: one[:1], 0.99: one[:1] + 1}, h, "f.png")
    assert row["verdict"] == verdicts.INCONCLUSIVE  # one seed: no interval
    with pytest.raises(ValueError, match="1.0"):
        toy_density.verdict_row({0.99: one, 0.999: one}, h, "f.png")
    with pytest.raises(ValueError, match="two"):
        toy_density.verdict_row({1.0: one}, h, "f.png")
