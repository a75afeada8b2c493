"""Scheduling of `make test` under pytest-xdist (``-n N``): a scheduler by scope.

Each test module and each notebook is one scope, run on one worker in collection order (module fixtures such as
the Gemma weights load once; a notebook's cells run in order in one kernel). The PAC notebooks share one scope:
31 and 32 read the datasets that 30 builds, so they run after it on the same worker. The glasses test modules that
use the Gemma 3 weights (:data:`GEMMA_MODULES`) share one scope too, so the session fixtures that load them (about
100 s each) load once per run instead of once per worker. (xdist's own
``--dist loadgroup`` does not keep groups together under pytest 9, hence this hook.)

It also sets the XLA flags of the tests (:data:`TEST_XLA_FLAGS`).
"""

from __future__ import annotations

import os

#: XLA flags of every test process and notebook kernel (kernels inherit the environment): LLVM's optimisation
#: level 0. Most of the suite's time is XLA compiling small programs, about a third less at level 0. Results agree
#: with the default level to float rounding, not bit for bit (LLVM contracts multiply-adds differently), which the
#: tests' tolerances allow. Benchmarks and ``dvc repro`` keep XLA's default. An ``--xla_backend_optimization_level``
#: already in ``XLA_FLAGS`` wins.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

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
