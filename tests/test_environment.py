"""environment.yml, pyproject.toml and the lock file describe one environment (no drift)."""

import re
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ENV = yaml.safe_load((ROOT / "environment.yml").read_text())


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def _locked_extras() -> list[str]:
    return [e for e in PYPROJECT["optional-dependencies"] if e != "gpu"]


def test_lock_satisfies_every_declared_dependency():
    pins = _lock()
    declared = list(PYPROJECT["dependencies"])
    for extra in _locked_extras():
        declared += PYPROJECT["optional-dependencies"][extra]
    for spec in declared:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements/lock.txt: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"lock pins {req.name}=={pins[name]}, outside pyproject's '{req.specifier}': run `make lock`"
        )


def test_environment_yml_installs_the_lock_and_all_locked_extras():
    deps = ENV["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]
    assert PYPROJECT["requires-python"] == ">=3.11"
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-r requirements/lock.txt" in pip
    editable = [p for p in pip if p.startswith("-e .")]
    assert len(editable) == 1
    extras = sorted(re.search(r"\[(.*)\]", editable[0]).group(1).split(","))
    assert extras == sorted(_locked_extras())


def test_running_python_matches():
    assert sys.version_info[:2] >= (3, 11)
