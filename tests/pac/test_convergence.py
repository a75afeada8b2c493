"""The plateau rule (replicate.pac.convergence): hand-computed windows, noise, caps, and the early stop of
train.train_in_chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate.pac import convergence, train
from replicate.params import ParameterError


def test_window_gain_by_hand():
    v = [0.0, 1.0, 2.0, 4.0, 4.0, 4.1]
    assert convergence.window_gain(v, 3, 2) == pytest.approx((2 + 4) / 2 - (0 + 1) / 2)
    assert convergence.window_gain(v, 5, 2) == pytest.approx((4 + 4.1) / 2 - (2 + 4) / 2)
    assert np.isnan(convergence.window_gain(v, 2, 2))


def test_plateau_index_rising_then_flat():
    steps = np.arange(1, 13) * 1000
    values = np.minimum(np.arange(12) * 0.2, 1.0)  # rises by 0.2 per point until point 5, then flat at 1
    i = convergence.plateau_index(steps, values, window=2, tol=0.05)
    # Point 8: last two (1, 1) vs the two before (1, 1) -> gain 0; point 7: (1, 1) vs (0.8, 1.0) -> 0.1 >= tol.
    assert i == 8
    assert convergence.updates_at_plateau(steps, values, 2, 0.05) == (9000, True)
    # min_step delays the reading; a curve that keeps rising never flattens and runs to its cap.
    assert convergence.plateau_index(steps, values, 2, 0.05, min_step=10_000) == 9
    assert convergence.updates_at_plateau(steps, np.arange(12) * 0.1, 2, 0.05) == (12000, False)


def test_plateau_index_averages_noise():
    """A single noisy dip does not stop a rising curve when the window averages over it."""
    values = [0.0, 0.3, 0.6, 0.5, 0.9, 1.2] + [1.5] * 6
    assert convergence.plateau_index(range(12), values, window=1, tol=0.05) == 3  # window 1: stops at the dip
    # Window 3: the gain at point 10 is (4.5 - 4.2) / 3 = 0.1, at point 11 it is 0.
    assert convergence.plateau_index(range(12), values, window=3, tol=0.05) == 11


def test_rule_checks_and_shapes():
    with pytest.raises(ParameterError, match="window"):
        convergence.plateau_index([1, 2], [0, 0], window=0, tol=0.1)
    with pytest.raises(ParameterError, match="tol"):
        convergence.check_rule(2, 0.0)
    with pytest.raises(ValueError, match="equal length"):
        convergence.plateau_index([1, 2, 3], [0, 0], 1, 0.1)


def test_curve_is_flat_on_evaluation_points():
    pts = [(n, {"a": {"normalised": v}, "b": {"normalised": v + 0.2}}) for n, v in
           [(100, 0.1), (200, 0.5), (300, 0.7), (400, 0.7)]]
    assert convergence.curve_values(pts) == ([100, 200, 300, 400], pytest.approx([0.2, 0.6, 0.8, 0.8]))
    assert convergence.curve_is_flat(pts, window=1, tol=0.05)
    assert not convergence.curve_is_flat(pts[:3], window=1, tol=0.05)
    assert not convergence.curve_is_flat([], 1, 0.05)


def test_train_in_chunks_stops_when_the_rule_says_so(tmp_path):
    """A toy chunk (state += updates); evaluation = min(state / 6, 1): flat from state 6 on, so a stop rule with
    window 1 ends the run after the evaluation at 9 (gain 0 against the one at 6), the metrics end there, and a
    resumed run stops at the same point."""
    def make_chunk(n):
        return lambda st, k: (st + n, {"x": jnp.arange(n, dtype=jnp.float32) + st})

    def evaluate(st):
        v = min(float(st) / 6.0, 1.0)
        return {"a": {"return": v, "normalised": v}}

    def stop(points):
        return convergence.curve_is_flat(points, window=1, tol=0.01)

    for ckpt in (None, tmp_path / "ck"):
        st, metrics, _, curve = train.train_in_chunks(jnp.float32(0), make_chunk, jax.random.PRNGKey(0), 30, chunk=3,
                                                      evaluate=evaluate, tasks=["a"], eval_every=3,
                                                      checkpoint_dir=ckpt, stop=stop)
        assert float(st) == 9 and [n for n, _ in curve] == [3, 6, 9] and metrics["x"].shape == (9,)
        np.testing.assert_array_equal(metrics["x"], np.arange(9))
