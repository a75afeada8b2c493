"""Notebook 12's data and probe: walks obey the grid's dynamics, the ridge probe reads out separable codes."""

import numpy as np

from replicate.recode import probes


def test_grid_walks_follow_the_actions_and_share_codes():
    size = 5
    obs, act, cells = probes.grid_walks(size, 6, 30, 8, 3, 1.0, seed=0, walk_seed=0)
    obs2, _, cells2 = probes.grid_walks(size, 6, 30, 8, 3, 1.0, seed=0, walk_seed=1)
    assert obs.shape == (6, 30, 11) and np.all(cells[:, 0] == 0)
    r, c = divmod(cells, size)
    mv = probes.MOVES[act[:, :-1]]
    np.testing.assert_array_equal(r[:, 1:], np.clip(r[:, :-1] + mv[..., 0], 0, size - 1))
    np.testing.assert_array_equal(c[:, 1:], np.clip(c[:, :-1] + mv[..., 1], 0, size - 1))
    # the same cell has the same code across data sets (held-out walks), the noise differs
    a = obs[cells == cells2[0, 5]][0]
    b = obs2[0, 5]
    np.testing.assert_allclose(a[:8], b[:8])
    assert not np.allclose(a[8:], b[8:])


def test_linear_probe_reads_out_one_hot_and_fails_on_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 400)
    x = np.eye(7)[y] + 0.01 * rng.normal(size=(400, 7))
    assert probes.linear_probe(x[:300], y[:300], x[300:], y[300:], 7) == 1.0
    z = rng.normal(size=(400, 7))
    assert probes.linear_probe(z[:300], y[:300], z[300:], y[300:], 7) < 0.4
