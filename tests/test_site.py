"""`make site` (replicate.site): links and headings of the rendered pages, and the built site opened in headless
Chromium: the front page, the claims table and an executed notebook render with every figure loaded."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from replicate import site

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# .ci/run installs Debian's chromium and sets this, so the browser test cannot be skipped silently in CI.
REQUIRE_ENV = "REPLICATE_REQUIRE_BROWSER"


def test_slug_and_markdown_render_like_github():
    seen: dict[str, int] = {}
    assert site.slug("What the full profile costs", seen) == "what-the-full-profile-costs"
    assert site.slug("What the full profile costs", seen) == "what-the-full-profile-costs-1"
    assert site.slug("Running it: environment, `make`", {}) == "running-it-environment-make"
    body, title = site.render_markdown("# Title *x*\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<img src=\"f.png\">\n")
    assert title == "Title x"
    assert '<h1 id="title-x">' in body and "<table>" in body and "<td>2</td>" in body
    assert '<img src="f.png">' in body  # raw HTML is kept


def test_links_are_rewritten_to_pages_assets_or_the_checkout(tmp_path):
    root, out = tmp_path / "repo", tmp_path / "repo" / "_site"
    (root / "figures").mkdir(parents=True)
    (root / "figures" / "a.png").write_bytes(b"png")
    (root / "requirements").mkdir()
    (root / "requirements" / "lock.txt").write_text("x")
    s = site.SiteMap(root=root, out=out, pages={"README.md": "index.html", "docs/claims.md": "docs/claims.html",
                                              "reports/10_x.ipynb": "reports/10_x.html"},
                   assets={"figures/a.png"}, titles={site.NOTEBOOK_INDEX: "Executed notebooks"})
    assert s.url("docs/claims.md#top", "README.md", "index.html") == "docs/claims.html#top"
    assert s.url("../reports/10_x.ipynb", "docs/claims.md", "docs/claims.html") == "../reports/10_x.html"
    assert s.url("../figures/a.png", "docs/claims.md", "docs/claims.html") == "../figures/a.png"
    assert s.url("reports/", "README.md", "index.html") == "reports/index.html"
    assert s.url("requirements/lock.txt", "README.md", "index.html") == "../requirements/lock.txt"
    for unchanged in ("https://arxiv.org/abs/2305.01521", "#section", "data:image/png;base64,AAAA", "mailto:a@b", ""):
        assert s.url(unchanged, "README.md", "index.html") == unchanged
    html = '<a href="docs/claims.md">c</a><img src="figures/a.png"><a href="https://x.org/y.md">x</a>'
    assert s.rewrite(html, "README.md", "index.html") == (
        '<a href="docs/claims.html">c</a><img src="figures/a.png"><a href="https://x.org/y.md">x</a>')


def test_build_refuses_to_overwrite_the_repository(tmp_path):
    with pytest.raises(ValueError, match="would replace the repository"):
        site.build(ROOT, ROOT)
    with pytest.raises(ValueError, match="README.md"):
        site.build(tmp_path, tmp_path / "_site")


def _chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


def _notebook_with_figures() -> str:
    """Stem of the first paper notebook whose executed report has a PNG output."""
    for path in sorted((ROOT / "reports").glob("[1-9]*.ipynb")):
        if '"image/png"' in path.read_text(encoding="utf-8"):
            return path.stem
    raise AssertionError("no executed notebook in reports/ has a figure")


# Loads every page in an iframe; once all have loaded (window load waits for the frames and their images) it
# writes what each page holds into <pre id="result">, which --dump-dom prints.
HARNESS = textwrap.dedent("""\
    <!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
    FRAMES
    <script>
    window.addEventListener("load", function () {
      var result = {};
      document.querySelectorAll("iframe").forEach(function (frame) {
        var d = frame.contentDocument, r = {};
        if (!d) { r.error = "cannot read the page"; } else {
          var images = Array.from(d.images);
          r.title = d.title;
          r.images = images.length;
          r.broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                           .map(function (i) { return i.getAttribute("src").slice(0, 80); });
          r.table_rows = Array.from(d.querySelectorAll("table")).map(function (t) {
            return t.querySelectorAll("tbody tr").length; });
          r.links = Array.from(d.querySelectorAll("a[href]")).map(function (a) { return a.href; })
                         .filter(function (h) { return h.indexOf("file:") === 0; });
          r.text = d.body ? d.body.innerText.slice(0, 4000) : "";
        }
        result[frame.dataset.page] = r;
      });
      var pre = document.createElement("pre");
      pre.id = "result";
      pre.textContent = JSON.stringify(result);
      document.body.appendChild(pre);
    });
    </script></body></html>
    """)


def _open_in_chromium(browser: str, pages: dict[str, Path], tmp_path: Path) -> dict:
    frames = "\n".join(f'<iframe data-page="{name}" src="{path.as_uri()}" width="1280" height="900"></iframe>'
                       for name, path in pages.items())
    harness = tmp_path / "harness.html"
    harness.write_text(HARNESS.replace("FRAMES", frames), encoding="utf-8")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
           "--allow-file-access-from-files",  # the harness reads the frames' documents (file:// pages)
           "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: the site must render without the network
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", harness.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    match = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"chromium printed no result (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def test_site_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but no Chromium is installed ({', '.join(CHROMIUM_NAMES)})")
        pytest.skip("Chromium is not installed (CI installs Debian's `chromium`: "
                    "apt-get install --no-install-recommends chromium)")
    out = tmp_path / "site"
    index = site.build(ROOT, out)
    stem = _notebook_with_figures()
    pages = {"index": index, "claims": out / "docs" / "claims.html", "notebook": out / "reports" / f"{stem}.html"}
    result = _open_in_chromium(browser, pages, tmp_path)

    for name, page in result.items():
        assert "error" not in page, f"{name}: {page['error']}"
        assert not page["broken"], f"{name}: images that did not load: {page['broken']}"
        for link in page["links"]:  # every link into the site or the checkout points at a file that exists
            target = Path(unquote(urlparse(link).path))
            assert target.exists(), f"{name}: broken link {link}"

    front = result["index"]
    readme_images = len(re.findall(r"!\[[^\]]*\]\([^)]+\.png\)", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert front["images"] == readme_images >= 3, "the front page's figures did not render"
    assert "reproduced" in front["text"] and front["table_rows"], "the verdict counts table did not render"

    claims = result["claims"]
    claims_md = (ROOT / "docs" / "claims.md").read_text(encoding="utf-8")
    md_rows = sum(1 for line in claims_md.splitlines() if line.startswith("| [`"))
    assert claims["table_rows"] == [md_rows] and md_rows > 0, "the claims table did not render whole"
    figure_links = [link for link in claims["links"] if link.endswith(".png")]
    assert figure_links and all(f"/{out.name}/figures/" in link for link in figure_links), (
        "the claims table's figure links should point at the site's copy of figures/")

    notebook = result["notebook"]
    assert notebook["images"] >= 1, f"{stem}: no figure rendered"
    assert "Executed notebook" in notebook["text"] and "profile" in notebook["text"], "the run record is missing"
