"""Shared helpers: seeding, figure saving, metrics, run metadata."""

import json

import jax
import numpy as np
import pytest

from replicate import metrics, outputs, plotting, rng, runinfo
from replicate.params import ParameterError


def test_keys_are_deterministic_and_distinct():
    np.testing.assert_array_equal(rng.key(3), rng.key(3))
    assert not np.array_equal(rng.key(3), rng.key(4))
    assert rng.seed_keys([0, 1, 2]).shape == (3, 2)
    a = rng.numpy_rng(0, 1).normal(size=4)
    b = rng.numpy_rng(0, 2).normal(size=4)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, rng.numpy_rng(0, 1).normal(size=4))
    with pytest.raises(ValueError, match="seed must be >= 0"):
        rng.key(-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        rng.key(1.5)


def test_save_figure_writes_png_under_figures_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(outputs.FIGURES_ENV, str(tmp_path))
    fig, ax = plotting.subplots()
    ax.plot([0, 1], [0, 1])
    path = plotting.save_figure(fig, "glasses_fig9_tv_decay")
    assert path == tmp_path / "glasses_fig9_tv_decay.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="lower-case letters"):
        plotting.save_figure(fig, "Fig 9")


def test_metrics_embed_run_record_and_reject_nan(tmp_path, monkeypatch):
    monkeypatch.setenv(outputs.METRICS_ENV, str(tmp_path))
    run = runinfo.start("smoke")
    path = metrics.write_metrics("nb", {"acc": 0.5, "per_seed": [1.0, 2.0]}, run)
    data = json.loads(path.read_text())
    assert data["metrics"] == {"acc": 0.5, "per_seed": [1.0, 2.0]}
    assert data["run"]["profile"] == "smoke"
    assert data["run"]["device"]["backend"] == jax.default_backend()
    assert data["run"]["wall_time_s"] >= 0
    assert set(data["run"]) >= {"git_commit", "git_dirty", "started_utc", "jax_version"}
    with pytest.raises(ValueError, match=r"metric nb.per_seed\[1\] is nan"):
        metrics.write_metrics("nb", {"per_seed": [1.0, float("nan")]}, run)
    with pytest.raises(ParameterError):
        runinfo.start("laptop")


def test_time_call_measures_sleep_and_results_are_written(tmp_path, monkeypatch):
    import time

    from replicate import benchmarking

    timing = benchmarking.time_call(lambda: time.sleep(0.01), repeats=3, min_time_s=0.0)
    assert 0.009 < timing["median_s"] < 0.1 and timing["inner"] == 1
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    md = benchmarking.write_results("toy", [{"case": "a", "ratio": 2.0}], title="Toy")
    assert "| case | ratio |" in md.read_text() and "| a | 2 |" in md.read_text()
    rows = json.loads((tmp_path / "benchmarks" / "results" / "toy.json").read_text())["rows"]
    assert rows == [{"case": "a", "ratio": 2.0}]


def test_run_record_is_dirty_only_when_a_source_input_changed(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "root")
    for rel in ("src/replicate/m.py", "notebooks/n.ipynb", "params.yaml", "figures/f.png", "data/metrics/x.json",
                "dvc.lock", "README.md", "reports/n.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("v1")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "c")
    assert runinfo.changed_sources(tmp_path) == []
    # Outputs a stage writes (figures, reports, metrics, dvc.lock, the README's tables) leave the record clean.
    for rel in ("figures/f.png", "data/metrics/x.json", "dvc.lock", "README.md", "reports/n.ipynb", "figures/new.png"):
        (tmp_path / rel).write_text("v2")
    assert runinfo.changed_sources(tmp_path) == []
    # A changed or new source input makes it dirty.
    (tmp_path / "params.yaml").write_text("v2")
    (tmp_path / "src/replicate/new.py").write_text("x = 1")
    changed = runinfo.changed_sources(tmp_path)
    assert any("params.yaml" in line for line in changed) and any("new.py" in line for line in changed)
    assert runinfo.changed_sources(tmp_path / "nowhere") is None
