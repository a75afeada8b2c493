"""The shared layer (replicate.rl, replicate.nn) never imports a paper package (issue 10).

Imports are read with ``ast`` from the source, so imports inside functions and ``if`` blocks count too,
and relative imports are resolved against the module's package.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "replicate"
SHARED = ("rl", "nn")
PAPERS = ("replicate.recode", "replicate.glasses", "replicate.pac")


def imported_modules(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, relative imports made absolute (``root``: the package dir)."""
    package = ["replicate", *path.relative_to(root).with_suffix("").parts]
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{alias.name}") for alias in node.names]  # from replicate import recode
    return out


def paper_imports(path: Path, root: Path = SRC) -> list[str]:
    return [f"{path.relative_to(root.parent)}:{line}: {mod}" for line, mod in imported_modules(path, root)
            if any(mod == p or mod.startswith(p + ".") for p in PAPERS)]


def shared_files() -> list[Path]:
    return sorted(p for d in SHARED for p in (SRC / d).rglob("*.py"))


def test_the_shared_layer_exists_and_is_scanned():
    names = {p.relative_to(SRC).as_posix() for p in shared_files()}
    assert {"rl/ppo.py", "rl/atari.py", "rl/envs.py", "nn/mlp.py"} <= names


@pytest.mark.parametrize("path", shared_files(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_shared_module_imports_no_paper_package(path):
    assert paper_imports(path) == [], "shared code must not import a paper package; move the code into the paper"


def test_the_check_catches_imports_inside_functions_and_relative_ones(tmp_path):
    fake = tmp_path / "replicate"
    (fake / "rl").mkdir(parents=True)
    bad = fake / "rl" / "bad.py"
    bad.write_text("import numpy\n\ndef f():\n    from replicate.recode import memory\n    return memory\n\n"
                   "def g():\n    from ..glasses import tasks\n    import replicate.pac.losses\n"
                   "from replicate import pac\n")
    found = paper_imports(bad, fake)
    assert any("replicate.recode" in f for f in found)
    assert any("replicate.glasses" in f for f in found)
    assert any(f.endswith("replicate.pac.losses") for f in found)
    assert any(f.endswith(": replicate.pac") for f in found)
    assert not any("numpy" in f for f in found)
