"""A real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for tests of the HTML
report as a user sees it: console errors and every network request are recorded."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return os.environ.get("ROPESCOPE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageLog:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextmanager
def open_page(path: Path | str, width: int = 1400, height: int = 1000, ready: str = "body[data-ready=true]"):
    """(page, log) of ``path`` (a file, or a URL) opened once ``ready`` (a CSS selector; the report marks its
    body when drawn) is on the page; the test is skipped when no Chromium is installed, unless
    ROPESCOPE_REQUIRE_BROWSER=1 (CI), where that is a failure."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    if executable is None:
        if os.environ.get("ROPESCOPE_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium found (apt-get install chromium), and ROPESCOPE_REQUIRE_BROWSER=1")
        pytest.skip("no Chromium installed")
    log = PageLog()
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: log.page_errors.append(str(e)))
            page.on("request", lambda r: log.requests.append(r.url))
            page.goto(path if isinstance(path, str) else path.resolve().as_uri())
            page.wait_for_selector(ready, timeout=20_000)
            yield page, log
        finally:
            browser.close()


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 900) -> None:
    """Screenshots of the report for docs/: the top of the page with the tooltip over the usage map
    (``png``), and the head table with the first head opened (``png`` with ``_heads`` added)."""
    with open_page(html, width, height) as (page, log):
        page.hover("#usage-map", position={"x": 260, "y": 200})
        page.screenshot(path=str(png))
        page.mouse.move(0, 0)
        page.locator("#heads").screenshot(path=str(png.with_name(png.stem + "_heads" + png.suffix)))
        assert not log.console_errors and not log.page_errors, (log.console_errors, log.page_errors)


if __name__ == "__main__":  # python tests/browser.py runs/x/report.html docs/report.png
    import sys

    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"wrote {sys.argv[2]}")
