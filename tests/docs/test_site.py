"""The documentation site: built in strict mode (a broken link, a missing page, an unresolved API
reference or an unknown generated section fails), its generated pages complete against the code
they come from (every command and option, every public name, every tested bad input, every figure
id, every notebook cell), and its pages as a reader sees them in headless Chromium (no error, no
request leaving the site, every image drawn). The README is the front door: short, and its Python
example the package's own quick start."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from browser import open_page  # noqa: E402

import ropescope  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(REPO / "mkdocs.yml", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" not in result.stderr, result.stderr[-3000:]
    return out


def text_of(html: Path) -> str:
    """The page's text, tags removed and entities decoded (what a reader reads)."""
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", "", html.read_text(encoding="utf-8")))


def _copy_of_docs(tmp_path: Path) -> Path:
    """A copy of the repository's site sources (mkdocs.yml, docs/ and the files it includes) whose
    hook is the repository's own (it reads the code, notebook and figures from the repository)."""
    for name in ["README.md", "CHANGELOG.md", "REPRODUCTION.md"]:
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    hook = "  - docs/hooks/generate.py"
    assert hook in config
    (tmp_path / "mkdocs.yml").write_text(config.replace(hook, f"  - {REPO / 'docs/hooks/generate.py'}"))
    return tmp_path / "mkdocs.yml"


@pytest.mark.parametrize(
    "page, broken, message",
    [
        ("concepts.md", "\nSee [the missing page](no-such-page.md).\n", "no-such-page.md"),
        ("concepts.md", "\nSee [a section](#no-such-section).\n", "no-such-section"),
        ("reference/python.md", "\n::: ropescope.no_such_function\n", "no_such_function"),
        ("reference/cli.md", "\n<!-- generate: no-such-table -->\n", "no-such-table"),
    ],
)
def test_strict_build_fails_on_a_broken_page(tmp_path, page, broken, message):
    config = _copy_of_docs(tmp_path)
    with open(tmp_path / "docs" / page, "a", encoding="utf-8") as f:
        f.write(broken)
    result = build(config, tmp_path / "site")
    assert result.returncode != 0
    assert message in result.stderr


def test_cli_reference_has_every_command_and_option(site):
    import typer

    from ropescope.cli.app import app

    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="ropescope")
    html = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    sections = re.split(r'<h2 id="', html)
    by_command = {s.split('"', 1)[0]: s for s in sections[1:]}
    names = group.list_commands(root)
    assert len(names) >= 12
    for name in names:
        assert name in by_command, f"no section for 'ropescope {name}'"
        command = group.get_command(root, name)
        ctx = command.context_class(command, info_name=name, parent=root)
        for param in command.get_params(ctx):
            if param.hidden or param.name == "help":
                continue
            label = param.name.upper() if param.param_type_name == "argument" else param.opts[0]
            assert f"<code>{label}</code>" in by_command[name], f"ropescope {name}: {label} missing"
        for _, example in __import__("ropescope.cli.examples", fromlist=["EXAMPLES"]).EXAMPLES.get(name, []):
            assert example.split()[1] in by_command[name]


def test_api_reference_documents_every_public_name(site):
    html = (site / "reference" / "python.html").read_text(encoding="utf-8")
    missing = []
    for name in ropescope._WHERE:
        obj = getattr(ropescope, name)
        module = obj.__module__ if not isinstance(obj, type(ropescope)) else obj.__name__
        if f'id="{module}.{name}"' not in html:
            missing.append(f"{module}.{name}")
    assert not missing, missing
    # docstrings render as text, with their Sphinx roles turned into links or code, never raw
    assert ":func:" not in text_of(site / "reference" / "python.html")
    assert 'href="#ropescope.hooks.capture"' in html


def test_troubleshooting_lists_every_tested_bad_input(site):
    sys.path.insert(0, str(REPO / "tests" / "cli"))
    import test_bad_input_matrix as matrix

    from ropescope.errors import printable

    text = text_of(site / "troubleshooting.html")
    missing = [f"{r[0]} / {r[1]}" for r in matrix.CLI_ROWS if printable(r[3]) not in text or r[1] not in text]
    missing += [f"{r[0]} / {r[1]}" for r in matrix.API_ROWS if printable(r[2]) not in text or r[1] not in text]
    assert not missing, missing
    assert "\x1b" not in text  # a row about terminal escapes shows them escaped


def test_reproduction_page_lists_every_figure_id(site):
    from ropescope.figures.registry import ALIASES, FIGURES

    text = text_of(site / "reproduction.html")
    assert "Reproduction of" in text  # REPRODUCTION.md itself is included
    for figure_id in [*FIGURES, *ALIASES]:
        assert re.search(rf"\b{re.escape(figure_id)}\b", text), figure_id


def test_tutorial_page_is_the_notebook_with_its_outputs(site):
    notebook = json.loads((REPO / "notebooks" / "tutorial.ipynb").read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    html = (site / "tutorial.html").read_text(encoding="utf-8")
    text = text_of(site / "tutorial.html")
    for cell in code:
        for line in "".join(cell["source"]).splitlines():
            assert line.strip() in text, line
    assert html.count("data:image/png;base64,") == images >= 3
    assert "RopeGeometry(18 layers" in text  # a text output


def test_changelog_and_home_come_from_the_repository_files(site):
    assert "Changelog" in text_of(site / "changelog.html")
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="getting-started.html"' in home and 'href="reference/cli.html"' in home
    assert 'src="figures/fig03_usage_per_layer_gemma-3-270m.png"' in home


@pytest.fixture(scope="module")
def served(site):
    """The built site served on 127.0.0.1, as a published site is read (search needs a server)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.mark.parametrize(
    "page",
    [
        "index.html",
        "getting-started.html",
        "tutorial.html",
        "how-to/own-checkpoint.html",
        "reference/cli.html",
        "reference/python.html",
        "reference/families.html",
        "troubleshooting.html",
    ],
)
def test_page_as_a_reader_sees_it(served, page):
    with open_page(served + page, ready="article") as (browser_page, log):
        broken = browser_page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80))"
        )
        heading = browser_page.inner_text("article h1")
        nav = browser_page.locator("nav.md-nav--primary a").count()
    assert not broken, broken
    assert heading.strip()
    assert nav >= 20  # every page has the whole site's navigation
    assert not log.page_errors and not log.console_errors, (log.page_errors, log.console_errors)
    outside = [r for r in log.requests if not r.startswith(served)]
    assert not outside, outside  # no web font, no CDN, no analytics


def test_search_finds_a_page(served):
    """Typing in the search box lists the page that holds the word. The index is built in a web
    worker after the page loads (seconds on a busy 2-core machine), and a query typed before it is
    ready is dropped: the test waits for the search to say it is ready (its "Initializing search"
    line gone), then types and waits for the results, each with a generous bound and no fixed sleep
    (the query is typed again if the results do not come); a worker that never answers (seen once on
    a machine running two test suites) gets a fresh page, three at most."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    ready = """() => {
        const meta = document.querySelector(".md-search-result__meta");
        return meta !== null && meta.textContent.trim() !== "" && !/initiali[sz]ing/i.test(meta.textContent);
    }"""
    results = ".md-search-result__item a"
    hits: list[str] = []
    for _ in range(3):
        with open_page(served + "index.html", ready="article") as (browser_page, log):
            try:
                browser_page.wait_for_function(ready, timeout=120_000)
            except PlaywrightTimeout:
                continue
            for _ in range(4):  # typed as a reader types (key events: a programmatic fill is not seen)
                browser_page.fill("input.md-search__input", "")
                browser_page.focus("input.md-search__input")
                browser_page.keyboard.type("proportional")
                try:
                    browser_page.wait_for_selector(results, timeout=30_000)
                except PlaywrightTimeout:
                    continue
                hits = browser_page.locator(results).evaluate_all("links => links.map(a => a.href)")
                break
        if hits:
            break
    assert any("own-checkpoint.html" in h for h in hits), (hits, log.console_errors, log.page_errors)
    assert not log.page_errors and not log.console_errors, (log.page_errors, log.console_errors)


def test_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert readme.index("![") < readme.index("## Two commands")  # a picture in the first screen
    assert "bash setup.sh" in readme and ".venv/bin/python -m pytest -q" in readme
    # every link into docs/ names a page the site builds
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / target).exists(), target
