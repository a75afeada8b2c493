"""The reader's repo: committed figures are used, verdict rows point at real figures, the front page's links resolve,
the citation files agree, and a saved figure prints no object repr in a notebook."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from replicate import plotting

ROOT = Path(__file__).resolve().parents[1]
README_MAX_CHARS = 12_000
README_MAX_LINE = 300


def _tracked(folder: str) -> list[str]:
    """Files of ``folder`` in git (a checkout's smoke outputs do not count); every file when git is unavailable."""
    try:
        out = subprocess.run(["git", "ls-files", "--", folder], cwd=ROOT, capture_output=True, text=True, check=True)
        files = [line for line in out.stdout.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        files = []
    return files or sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob("*") if p.is_file())


def _verdict_figures() -> dict[str, list[str]]:
    """Figure path (from the repository root) -> the metrics files whose verdict rows name it."""
    figures: dict[str, list[str]] = {}
    for path in sorted((ROOT / "data" / "metrics").glob("*.json")):
        rows = json.loads(path.read_text(encoding="utf-8")).get("metrics", {}).get("verdicts") or []
        for row in rows:
            if row.get("figure"):
                figures.setdefault(row["figure"], []).append(path.name)
    return figures


def test_every_committed_figure_is_used_by_a_verdict_row_or_a_notebook():
    notebooks = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "notebooks").glob("*.ipynb")}
    used_by_rows = set(_verdict_figures())
    figures = [f for f in _tracked("figures") if Path(f).suffix in {".png", ".svg", ".pdf", ".jpg"}]
    assert figures, "no committed figures found"
    stale = [f for f in figures
             if f not in used_by_rows and not any(Path(f).stem in text for text in notebooks.values())]
    assert not stale, (
        "figures no verdict row (data/metrics/*.json) and no notebook refers to: remove them from figures/ "
        f"and dvc.yaml, or re-run the stage that names them: {stale}")


def test_every_verdict_row_figure_exists():
    missing = {fig: files for fig, files in _verdict_figures().items() if not (ROOT / fig).is_file()}
    assert not missing, f"verdict rows name figures that are not in the repository: {missing}"


def _local_links(markdown: str) -> list[str]:
    """Relative link and image targets of a markdown text (inline links and HTML src/href), without fragments."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown) + re.findall(r'\b(?:src|href)="([^"]+)"', markdown)
    return [t.split("#", 1)[0] for t in targets
            if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", t) and not t.startswith("#") and t.split("#", 1)[0]]


@pytest.mark.parametrize("page", ["README.md", "CONTRIBUTING.md", *sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))])
def test_links_of_the_front_page_and_docs_resolve(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    base = (ROOT / page).parent
    broken = [t for t in _local_links(text) if not (base / t).exists()]
    assert not broken, f"{page} links to files that do not exist: {broken}"


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= README_MAX_CHARS, (
        f"README.md has {len(text)} characters (at most {README_MAX_CHARS}): move detail to docs/")
    long_lines = [i + 1 for i, line in enumerate(text.splitlines()) if len(line) > README_MAX_LINE]
    assert not long_lines, f"README.md lines over {README_MAX_LINE} characters: {long_lines}"
    for needed in ("make test", "make repro", "make site", "docs/claims.md", "CITATION.cff", "docs/papers.bib"):
        assert needed in text, f"README.md should mention {needed!r}"
    images = [t for t in _local_links(text) if Path(t).suffix == ".png"]
    assert len(images) >= 3, "README.md should show one figure per paper"


def test_citation_files_name_the_three_papers():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "message", "title", "authors"):
        assert cff.get(key), f"CITATION.cff lacks {key}"
    cff_ids = {i["value"].removeprefix("arXiv:") for ref in cff["references"] for i in ref.get("identifiers", [])
               if i["value"].startswith("arXiv:")}
    bib = (ROOT / "docs" / "papers.bib").read_text(encoding="utf-8")
    bib_ids = set(re.findall(r"eprint\s*=\s*\{([0-9.]+)\}", bib))
    readme_ids = set(re.findall(r"arxiv\.org/abs/([0-9.]+)", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert cff_ids == bib_ids == readme_ids == {"2305.01521", "2406.04267", "2402.05546"}
    assert bib.count("@inproceedings") + bib.count("@misc") == 3
    assert bib.count("{") == bib.count("}"), "docs/papers.bib has unbalanced braces"


def test_saved_figure_path_shows_no_repr_in_a_notebook(tmp_path):
    from IPython.core.formatters import DisplayFormatter

    fig, ax = plotting.subplots()
    ax.plot([0, 1], [0, 1])
    path = plotting.save_figure(fig, "test_figure", directory=tmp_path)
    assert path == tmp_path / "test_figure.png" and isinstance(path, Path) and path.is_file()
    assert str(path) == str(tmp_path / "test_figure.png")
    assert DisplayFormatter().format(path) == ({}, {})  # what IPython shows when a cell ends with the call
    assert DisplayFormatter().format(Path(path))[0]  # a plain Path would print PosixPath(...)
