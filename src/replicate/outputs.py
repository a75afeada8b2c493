"""Where a notebook's outputs go.

The pipeline (:mod:`replicate.pipeline`) points these at a staging directory and moves the
files into ``figures/``, ``data/metrics/`` and ``reports/`` only when the whole notebook has
succeeded, so DVC never sees the outputs of a failed run. Run by hand (Jupyter, nbval), a
notebook writes under ``reports/scratch/`` and leaves the committed figures alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from replicate.params import repo_root

FIGURES_ENV = "REPLICATE_FIGURES_DIR"
METRICS_ENV = "REPLICATE_METRICS_DIR"
DATA_ENV = "REPLICATE_DATA_DIR"


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    path = Path(value) if value else repo_root() / default
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    return _dir(FIGURES_ENV, "reports/scratch/figures")


def metrics_dir() -> Path:
    return _dir(METRICS_ENV, "reports/scratch/metrics")


def data_dir() -> Path:
    """Large, DVC-cached data (datasets, checkpoints). Defaults to ``data/`` in every mode."""
    return _dir(DATA_ENV, "data")
