"""A real browser for the admin UI's tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``;
.ci/run installs it when missing: Playwright cannot download its own browser here).

``browser`` fails (never skips) when Chromium is missing.  ``ui`` gives a fresh browser context and page
that record console errors, uncaught page errors, failed requests and 5xx answers; each test ends by
asserting there were none (``ui.allow(pattern)`` admits an error the test provokes on purpose).

Use from a test module::

    from tests.ui_browser import browser, ui  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LOCKGATE_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "ui"


@pytest.fixture(scope="module")  # one Playwright per module: each importing module gets its own fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    launched = manager.chromium.launch(executable_path=CHROMIUM, headless=True,
                                       args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    yield launched
    launched.close()
    manager.stop()


@dataclass
class WatchedPage:
    """A page plus what went wrong on it."""

    page: object
    context: object
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]

    def screenshot(self, name: str) -> None:
        """The page as a PNG: always taken (it must render), written over docs/ui/ only with
        LOCKGATE_UI_SCREENSHOTS=1 (so a test run leaves the checkout as it was)."""
        png = self.page.screenshot(full_page=True)  # type: ignore[attr-defined]
        assert png.startswith(b"\x89PNG")
        if os.environ.get("LOCKGATE_UI_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / f"{name}.png").write_bytes(png)


def watch(browser: object) -> WatchedPage:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    watched = WatchedPage(page, context)

    def on_console(message: object) -> None:
        if message.type == "error":  # type: ignore[attr-defined]
            watched.problems.append(f"console error: {message.text}")  # type: ignore[attr-defined]

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda request: watched.problems.append(
        f"request failed: {request.method} {request.url} ({request.failure})"))
    page.on("response", lambda response: response.status >= 500 and watched.problems.append(
        f"server error: {response.status} {response.url}"))
    page.on("dialog", lambda dialog: dialog.accept())
    return watched


@pytest.fixture
def ui(browser: object) -> Iterator[WatchedPage]:
    watched = watch(browser)
    yield watched
    watched.context.close()  # type: ignore[attr-defined]
    problems = watched.unexpected()
    assert not problems, "the browser saw errors:\n" + "\n".join(problems)
