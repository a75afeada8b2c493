"""`make test` under xdist (root conftest.py): a module or notebook stays on one worker; PAC notebooks together."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _root_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scopes_keep_files_whole_and_the_pac_notebooks_together():
    scope_of = _root_conftest().scope_of
    assert scope_of("tests/test_verdicts.py::test_from_wins") == scope_of("tests/test_verdicts.py::test_formatting")
    assert scope_of("tests/test_verdicts.py::test_from_wins") != scope_of("tests/test_pipeline.py::test_run")
    assert scope_of("notebooks/21_glasses_gemma_collapse.ipynb::Cell 0") == "notebooks/21_glasses_gemma_collapse.ipynb"
    pac = {scope_of(f"notebooks/{nb}.ipynb::Cell 2") for nb in ("30_pac_datasets", "31_pac_vs_bc", "32_pac_scaling")}
    assert len(pac) == 1
    # every PAC notebook present in the repository is in that one scope (31 and 32 read 30's datasets)
    stems = sorted(p.name for p in (ROOT / "notebooks").glob("3*.ipynb"))
    assert {scope_of(f"notebooks/{name}::Cell 0") for name in stems} == pac


def test_the_modules_using_the_gemma_weights_share_one_scope():
    conftest = _root_conftest()
    glasses = ROOT / "tests" / "glasses"
    users = sorted(f"tests/glasses/{p.name}" for p in glasses.glob("test_*.py")
                   if "gemma_model" in p.read_text() or "gemma_reference" in p.read_text())
    assert users == sorted(conftest.GEMMA_MODULES)  # the list is complete: a new user joins the scope
    assert {conftest.scope_of(f"{m}::test_x") for m in users} == {"tests-gemma"}
    assert conftest.scope_of("tests/glasses/test_theory.py::test_x") == "tests/glasses/test_theory.py"


def test_xla_flags_of_the_tests_keep_the_callers_own_values_and_name_real_notebooks():
    conftest = _root_conftest()
    assert conftest.with_flag("", "--a=1") == "--a=1"
    assert conftest.with_flag("--b=2", "--a=1") == "--b=2 --a=1"
    assert conftest.with_flag("--b=2 --a=0", "--a=1") == "--b=2 --a=0"  # a value set by the caller wins
    assert all((ROOT / nb).exists() for nb in conftest.COMPUTE_BOUND_NOTEBOOKS)
