"""replicate.resumable: a killed run, re-run, skips its finished units / chunks and ends with the same result."""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from replicate import resumable


def test_units_reuse_only_same_name_inputs_and_code(tmp_path):
    calls = []

    def work(x):
        calls.append(x)
        return {"y": jnp.arange(3) * x, "label": f"x={x}"}

    units = resumable.Units(tmp_path, fingerprint="code-a")
    first = units.run("u", {"x": 2}, lambda: work(2))
    assert isinstance(first["y"], np.ndarray) and first["label"] == "x=2"
    again = resumable.Units(tmp_path, fingerprint="code-a").run("u", {"x": 2}, lambda: work(2))
    np.testing.assert_array_equal(again["y"], first["y"])
    assert calls == [2]
    resumable.Units(tmp_path, fingerprint="code-a").run("u", {"x": 3}, lambda: work(3))  # other inputs
    resumable.Units(tmp_path, fingerprint="code-b").run("u", {"x": 2}, lambda: work(2))  # other code
    assert calls == [2, 3, 2]
    off = resumable.Units(None)
    off.run("u", {"x": 2}, lambda: work(2))
    off.run("u", {"x": 2}, lambda: work(2))
    assert calls == [2, 3, 2, 2, 2] and not off.enabled
    with pytest.raises(TypeError, match="mapping"):
        units.run("u", [2], lambda: 0)


def test_checkpoint_dir_is_per_unit_beside_its_result_and_none_when_disabled(tmp_path):
    units = resumable.Units(tmp_path, fingerprint="code-a")
    a, b = units.checkpoint_dir("u", {"x": 1}), units.checkpoint_dir("u", {"x": 2})
    assert a != b and a.parent == tmp_path and a.with_suffix(".pkl") == units.path("u", {"x": 1})
    assert resumable.Units(tmp_path, fingerprint="code-b").checkpoint_dir("u", {"x": 1}) != a  # code change: fresh
    assert resumable.Units(None).checkpoint_dir("u", {"x": 1}) is None


def test_code_fingerprint_changes_with_content(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    f1 = resumable.code_fingerprint([a, b], tmp_path)
    assert f1 == resumable.code_fingerprint([b, a], tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.py"  # a notebook outside the root counts by name
    outside.write_text("z = 1\n")
    assert resumable.code_fingerprint([a, outside], tmp_path) != resumable.code_fingerprint([a], tmp_path)
    b.write_text("y = 3\n")
    assert resumable.code_fingerprint([a, b], tmp_path) != f1


SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    import numpy as np
    from replicate import resumable
    units = resumable.Units(sys.argv[1], fingerprint="f")
    kill_after = int(os.environ.get("KILL_AFTER", "-1"))
    out = []
    for i in range(4):
        def work(i=i):
            with open(sys.argv[2], "a") as fh:
                fh.write(f"{i}\\n")
            return np.random.default_rng(i).normal(size=5)
        out.append(units.run(f"unit{i}", {"i": i}, work))
        if i == kill_after:
            os.kill(os.getpid(), 9)   # killed midway, as by the OOM killer or a lost session
    print(json.dumps([float(x.sum()) for x in out]))
    """
)


def test_killed_run_resumes_with_the_same_result(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    log = tmp_path / "calls.txt"
    env = {**os.environ, "KILL_AFTER": "1"}
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "units"), str(log)], env=env)
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    assert log.read_text().split() == ["0", "1"]
    env.pop("KILL_AFTER")
    resumed = subprocess.run([sys.executable, str(script), str(tmp_path / "units"), str(log)], env=env,
                             capture_output=True, text=True, check=True)
    assert log.read_text().split() == ["0", "1", "2", "3"]  # units 0 and 1 were not recomputed
    fresh = subprocess.run([sys.executable, str(script), str(tmp_path / "units2"), str(tmp_path / "c2.txt")],
                           env=env, capture_output=True, text=True, check=True)
    assert resumed.stdout == fresh.stdout


def _chunk(state, i):
    key = jax.random.fold_in(state["key"], i)
    return {"key": state["key"], "w": state["w"] * 0.9 + jax.random.normal(key, state["w"].shape),
            "steps": state["steps"] + 1}


def test_run_chunks_resumes_from_checkpoint(tmp_path):
    init = {"key": jax.random.PRNGKey(0), "w": jnp.zeros(4), "steps": jnp.array(0)}
    full = resumable.run_chunks(init, _chunk, 6, None)

    calls = []

    def dies_at_4(state, i):
        if i == 4:
            raise KeyboardInterrupt("interrupted")
        calls.append(i)
        return _chunk(state, i)

    with pytest.raises(KeyboardInterrupt):
        resumable.run_chunks(init, dies_at_4, 6, tmp_path / "ckpt", every_s=0.0)
    assert calls == [0, 1, 2, 3]

    def counted(state, i):
        calls.append(i)
        return _chunk(state, i)

    resumed = resumable.run_chunks(init, counted, 6, tmp_path / "ckpt", every_s=0.0)
    assert calls == [0, 1, 2, 3, 4, 5]  # chunks 0-3 came from the checkpoint
    np.testing.assert_array_equal(np.asarray(resumed["w"]), np.asarray(full["w"]))
    assert int(resumed["steps"]) == 6
    with pytest.raises(ValueError, match="more than n_chunks"):
        resumable.run_chunks(init, _chunk, 3, tmp_path / "ckpt")
