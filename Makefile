# Two commands do everything on a fresh machine with a bare Python 3.11 (no conda):
#   make repro   build .venv if missing, then `dvc repro` at params.yaml's profile (default: cpu)
#   make test    build .venv if missing, then unit tests + every notebook at smoke under nbval
#                (PYTEST_WORKERS=2 processes; PYTEST_WORKERS=0 runs them in one)
# Other targets: make env | unit | nbval | lint | readme | deps | site | lock | bench | clean-env
#   make lint    ruff check (line length 120; CI runs it before the tests)
#   make readme  regenerate README.md's verdict counts and timings and docs/claims.md from data/metrics/*.json
#   make deps    regenerate dvc.yaml's code deps from each stage's import closure
#   make site    static HTML site of the README, docs/ and the executed notebooks in _site/ (offline, no re-execution)
PYTHON ?= python3.11
VENV ?= .venv
UV_VERSION ?= 0.13.9
BIN := $(VENV)/bin
# The lock pins torch's CPU build (2.13.0+cpu). It is read from /opt/wheels where that exists;
# elsewhere from PyTorch's CPU wheel index (override TORCH_INDEX to change it).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
FIND_LINKS := $(if $(wildcard /opt/wheels/torch-*),--find-links /opt/wheels,--extra-index-url $(TORCH_INDEX) --index-strategy unsafe-best-match)
# Unit tests, then notebooks. pytest exits 5 when it collects nothing: that is a failure here.
PYTEST := $(BIN)/python -m pytest
# `make test` spreads test modules and notebooks over PYTEST_WORKERS processes (pytest-xdist; grouping in
# conftest.py: one module or notebook per worker at a time, the PAC notebooks in order). 0: one process.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS))

.PHONY: env repro test unit nbval lint readme deps site bench gpu-check lock clean-env

$(BIN)/.installed: requirements/lock.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --python $(BIN)/python $(FIND_LINKS) requirements/lock.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $@

env: $(BIN)/.installed

repro: env
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	$(BIN)/python -m replicate.readme

NBVAL := --nbval-lax --nbval-sanitize-with .nbval_sanitize.cfg

# One pytest run, one closing summary line: unit tests and every notebook (smoke defaults) under nbval.
test: env
	$(PYTEST) $(XDIST) $(NBVAL) tests notebooks

lint: env
	$(BIN)/ruff check .

readme: env
	$(BIN)/python -m replicate.readme

deps: env
	$(BIN)/python -m replicate.dvc_stages

# The README as front page, docs/*.md, benchmark tables and reports/*.ipynb as committed (nothing is executed).
site: env
	$(BIN)/python -m replicate.site --out _site

unit: env
	$(PYTEST) tests

nbval: env
	$(PYTEST) $(NBVAL) notebooks

# On a lent GPU machine (its image's python3 has jax[cuda], flax, optax, torch): the scale-path check, at most
# ~8 minutes; writes benchmarks/results/gpu_check.{json,md}. Carry the wheels of tools/gpu_wheels.sh in .whl/.
gpu-check:
	if ls .whl/*.whl >/dev/null 2>&1; then python3 -m pip install -q --no-index --no-deps --no-compile \
	    --upgrade --target /tmp/site .whl/*.whl; fi
	PYTHONPATH=$(CURDIR)/src:/tmp/site python3 benchmarks/gpu_check.py --budget-s 420

bench: env
	for b in benchmarks/*.py; do [ "$$b" = benchmarks/gpu_check.py ] || $(BIN)/python $$b || exit 1; done

# Refresh the lock after changing dependencies in pyproject.toml (see README).
lock: env
	$(BIN)/uv pip compile pyproject.toml --extra rl --extra lm --extra dev --python-version 3.11 \
	    -c requirements/constraints.txt $(FIND_LINKS) --no-emit-find-links --no-emit-index-url -o requirements/lock.txt

clean-env:
	rm -rf $(VENV)
