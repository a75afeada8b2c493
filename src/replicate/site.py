"""A static HTML site of the committed results, built offline from the repository's files (``make site``).

``python -m replicate.site [--out _site]`` renders

- the front page (``README.md``) as ``index.html``, ``CONTRIBUTING.md``, every ``docs/*.md`` (the generated claims
  table ``docs/claims.md`` included) and the benchmark tables ``benchmarks/results/*.md`` with markdown-it-py;
- every executed notebook ``reports/<stem>.ipynb`` with nbconvert's HTML exporter, outputs as stored: nothing is
  executed, so the pages show exactly the committed run (figures are the PNG outputs embedded in the notebook);
- ``reports/index.html``: the list of executed notebooks with their run records (profile, commit, wall time);

copies ``figures/`` (and any other local image a page shows) and rewrites links between the pages: a link to a
rendered ``.md`` or ``.ipynb`` goes to its ``.html`` page, a link to any other repository file goes to that file
in the checkout. Nothing is downloaded; notebook pages load MathJax from a CDN when online, for the formulas in
their narration (without it they show the TeX source). The site is built in a temporary folder next to ``--out``
and swapped in at the end, so a failed build leaves the previous site alone. Open ``<out>/index.html`` in a browser.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from replicate import readme

SITE_DIR = "_site"
FRONT_PAGE = "README.md"
#: Markdown sources rendered as pages (globs relative to the repository root).
MARKDOWN_SOURCES = ("README.md", "CONTRIBUTING.md", "docs/*.md", "benchmarks/results/*.md")
#: Folders copied whole into the site (the figures the front page and the claims table show).
ASSET_DIRS = ("figures",)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
#: Order of the docs pages in the navigation bar (others follow by name).
DOCS_ORDER = ("claims", "notebooks", "pipeline", "costs", "benchmarks")
NOTEBOOK_INDEX = "reports/index.html"

_URL_ATTR = re.compile(r'\b(href|src)="([^"]*)"')
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

CSS = """
body { margin: 0; font: 16px/1.55 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; }
nav.site-nav { background: #24292f; padding: 0.55em 1.2em; font-size: 15px; position: sticky; top: 0; z-index: 100; }
nav.site-nav a { color: #f0f3f6; margin-right: 1.1em; text-decoration: none; }
nav.site-nav a:hover { text-decoration: underline; }
nav.site-nav a.home { font-weight: 600; }
main.markdown-body { max-width: 1100px; margin: 0 auto; padding: 1.2em 1.6em 3em; }
.markdown-body img { max-width: 100%; }
.markdown-body table { border-collapse: collapse; display: block; overflow-x: auto; margin: 1em 0; font-size: 14px; }
.markdown-body th, .markdown-body td { border: 1px solid #d0d7de; padding: 0.35em 0.6em; vertical-align: top; }
.markdown-body tr:nth-child(2n) { background: #f6f8fa; }
.markdown-body code { background: #eff1f3; padding: 0.1em 0.3em; border-radius: 4px; font-size: 90%; }
.markdown-body pre { background: #f6f8fa; padding: 0.8em 1em; overflow-x: auto; border-radius: 6px; }
.markdown-body pre code { background: none; padding: 0; }
.markdown-body h1, .markdown-body h2 { border-bottom: 1px solid #d8dee4; padding-bottom: 0.25em; }
div.run-record { max-width: 1100px; margin: 0.8em auto 0; padding: 0.5em 1em; background: #f6f8fa;
  border: 1px solid #d0d7de; border-radius: 6px; font-size: 14px; }
"""


@dataclass
class SiteMap:
    """Where each source goes in the site, and which files the pages link to."""

    root: Path
    out: Path
    pages: dict[str, str] = field(default_factory=dict)  # source (posix, from root) -> page (posix, from out)
    assets: set[str] = field(default_factory=set)  # files copied as they are (posix, from root and from out)
    titles: dict[str, str] = field(default_factory=dict)  # page -> title

    def url(self, url: str, source: str, page: str) -> str:
        """``url`` as written in ``source`` (a repository file), rewritten for the page ``page`` of the site."""
        if not url or url.startswith(("#", "/", "data:")) or _SCHEME.match(url):
            return url
        path, sep, fragment = url.partition("#")
        path = path.split("?", 1)[0]
        target = os.path.normpath(os.path.join(os.path.dirname(source), unquote(path))).replace(os.sep, "/")
        if target == ".." or target.startswith("../"):
            return url  # outside the repository: leave it
        if target in self.pages:
            dest = self.pages[target]
        elif target.rstrip("/") == "reports" and NOTEBOOK_INDEX in self.titles:
            dest = NOTEBOOK_INDEX
        elif (self.root / target).is_file() and (
                target in self.assets or Path(target).suffix.lower() in IMAGE_SUFFIXES):
            self.assets.add(target)
            dest = target
        else:  # any other repository file or folder: the checkout's own copy
            rel = os.path.relpath(self.root / target, self.out / os.path.dirname(page))
            return rel.replace(os.sep, "/") + (("/" if path.endswith("/") else "") + sep + fragment)
        rel = os.path.relpath(dest, os.path.dirname(page) or ".").replace(os.sep, "/")
        return rel + sep + fragment

    def rewrite(self, html_text: str, source: str, page: str) -> str:
        def sub(match: re.Match) -> str:
            new = self.url(html.unescape(match.group(2)), source, page)
            return f'{match.group(1)}="{html.escape(new, quote=True)}"'

        return _URL_ATTR.sub(sub, html_text)

    def nav(self, page: str) -> str:
        """The navigation bar of ``page``: front page, claims, notebooks, the other docs pages."""
        links = [("index.html", "replicate", "home")]
        docs = sorted((p for p in self.pages.values() if p.startswith("docs/")),
                      key=lambda p: (DOCS_ORDER.index(Path(p).stem) if Path(p).stem in DOCS_ORDER else len(DOCS_ORDER),
                                     p))
        for target in docs[:1] + [NOTEBOOK_INDEX] + docs[1:]:
            if target == NOTEBOOK_INDEX:
                links.append((target, "Executed notebooks", ""))
            else:
                links.append((target, Path(target).stem.replace("_", " ").capitalize(), ""))
        base = os.path.dirname(page) or "."
        return "".join(
            f'<a class="{cls}" href="{html.escape(os.path.relpath(target, base).replace(os.sep, "/"))}">'
            f"{html.escape(text)}</a>" for target, text, cls in links)


def slug(text: str, seen: dict[str, int]) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to ``-``; repeats get ``-1``, ``-2``."""
    base = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}-{n}"


def render_markdown(text: str) -> tuple[str, str]:
    """(HTML body, title) of a markdown page: CommonMark + tables, raw HTML kept, GitHub-style heading ids."""
    from markdown_it import MarkdownIt  # noqa: PLC0415 (a dev dependency: only `make site` needs it)

    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    tokens = md.parse(text)
    seen: dict[str, int] = {}
    title = ""
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            content = tokens[i + 1].content
            token.attrSet("id", slug(re.sub(r"[`*_]", "", content), seen))
            if token.tag == "h1" and not title:
                title = re.sub(r"[`*_]", "", content)
    return md.renderer.render(tokens, md.options, {}), title


def _page(title: str, nav: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body><nav class=\"site-nav\">{nav}</nav>\n<main class=\"markdown-body\">\n{body}</main></body></html>\n")


def _run_record(meta: dict) -> str:
    """One line saying how a report was produced, from the run record the pipeline stores in its metadata."""
    run = meta.get("replicate", {})
    if not run:
        return "no run record (not produced by the pipeline)"
    parts = [f"profile <b>{html.escape(str(run.get('profile', '?')))}</b>"]
    if run.get("wall_time_s") is not None:
        parts.append(f"wall time {readme.fmt_wall(float(run['wall_time_s']))}")
    device = run.get("device", {})
    if isinstance(device, dict) and device.get("backend"):
        parts.append(f"on {html.escape(str(device['backend']))}")
    if run.get("git_commit"):
        parts.append(f"commit <code>{html.escape(str(run['git_commit'])[:10])}</code>"
                     + (" (uncommitted changes)" if run.get("git_dirty") else ""))
    if run.get("started_utc"):
        parts.append(f"started {html.escape(str(run['started_utc']))}")
    return ", ".join(parts)


def _notebook_title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def sources(root: Path) -> tuple[list[str], list[str]]:
    """(markdown sources, executed notebooks) of the site, as posix paths relative to ``root``."""
    markdown: list[str] = []
    for pattern in MARKDOWN_SOURCES:
        markdown += sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())
    notebooks = sorted(p.relative_to(root).as_posix() for p in (root / "reports").glob("*.ipynb")
                       if not p.name.endswith(".failed.ipynb"))
    return markdown, notebooks


def build(root: Path, out: Path) -> Path:
    """Build the site of ``root`` into ``out`` (replaced as a whole at the end); return ``out/index.html``."""
    import nbformat  # noqa: PLC0415
    from nbconvert import HTMLExporter  # noqa: PLC0415 (a dev dependency: only `make site` needs it)

    root, out = Path(root).resolve(), Path(out).resolve()
    if not (root / FRONT_PAGE).is_file():
        raise ValueError(f"{root} has no {FRONT_PAGE}: pass the repository root")
    if out == root or root.is_relative_to(out):
        raise ValueError(f"--out {out} would replace the repository; choose a new folder such as {root / SITE_DIR}")
    markdown, notebooks = sources(root)
    site = SiteMap(root=root, out=out)
    for src in markdown:
        site.pages[src] = "index.html" if src == FRONT_PAGE else str(PurePosixPath(src).with_suffix(".html")).lower()
    for src in notebooks:
        site.pages[src] = str(PurePosixPath(src).with_suffix(".html"))
    site.titles[NOTEBOOK_INDEX] = "Executed notebooks"
    for folder in ASSET_DIRS:
        site.assets |= {p.relative_to(root).as_posix() for p in (root / folder).glob("*") if p.is_file()}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        def write(page: str, text: str) -> None:
            path = tmp / page
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

        for src in markdown:
            body, title = render_markdown((root / src).read_text(encoding="utf-8"))
            page = site.pages[src]
            title = title or Path(src).stem
            write(page, _page(f"{title} · replicate", site.nav(page), site.rewrite(body, src, page)))

        exporter = HTMLExporter(template_name="lab")
        rows = ["| notebook | title | run |", "|---|---|---|"]
        for src in notebooks:
            nb = nbformat.read(root / src, as_version=4)
            page = site.pages[src]
            title = _notebook_title(nb)
            record = _run_record(nb.metadata)
            body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{title or src} · replicate"}})
            body = site.rewrite(body, src, page)
            banner = (f'<nav class="site-nav">{site.nav(page)}</nav>\n'
                      f'<div class="run-record">Executed notebook <code>{html.escape(src)}</code>: {record}. '
                      f"Rendered as committed; nothing was re-executed.</div>")
            body = body.replace("</head>", f"<style>{CSS}</style></head>", 1)
            body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + banner, body, count=1)
            write(page, body)
            stem = Path(src).stem
            rows.append(f"| [`{stem}`]({stem}.html) | {title.replace('|', '/')} | {record.replace('|', '/')} |")
        index_md = ("# Executed notebooks\n\nEach page is the notebook as the pipeline executed it "
                    "(`reports/<stem>.ipynb`), with its run record.\n\n" + "\n".join(rows) + "\n")
        body, _ = render_markdown(index_md)
        write(NOTEBOOK_INDEX, _page("Executed notebooks · replicate", site.nav(NOTEBOOK_INDEX), body))

        for asset in sorted(site.assets):
            dest = tmp / asset
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / asset, dest)
        tmp.chmod(0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def main(argv: Sequence[str] | None = None) -> int:
    from replicate.params import repo_root  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m replicate.site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help=f"output folder (default: <repo>/{SITE_DIR})")
    args = parser.parse_args(argv)
    root = repo_root()
    index = build(root, Path(args.out) if args.out else root / SITE_DIR)
    print(f"site: {index} (open it in a browser; see README, 'Browse the results')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
