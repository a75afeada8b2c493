"""Where PAC's expert snapshots and offline datasets live on disk.

``data/pac/experts/<profile>/<task>/<tier>.npz`` (small, committed for the cpu/full profiles) and
``data/pac/datasets/<profile>/<mix>/<task>.npz`` (DVC-cached). The smoke profile writes under the
git-ignored scratch folder ``data/pac/smoke/`` instead, so CI runs never touch the DVC outputs.
"""

from __future__ import annotations

from pathlib import Path

from replicate import outputs


def pac_root(profile: str) -> Path:
    """``data/pac`` for the cpu/full profiles; ``data/pac/smoke`` (git-ignored scratch) for smoke."""
    root = outputs.data_dir() / "pac"
    return root / "smoke" if profile == "smoke" else root


def experts_dir(profile: str) -> Path:
    """``data/pac/experts/<profile>`` (small, committed) or ``data/pac/smoke/experts/smoke``."""
    return pac_root(profile) / "experts" / profile


def datasets_dir(name: str) -> Path:
    """``name`` is ``<profile>/<mix>`` (e.g. ``cpu/expert30``): ``data/pac/datasets/<name>`` (DVC-cached,
    not in git), or ``data/pac/smoke/datasets/<name>`` for the smoke profile."""
    return pac_root(name.split("/")[0]) / "datasets" / name
