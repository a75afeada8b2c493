"""The notebook runner: parameters injected, outputs published atomically, failures name the cell."""

import json
import textwrap

import nbformat
import pytest

from replicate import pipeline
from replicate.params import ParameterError

NOTEBOOK_CODE = [
    'PROFILE = "smoke"\nN = 2',
    textwrap.dedent(
        """\
        from replicate import plotting, runinfo
        from replicate.metrics import write_metrics
        from replicate.params import Param, validate
        P = validate(globals(), {"N": Param(int, min=1)})
        run = runinfo.start(P.PROFILE)
        fig, ax = plotting.subplots()
        ax.plot(range(P.N))
        plotting.save_figure(fig, "toy_fig1")
        from replicate import resumable
        units = resumable.Units.from_env()
        assert units.enabled, "the pipeline sets up a units store"
        units.run("square", {"n": P.N}, lambda: P.N ** 2)
        assert P.N != 13, "unlucky N"
        write_metrics("toy", {"n": P.N}, run)
        """
    ),
]


@pytest.fixture()
def toy_repo(tmp_path, monkeypatch):
    (tmp_path / "src" / "replicate").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CODE])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "notebooks" / "toy.ipynb")
    (tmp_path / "params.yaml").write_text(
        "profile: cpu\nnotebooks:\n  toy: {smoke: {N: 2}, cpu: {N: 5}, full: {N: 13}}\n"
    )
    monkeypatch.setenv("REPLICATE_ROOT", str(tmp_path))
    return tmp_path


def test_run_publishes_figure_metrics_and_report(toy_repo):
    out = pipeline.run_notebook(toy_repo / "notebooks" / "toy.ipynb", progress=False)
    assert out["figures"] == [toy_repo / "figures" / "toy_fig1.png"]
    data = json.loads((toy_repo / "data" / "metrics" / "toy.json").read_text())
    assert data["metrics"] == {"n": 5} and data["run"]["profile"] == "cpu"  # the file's default profile
    report = nbformat.read(toy_repo / "reports" / "toy.ipynb", as_version=4)
    meta = report.metadata["replicate"]
    assert meta["profile"] == "cpu" and meta["parameters"] == {"N": 5, "PROFILE": "cpu"}
    assert "git_commit" in meta and "device" in meta and meta["wall_time_s"] >= 0
    assert not (toy_repo / "reports" / ".staging" / "toy").exists()
    assert not pipeline.units_directory(toy_repo, "toy", "cpu").exists()  # finished: units removed


def test_failed_run_names_cell_and_publishes_nothing(toy_repo):
    with pytest.raises(pipeline.NotebookFailed) as err:
        pipeline.run_notebook(toy_repo / "notebooks" / "toy.ipynb", "full", progress=False)
    message = str(err.value)
    assert "failed at profile 'full' in cell" in message and "AssertionError: unlucky N" in message
    assert not (toy_repo / "figures" / "toy_fig1.png").exists()  # figure was written before the failure
    assert not (toy_repo / "data" / "metrics" / "toy.json").exists()
    assert (toy_repo / "reports" / "toy.failed.ipynb").exists()
    # the unit finished before the failure is kept for the next run
    assert len(list(pipeline.units_directory(toy_repo, "toy", "full").glob("square-*.pkl"))) == 1


def test_unknown_parameter_and_profile_are_rejected_before_running(toy_repo, capsys):
    (toy_repo / "params.yaml").write_text(
        "profile: cpu\nnotebooks:\n  toy: {smoke: {N: 2}, cpu: {M: 5}, full: {N: 13}}\n"
    )
    expected = r"gives \['M'\] to toy.ipynb, whose parameters cell defines only \['N', 'PROFILE'\]"
    with pytest.raises(ParameterError, match=expected):
        pipeline.run_notebook(toy_repo / "notebooks" / "toy.ipynb", progress=False)
    code = pipeline.main(["run", str(toy_repo / "notebooks" / "toy.ipynb"), "--profile", "gpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "error: parameter profile='gpu' is not allowed; choose one of ['smoke', 'cpu', 'full']. " \
        "(smoke: CI; cpu: default for dvc repro; full: paper scale on a GPU)"
