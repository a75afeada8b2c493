"""DVC stage deps that cannot go stale: each stage's code deps are the import closure of what it runs.

A stage runs either a notebook (``python -m replicate.pipeline run notebooks/NN_topic.ipynb``) or a module
(``python -m replicate.pac.collection``). Its code deps are every file of ``src/replicate`` that the notebook
or module imports, directly or through other ``replicate`` modules (imports inside functions included,
package ``__init__.py`` files included), plus the pipeline runner's own closure for notebook stages.

``python -m replicate.dvc_stages`` rewrites the ``src/replicate/...`` entries of every stage's ``deps`` in
``dvc.yaml`` to that closure (other deps, such as the notebook itself or data folders, are kept as
written); ``python -m replicate.dvc_stages --check`` exits 1 when they differ. ``tests/test_architecture.py``
runs the check, so a new import that DVC would not see fails the tests.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Iterable, Sequence

PACKAGE = "replicate"
PIPELINE_MODULE = "replicate.pipeline"


def _module_file(src: Path, module: str) -> Path | None:
    """``src/replicate/a/b.py`` or ``src/replicate/a/b/__init__.py`` for ``replicate.a.b``; None if neither exists."""
    base = src.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(source: str, *, current: str | None = None) -> set[str]:
    """Names of ``replicate`` modules (or names inside them) that ``source`` imports, anywhere in the code.

    ``from replicate.a import b`` yields both ``replicate.a`` and ``replicate.a.b``; the caller keeps the
    names that are modules. ``current`` (the importing module's name) resolves relative imports.
    """
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                if current is None:
                    continue
                parts = current.split(".")[: -node.level]
                mod = ".".join(parts + ([mod] if mod else []))
            if mod.split(".")[0] != PACKAGE:
                continue
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names if a.name != "*")
    return found


def notebook_source(path: Path) -> str:
    """The code cells of a notebook joined into one parseable source (IPython magics and shell lines dropped)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        text = "".join(cell.get("source", []))
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        cells.append("\n".join(lines))
    return "\n\n".join(cells)


def closure(src: Path, modules: Iterable[str]) -> list[Path]:
    """Files of every ``replicate`` module reachable from ``modules`` by imports, with their packages' ``__init__``."""
    todo = [m for m in modules]
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(src, name)
        if path is None:
            continue  # a function or class imported from a module, not a module
        files.add(path)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        current = name if path.name != "__init__.py" else f"{name}.__init__"
        todo.extend(imported_modules(path.read_text(encoding="utf-8"), current=current))
    return sorted(files)


def stage_target(cmd: str) -> tuple[str, str] | None:
    """``("notebook", path)`` or ``("module", name)`` for a stage command, None for anything else."""
    words = shlex.split(cmd)
    if len(words) >= 3 and words[1:3] == ["-m", PIPELINE_MODULE] and "run" in words:
        nb = next((w for w in words if w.endswith(".ipynb")), None)
        return ("notebook", nb) if nb else None
    if len(words) >= 3 and words[1] == "-m" and words[2].startswith(f"{PACKAGE}."):
        return ("module", words[2])
    return None


def stage_code_deps(root: Path, cmd: str) -> list[str] | None:
    """Sorted repository-relative paths of the code a stage command runs; None if the command is not ours."""
    target = stage_target(cmd)
    if target is None:
        return None
    src = root / "src"
    kind, what = target
    if kind == "notebook":
        roots = imported_modules(notebook_source(root / what)) | {PIPELINE_MODULE}
    else:
        roots = {what}
    return [p.relative_to(root).as_posix() for p in closure(src, roots)]


_STAGE = re.compile(r"^  (\S[^:]*):\s*$")
_CMD = re.compile(r"^    cmd:\s*(.+?)\s*$")
_KEY = re.compile(r"^    (\w+):")
_ITEM = re.compile(r"^      - (.+?)\s*$")


def rewrite(root: Path, text: str) -> str:
    """``dvc.yaml`` text with each stage's ``src/replicate`` deps replaced by the stage's import closure."""
    lines = text.splitlines()
    out: list[str] = []
    cmd: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if _STAGE.match(line):
            cmd = None
        m = _CMD.match(line)
        if m:
            cmd = m.group(1)
        if line.rstrip() == "    deps:" and cmd is not None:
            out.append(line)
            i += 1
            items = []
            while i < len(lines) and _ITEM.match(lines[i]):
                items.append(_ITEM.match(lines[i]).group(1))
                i += 1
            code = stage_code_deps(root, cmd)
            if code is not None:
                items = [x for x in items if not x.startswith("src/replicate/")] + code
            out.extend(f"      - {x}" for x in items)
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from replicate import io
    from replicate.params import repo_root

    parser = argparse.ArgumentParser(prog="python -m replicate.dvc_stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml's code deps are not the closures")
    args = parser.parse_args(argv)
    root = repo_root()
    path = root / "dvc.yaml"
    old = path.read_text(encoding="utf-8")
    new = rewrite(root, old)
    if args.check:
        if new != old:
            print("dvc.yaml's code deps differ from the stages' import closures: run `make deps`", file=sys.stderr)
            return 1
        return 0
    if new != old:
        io.write_text(path, new)
        print("dvc.yaml: code deps regenerated from the import closures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
