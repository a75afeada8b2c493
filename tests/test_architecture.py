"""The architecture rules of CONTRIBUTING, checked on the code itself.

- Shared code (``replicate.rl``, ``replicate.nn`` and the pipeline helpers at the package root) never
  imports a paper package (``replicate.recode``, ``.glasses``, ``.pac``).
- No ``_private`` name of a ``replicate`` module is used outside that module (src, tests, benchmarks,
  tools, notebooks).
- Modules are imported by name: no one- or two-letter aliases for ``replicate`` modules.
- Every DVC stage's code deps equal the import closure of the notebook or module it runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from replicate import dvc_stages
from replicate.params import repo_root

ROOT = repo_root()
SRC = ROOT / "src" / "replicate"
PAPERS = ("recode", "glasses", "pac")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "src").with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[tuple[str, str, str | None]]:
    """(label, source, module name or None) for every Python file and notebook we own."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        out.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"), _module_name(path)))
    for folder in ("tests", "benchmarks", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            out.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"), None))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        out.append((str(path.relative_to(ROOT)), dvc_stages.notebook_source(path), None))
    return out


SOURCES = _sources()


def _is_module(name: str) -> bool:
    base = ROOT / "src" / Path(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_shared_code_never_imports_a_paper_package():
    bad = []
    for label, source, module in SOURCES:
        if module is None or module.split(".")[1:2] and module.split(".")[1] in PAPERS:
            continue
        for name in dvc_stages.imported_modules(source, current=module):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] in PAPERS:
                bad.append(f"{label} imports {name}")
    assert not bad, "shared modules must not import paper packages:\n" + "\n".join(sorted(set(bad)))


def _aliases(tree: ast.AST) -> tuple[dict[str, str], list[str]]:
    """Names bound to replicate modules in ``tree``, and imports of private replicate names."""
    bound: dict[str, str] = {}
    private: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "replicate" and a.asname:
                    bound[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "replicate" and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if a.name.startswith("_") and not a.name.startswith("__"):
                    private.append(f"from {node.module} import {a.name}")
                if _is_module(full):
                    bound[a.asname or a.name] = full
    return bound, private


def test_no_private_replicate_names_outside_their_module():
    bad = []
    for label, source, _ in SOURCES:
        tree = ast.parse(source)
        bound, private = _aliases(tree)
        bad += [f"{label}: {p}" for p in private]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{label}: {node.value.id}.{node.attr} ({bound[node.value.id]})")
    assert not bad, "make these public (and tested) or keep them inside their module:\n" + "\n".join(sorted(set(bad)))


def test_replicate_modules_are_imported_by_name():
    bad = []
    for label, source, _ in SOURCES:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mod = node.module if isinstance(node, ast.ImportFrom) else None
                for a in node.names:
                    full = f"{mod}.{a.name}" if mod else a.name
                    if full.split(".")[0] == "replicate" and a.asname and len(a.asname) <= 2 and _is_module(full):
                        bad.append(f"{label}: {full} as {a.asname}")
    assert not bad, "import modules by name (from replicate.recode import memory), no short aliases:\n" + "\n".join(bad)


def test_dvc_stage_deps_cover_the_import_closure():
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert dvc_stages.rewrite(ROOT, text) == text, "dvc.yaml's code deps are stale: run `make deps`"


def test_closure_follows_imports_inside_functions(tmp_path):
    pkg = tmp_path / "src" / "replicate"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from replicate.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("import numpy\n")
    (pkg / "unused.py").write_text("")
    files = dvc_stages.closure(tmp_path / "src", {"replicate.a"})
    assert [p.relative_to(pkg).as_posix() for p in files] == [
        "__init__.py", "a.py", "sub/__init__.py", "sub/b.py", "sub/c.py"]


@pytest.mark.parametrize("cmd, expected", [
    ("python -m replicate.pipeline run notebooks/10_x.ipynb --no-progress", ("notebook", "notebooks/10_x.ipynb")),
    ("python -m replicate.pac.collection", ("module", "replicate.pac.collection")),
    ("echo hi", None),
])
def test_stage_target(cmd, expected):
    assert dvc_stages.stage_target(cmd) == expected
