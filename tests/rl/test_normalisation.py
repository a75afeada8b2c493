"""RunningMeanStd (the running moments of RND's inputs and PPO's intrinsic returns) against NumPy."""

import numpy as np
import pytest

from replicate.rl.normalisation import RunningMeanStd


def test_scalar_moments_of_a_stream_match_numpy():
    x = np.random.default_rng(3).normal(2.0, 3.0, size=(1000,)).astype(np.float32)
    rms = RunningMeanStd.create()
    for chunk in np.split(x, 10):
        rms = rms.update(chunk)
    assert float(rms.mean) == pytest.approx(x.mean(), rel=1e-3)
    assert float(rms.var) == pytest.approx(x.var(), rel=1e-2)
    assert float(rms.std()) == pytest.approx(np.sqrt(x.var() + 1e-8), rel=1e-2)


def test_scalar_moments_pool_every_axis_and_vector_moments_keep_the_feature_axis():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 8, 3)).astype(np.float32)
    # scalar moments: a (T, E) batch is T * E samples (PPO's discounted intrinsic returns)
    scalar = RunningMeanStd.create().update(x[..., 0])
    n = x[..., 0].size
    want_mean = x[..., 0].mean() * n / (n + 1e-4)
    assert float(scalar.mean) == pytest.approx(want_mean, rel=1e-4)
    assert float(scalar.count) == pytest.approx(n + 1e-4)
    # vector moments: (B, d) batches keep d (RND's observation normalisation)
    vec = RunningMeanStd.create((3,))
    for chunk in np.split(x.reshape(-1, 3), 4):
        vec = vec.update(chunk)
    np.testing.assert_allclose(np.asarray(vec.mean), x.reshape(-1, 3).mean(0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.asarray(vec.var), x.reshape(-1, 3).var(0), rtol=1e-2)
