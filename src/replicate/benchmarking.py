"""Small helpers for ``benchmarks/*.py``: robust timing and one results format.

A benchmark times the candidate and a named baseline in the same process, then writes
``benchmarks/results/<name>.json`` (machine-readable, with the run record) and ``<name>.md``
(a table the README links to) atomically.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from replicate import io
from replicate.params import repo_root
from replicate.runinfo import device_summary


def block(x: Any) -> Any:
    """Wait for JAX arrays (any pytree) to be computed; a no-op for other values."""
    import jax

    return jax.block_until_ready(x)


def time_call(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1, min_time_s: float = 0.2) -> dict[str, float]:
    """Median/min seconds per call of ``fn()`` (results blocked on), after ``warmup`` calls.

    Each repeat runs ``fn`` enough times to last ``min_time_s``, so short calls are not dominated
    by timer resolution.
    """
    for _ in range(warmup):
        block(fn())
    t0 = time.perf_counter()
    block(fn())
    once = max(time.perf_counter() - t0, 1e-9)
    inner = max(1, int(min_time_s / once))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            out = fn()
        block(out)
        samples.append((time.perf_counter() - t0) / inner)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "repeats": repeats, "inner": inner}


def write_results(name: str, rows: Sequence[dict[str, Any]], *, title: str, notes: str = "") -> Path:
    """Write ``rows`` (one dict per measurement) to ``benchmarks/results/<name>.{json,md}``."""
    import jax

    out_dir = repo_root() / "benchmarks" / "results"
    meta = {"device": device_summary(), "jax_version": jax.__version__}
    io.write_json(out_dir / f"{name}.json", {"title": title, "notes": notes, "meta": meta, "rows": list(rows)})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"# {title}", "", notes, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    lines += ["", f"Device: {meta['device']['backend']} ({meta['device']['device_kind']}), jax {meta['jax_version']}."]
    return io.write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
