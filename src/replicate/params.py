"""Parameter profiles and validation at the notebook boundary.

``params.yaml`` (repository root) holds the active profile and, per notebook, one block of
parameters per profile::

    profile: cpu                  # smoke | cpu | full
    notebooks:
      00_environment:
        smoke: {MATRIX_SIZE: 64, SEED: 0}
        cpu:   {MATRIX_SIZE: 512, SEED: 0}
        full:  {MATRIX_SIZE: 4096, SEED: 0}

The pipeline (:mod:`replicate.pipeline`) injects one block into the notebook's ``parameters``
cell with papermill. A notebook's stored defaults are its ``smoke`` values, so opening it in
Jupyter and pressing run is quick; ``tests/test_notebook_params.py`` checks the two agree.

Every notebook validates its parameters in the cell after the parameters cell::

    P = validate(globals(), {"MATRIX_SIZE": Param(int, min=1), "SEED": Param(int, min=0)})

An unknown profile, a wrong type or an impossible value stops the notebook with a
:class:`ParameterError` that names the parameter, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

import yaml

PROFILES: tuple[str, ...] = ("smoke", "cpu", "full")


class ParameterError(ValueError):
    """A notebook or config parameter has a value that cannot be used; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Param:
    """Specification of one parameter: type, optional allowed choices and numeric bounds (inclusive)."""

    type: type | tuple[type, ...]
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    help: str = ""
    # For list/tuple parameters: specification each element must satisfy.
    item: "Param | None" = None

    def check(self, name: str, value: Any) -> Any:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        # bool is an int subclass in Python; never accept it for a numeric parameter.
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True  # an int literal is a fine float
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise ParameterError(
                f"parameter {name}={value!r} has type {type(value).__name__}; expected {names}.{self._hint()}")
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                f"parameter {name}={value!r} is not allowed; choose one of {list(self.choices)}.{self._hint()}")
        if self.min is not None and value < self.min:
            raise ParameterError(f"parameter {name}={value!r} is too small; it must be >= {self.min}.{self._hint()}")
        if self.max is not None and value > self.max:
            raise ParameterError(f"parameter {name}={value!r} is too large; it must be <= {self.max}.{self._hint()}")
        if self.item is not None:
            if len(value) == 0:
                raise ParameterError(f"parameter {name} is empty; give at least one value.{self._hint()}")
            value = type(value)(self.item.check(f"{name}[{i}]", v) for i, v in enumerate(value))
        return value

    def _hint(self) -> str:
        return f" ({self.help})" if self.help else ""


PROFILE_PARAM = Param(str, choices=PROFILES, help="smoke: CI; cpu: default for dvc repro; full: paper scale on a GPU")


def validate(namespace: Mapping[str, Any], spec: Mapping[str, Param]) -> SimpleNamespace:
    """Validate a notebook's parameters (``globals()``) against ``spec``; return them as a namespace.

    ``PROFILE`` is always checked. Every name in ``spec`` must be defined in ``namespace``.
    """
    spec = {"PROFILE": PROFILE_PARAM, **spec}
    out = {}
    for name, param in spec.items():
        if name not in namespace:
            raise ParameterError(
                f"parameter {name} is not defined; add it to the notebook's parameters cell and to params.yaml")
        out[name] = param.check(name, namespace[name])
    return SimpleNamespace(**out)


def check_profile(profile: str) -> str:
    """Raise a :class:`ParameterError` unless ``profile`` is one of :data:`PROFILES`."""
    return PROFILE_PARAM.check("profile", profile)


def repo_root() -> Path:
    """The repository root: ``$REPLICATE_ROOT`` if set, else the nearest parent holding ``params.yaml``."""
    env = os.environ.get("REPLICATE_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "params.yaml").exists() and (candidate / "src" / "replicate").exists():
            return candidate
    # Installed package inside a checkout (editable install): src/replicate/params.py -> root.
    return Path(__file__).resolve().parents[2]


def load_params_file(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (default: the repository's) and check its layout."""
    path = Path(path) if path is not None else repo_root() / "params.yaml"
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict) or "notebooks" not in data or not isinstance(data["notebooks"], dict):
        raise ParameterError(f"{path}: expected a mapping with 'profile' and 'notebooks' keys")
    check_profile(data.get("profile", "cpu"))
    for nb, block in data["notebooks"].items():
        if not isinstance(block, dict) or set(block) != set(PROFILES):
            got = sorted(block) if isinstance(block, dict) else type(block).__name__
            raise ParameterError(f"{path}: notebooks.{nb} must have exactly the profiles {list(PROFILES)}, got {got}")
    return data


def notebook_params(notebook: str, profile: str | None = None, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Parameters of ``notebook`` (a stem such as ``"00_environment"``) for ``profile`` (default: the file's)."""
    data = load_params_file(path)
    profile = check_profile(profile or data.get("profile", "cpu"))
    if notebook not in data["notebooks"]:
        raise ParameterError(f"params.yaml has no section notebooks.{notebook}; known: {sorted(data['notebooks'])}")
    values = dict(data["notebooks"][notebook][profile] or {})
    values["PROFILE"] = profile
    return values
