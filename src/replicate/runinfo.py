"""Run metadata: which code, profile, device and how long; embedded in every metrics file and executed notebook.

``git_dirty`` is True when a source input (:data:`SOURCE_PATHS`: the package, notebooks, params, the DVC
pipeline, the dependency lock) differs from ``git_commit``; outputs the pipeline writes do not count.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from replicate.params import check_profile, repo_root

# The source inputs of a run: a change here (tracked or new) makes the run record dirty. Generated outputs
# (figures/, reports/, data/, dvc.lock, the README's tables) do not: a stage writes them while it runs.
SOURCE_PATHS: tuple[str, ...] = ("src", "notebooks", "params.yaml", "dvc.yaml", "pyproject.toml", "requirements")


def _git(*args: str, root=None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root or repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def device_summary() -> dict[str, Any]:
    """JAX backend and devices, e.g. ``{"backend": "cpu", "devices": ["TFRT_CPU_0"], "device_kind": "cpu"}``."""
    import jax

    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else "none",
        "device_count": len(devices),
    }


@dataclass
class RunInfo:
    """Metadata of one notebook run. Create with :func:`start`; ``finish()`` records the wall time."""

    profile: str
    git_commit: str | None
    git_dirty: bool | None
    started_utc: str
    host: str
    python: str
    jax_version: str
    device: dict[str, Any]
    wall_time_s: float | None = None
    _t0: float = field(default=0.0, repr=False)

    def finish(self) -> "RunInfo":
        self.wall_time_s = round(time.perf_counter() - self._t0, 3)
        return self

    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_t0")
        return d

    def summary(self) -> str:
        """One line for a notebook's 'what we ran' cell."""
        dev = self.device
        commit = (self.git_commit or "unknown")[:10] + ("+dirty" if self.git_dirty else "")
        wall = f"{self.wall_time_s:.1f} s" if self.wall_time_s is not None else f"{self.elapsed_s():.1f} s so far"
        return (
            f"profile={self.profile} | commit {commit} | {dev['backend']} x{dev['device_count']} ({dev['device_kind']})"
            f" | jax {self.jax_version} | wall time {wall}"
        )


def changed_sources(root=None) -> list[str] | None:
    """Source inputs (:data:`SOURCE_PATHS`) that differ from the commit, new files included (``git status``
    lines); None outside a git checkout."""
    status = _git("status", "--porcelain", "--untracked-files=all", "--", *SOURCE_PATHS, root=root)
    return None if status is None else [line for line in status.splitlines() if line.strip()]


def start(profile: str) -> RunInfo:
    """Begin a run record for ``profile`` (validated)."""
    import jax

    check_profile(profile)
    changed = changed_sources()
    return RunInfo(
        profile=profile,
        git_commit=_git("rev-parse", "HEAD"),
        git_dirty=None if changed is None else bool(changed),
        started_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        host=platform.node(),
        python=platform.python_version(),
        jax_version=jax.__version__,
        device=device_summary(),
        _t0=time.perf_counter(),
    )
