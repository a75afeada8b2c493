"""Key numbers of a notebook, written as one JSON file per notebook (DVC metrics)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from replicate import io, outputs
from replicate.runinfo import RunInfo


def write_metrics(name: str, metrics: Mapping[str, Any], run: RunInfo) -> Path:
    """Atomically write ``{"metrics": ..., "run": ...}`` to ``<metrics dir>/<name>.json``.

    ``run`` is finished (wall time recorded) here. Non-finite floats are rejected: a NaN in a
    metrics file is a bug to surface, not a number to plot.
    """
    _check_finite(metrics, name)
    run.finish()
    path = outputs.metrics_dir() / f"{name}.json"
    io.write_json(path, {"metrics": dict(metrics), "run": run.as_dict()})
    return path


def _check_finite(obj: Any, where: str) -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"metric {where} is {obj}; metrics must be finite")
