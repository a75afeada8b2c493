"""Atomic writes: a failure leaves the old file (or nothing) in place, never a partial file."""

import json

import numpy as np
import pytest

from replicate import io


def test_atomic_path_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temp file left behind


def test_atomic_path_creates_directories_and_keeps_suffix(tmp_path):
    target = tmp_path / "a" / "b" / "x.npz"
    with io.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".npz.tmp")
        tmp.write_bytes(b"1")
    assert target.read_bytes() == b"1"


def test_write_json_converts_numpy_and_jax_values(tmp_path):
    import jax.numpy as jnp

    path = io.write_json(tmp_path / "m.json", {"a": np.float32(1.5), "b": np.arange(3), "c": jnp.ones(2)})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": [1.0, 1.0]}


def test_write_npz_roundtrip(tmp_path):
    path = io.write_npz(tmp_path / "d.npz", x=np.arange(5), y=np.eye(2))
    with np.load(path) as data:
        np.testing.assert_array_equal(data["x"], np.arange(5))
        np.testing.assert_array_equal(data["y"], np.eye(2))
