"""Scheduling of `make test` under pytest-xdist (``-n N``): a scheduler by scope.

Each test module and each notebook is one scope, run on one worker in collection order (module fixtures such as
the Gemma weights load once; a notebook's cells run in order in one kernel). The PAC notebooks share one scope:
31 and 32 read the datasets that 30 builds, so they run after it on the same worker. The glasses test modules that
use the Gemma 3 weights (:data:`GEMMA_MODULES`) share one scope too, so the session fixtures that load them (about
100 s each) load once per run instead of once per worker. (xdist's own
``--dist loadgroup`` does not keep groups together under pytest 9, hence this hook.)

It also sets the XLA flags of the test processes and notebook kernels (:data:`TEST_XLA_FLAGS`,
:data:`NOTEBOOK_XLA_FLAGS`).
"""

from __future__ import annotations

import os

import pytest

#: XLA flags of every test process: LLVM's expensive passes off. Most of the suite's time is XLA compiling small
#: programs, ~20% less with this flag; results are bit for bit those of XLA's defaults (checked on PAC and PPO
#: training runs), so the Gemma-vs-transformers tolerances are unaffected.
TEST_XLA_FLAGS = "--xla_llvm_disable_expensive_passes=true"
#: Added for notebook kernels (smoke runs under nbval): LLVM's optimisation level 0, a third less compile time
#: again. Results then agree with the defaults to float rounding only (LLVM contracts multiply-adds differently),
#: which the notebooks' assertions allow. Benchmarks and ``dvc repro`` keep XLA's defaults.
NOTEBOOK_XLA_FLAGS = "--xla_backend_optimization_level=0"
#: Notebooks whose smoke run is compute-bound (Gemma 3 forward passes, ~2.5x slower at level 0): test flags only.
COMPUTE_BOUND_NOTEBOOKS = ("notebooks/21_glasses_gemma_collapse.ipynb", "notebooks/23_glasses_copy_count.ipynb")


def with_flag(flags: str, flag: str) -> str:
    """``flags`` plus ``flag``, unless ``flags`` already sets that option (the caller's value wins)."""
    return flags if flag.split("=", 1)[0] in flags else f"{flags} {flag}".strip()


os.environ["XLA_FLAGS"] = with_flag(os.environ.get("XLA_FLAGS", ""), TEST_XLA_FLAGS)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    """A notebook's kernel starts in the setup of its first cell and inherits ``XLA_FLAGS`` then; the test
    process's own flags are restored at once (its XLA backend may start later)."""
    before = os.environ["XLA_FLAGS"]
    path = item.nodeid.split("::", 1)[0]
    if path.startswith("notebooks/") and path not in COMPUTE_BOUND_NOTEBOOKS:
        os.environ["XLA_FLAGS"] = with_flag(before, NOTEBOOK_XLA_FLAGS)
    try:
        yield
    finally:
        os.environ["XLA_FLAGS"] = before

#: Test modules using the session fixtures ``gemma_model`` / ``gemma_reference`` of ``tests/glasses/conftest.py``.
GEMMA_MODULES = ("tests/glasses/test_collapse.py", "tests/glasses/test_gemma.py", "tests/glasses/test_generation.py")


def scope_of(nodeid: str) -> str:
    """The scope of a test item: its file; ``notebooks-pac`` for the PAC notebooks (``notebooks/3*``);
    ``tests-gemma`` for the modules of :data:`GEMMA_MODULES`."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("notebooks/3"):
        return "notebooks-pac"
    return "tests-gemma" if path in GEMMA_MODULES else path


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ScopeScheduling(config, log)
