"""Long runs that survive an interruption: finished units of work are kept, training states checkpointed.

A ``full`` run lasts hours; an interrupted ``dvc repro`` must not start from zero. Two tools:

* :class:`Units` keeps the result of each finished *unit of work* (one method x seed x setting) in its own
  file, written atomically. ``units.run(name, inputs, fn)`` returns the stored result when a unit with the
  same name, the same inputs and the same code was finished before; otherwise it calls ``fn()`` and stores
  what it returns. A notebook wraps each unit::

      units = resumable.Units.from_env()
      result = units.run(f"{method}-seed{seed}", {"method": method, "seed": seed, **params}, lambda: train(...))

* :func:`run_chunks` runs a long training loop as ``n_chunks`` calls of a jitted ``chunk(state, i)`` and
  checkpoints the state with orbax at most every ``every_s`` seconds; a re-run restores the latest
  checkpoint and continues from the next chunk. ``chunk`` must depend only on ``(state, i)`` (derive
  keys with ``jax.random.fold_in(key, i)``), so an interrupted and resumed run ends in the same state as
  an uninterrupted one (tested).

Where they write: the pipeline (:mod:`replicate.pipeline`) sets ``$REPLICATE_UNITS_DIR`` to
``data/units/<stem>/<profile>/`` and ``$REPLICATE_CODE_FINGERPRINT`` to a hash of the source files the
notebook imports (its DVC code deps), and removes the folder when the notebook has succeeded. A stored unit
is reused only if the code fingerprint matches: a code change recomputes everything, as DVC would. Run by
hand (Jupyter, nbval) with neither variable set, :meth:`Units.from_env` is disabled and every unit runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import jax
import numpy as np

from replicate import io

UNITS_ENV = "REPLICATE_UNITS_DIR"
FINGERPRINT_ENV = "REPLICATE_CODE_FINGERPRINT"
T = TypeVar("T")


def code_fingerprint(files: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """SHA-256 over the (repository-relative) names and contents of ``files``, order-independent."""
    h = hashlib.sha256()
    base = Path(root) if root is not None else None
    for path in sorted(Path(f) for f in files):
        inside = base is not None and path.resolve().is_relative_to(base.resolve())
        label = path.resolve().relative_to(base.resolve()).as_posix() if inside else path.name
        h.update(label.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic, np.ndarray)) or hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if hasattr(obj, "__dataclass_fields__"):
        return {"__dataclass__": type(obj).__name__, **{k: getattr(obj, k) for k in obj.__dataclass_fields__}}
    return repr(obj)


def _to_numpy(tree: Any) -> Any:
    """JAX arrays in ``tree`` as NumPy arrays (other leaves unchanged), so fresh and stored results agree."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, tree)


class Units:
    """Results of finished units of work under ``directory`` (``None``: disabled, every unit runs)."""

    def __init__(self, directory: str | os.PathLike | None, fingerprint: str = ""):
        self.directory = Path(directory) if directory is not None else None
        self.fingerprint = fingerprint
        self.reused: list[str] = []
        self.computed: list[str] = []

    @classmethod
    def from_env(cls) -> "Units":
        """The store the pipeline set up for this notebook, or a disabled one outside the pipeline."""
        directory = os.environ.get(UNITS_ENV)
        return cls(directory or None, os.environ.get(FINGERPRINT_ENV, ""))

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def key(self, name: str, inputs: Mapping[str, Any]) -> str:
        """A short hash of the unit's name, inputs and the code fingerprint."""
        blob = json.dumps({"name": name, "inputs": inputs, "code": self.fingerprint}, sort_keys=True,
                          default=_json_default)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def path(self, name: str, inputs: Mapping[str, Any]) -> Path:
        if self.directory is None:
            raise ValueError("this Units store is disabled (no directory)")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
        return self.directory / f"{safe}-{self.key(name, inputs)}.pkl"

    def checkpoint_dir(self, name: str, inputs: Mapping[str, Any]) -> Path | None:
        """Where unit ``name`` with these ``inputs`` keeps its training checkpoints (:func:`run_chunks`), beside
        its result file; ``None`` when the store is disabled (then the unit trains without checkpoints)."""
        return None if self.directory is None else self.path(name, inputs).with_suffix(".ckpt")

    def run(self, name: str, inputs: Mapping[str, Any], fn: Callable[[], T]) -> T:
        """The stored result of unit ``name`` with these ``inputs``, or ``fn()`` (then stored atomically).

        JAX arrays in the result come back as NumPy arrays in both cases.
        """
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs of unit {name!r} must be a mapping of the values the unit depends on")
        if self.directory is None:
            return _to_numpy(fn())
        path = self.path(name, inputs)
        if path.exists():
            with open(path, "rb") as fh:
                out = pickle.load(fh)
            self.reused.append(name)
            return out
        out = _to_numpy(fn())
        with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.computed.append(name)
        return out

    def summary(self) -> str:
        if self.directory is None:
            return "units: not stored (run outside the pipeline)"
        return f"units: {len(self.computed)} computed, {len(self.reused)} reused from an interrupted run"


def run_chunks(
    init_state: Any,
    chunk: Callable[[Any, int], Any],
    n_chunks: int,
    checkpoint_dir: str | os.PathLike | None,
    *,
    every_s: float = 600.0,
) -> Any:
    """``state = chunk(state, i)`` for ``i`` in ``range(n_chunks)``, resuming from an orbax checkpoint.

    The state (a pytree of arrays) is saved under ``checkpoint_dir`` after a chunk whenever ``every_s``
    seconds have passed since the last save, and after the last chunk. A checkpoint records the number of
    chunks done; a re-run restores the latest one (shaped like ``init_state``) and runs only the rest.
    ``checkpoint_dir=None`` runs without checkpoints.
    """
    if n_chunks < 1:
        raise ValueError(f"n_chunks must be >= 1, got {n_chunks}")
    if checkpoint_dir is None:
        state = init_state
        for i in range(n_chunks):
            state = chunk(state, i)
        return state
    import orbax.checkpoint as ocp

    directory = Path(checkpoint_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
    with ocp.CheckpointManager(directory, options=options) as manager:
        done = manager.latest_step() or 0
        if done > n_chunks:
            raise ValueError(f"checkpoint in {directory} has {done} chunks done, more than n_chunks={n_chunks}; "
                             "remove the folder or use its run's n_chunks")
        state = init_state
        if done:
            abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, init_state)
            state = manager.restore(done, args=ocp.args.StandardRestore(abstract))
        last_save = time.monotonic()
        for i in range(done, n_chunks):
            state = chunk(state, i)
            if i + 1 == n_chunks or time.monotonic() - last_save >= every_s:
                manager.save(i + 1, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
                last_save = time.monotonic()
    return state
