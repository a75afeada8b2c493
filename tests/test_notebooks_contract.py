"""Every notebook follows the pipeline contract (CONTRIBUTING.md): params.yaml section, smoke defaults,
a DVC stage that runs it, and a stage for nothing else."""

import ast
from pathlib import Path

import papermill
import pytest
import yaml

from replicate.params import PROFILES, load_params_file

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PARAMS = load_params_file(ROOT / "params.yaml")
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"
    assert NOTEBOOKS[0].name == "00_environment.ipynb"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_block_equals_notebook_defaults(notebook):
    declared = papermill.inspect_notebook(str(notebook))
    assert "PROFILE" in declared, f"{notebook.name}: parameters cell must define PROFILE"
    defaults = {name: ast.literal_eval(info["default"]) for name, info in declared.items()}
    assert defaults.pop("PROFILE") == "smoke", f"{notebook.name}: stored PROFILE must be 'smoke'"
    section = PARAMS["notebooks"].get(notebook.stem)
    assert section is not None, f"params.yaml has no notebooks.{notebook.stem}"
    assert section["smoke"] == defaults, f"{notebook.name}: params.yaml smoke block differs from the parameters cell"
    for profile in PROFILES:
        assert set(section[profile]) == set(defaults), (
            f"notebooks.{notebook.stem}.{profile} has other keys than the notebook")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_dvc_stage_runs_the_notebook_with_its_params(notebook):
    stage = STAGES.get(notebook.stem)
    assert stage is not None, f"dvc.yaml has no stage {notebook.stem}"
    rel = f"notebooks/{notebook.name}"
    assert f"python -m replicate.pipeline run {rel}" in stage["cmd"]
    assert rel in stage["deps"]
    assert "profile" in stage["params"] and f"notebooks.{notebook.stem}" in stage["params"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    assert f"reports/{notebook.stem}.ipynb" in outs
    metrics = [next(iter(m)) if isinstance(m, dict) else m for m in stage.get("metrics", [])]
    assert f"data/metrics/{notebook.stem}.json" in metrics
    produced = _stage_outputs()
    for dep in stage["deps"]:
        # A dependency is either in the checkout or produced by another stage (DVC-cached data such
        # as data/pac/datasets is absent from a fresh clone until `dvc repro` builds it).
        assert (ROOT / dep).exists() or dep in produced, (
            f"stage {notebook.stem}: dependency {dep} neither exists nor is an output of another stage"
        )


def _stage_outputs() -> set[str]:
    outs = set()
    for stage in STAGES.values():
        for key in ("outs", "metrics", "plots"):
            for o in stage.get(key, []):
                outs.add(next(iter(o)) if isinstance(o, dict) else o)
    return outs


def test_no_orphan_stages_or_params():
    stems = {nb.stem for nb in NOTEBOOKS}
    assert set(PARAMS["notebooks"]) <= stems | {s for s in STAGES}, "params.yaml section without a notebook"
    for name, stage in STAGES.items():
        if "replicate.pipeline run" in stage["cmd"]:
            assert name in stems, f"dvc stage {name} runs a notebook that does not exist"
