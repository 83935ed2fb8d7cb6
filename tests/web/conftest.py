"""Browser tests: ``ganforge up`` in a subprocess, driven by Playwright through Debian's chromium
(Playwright's own browser download is not available here). Every request to anything but
127.0.0.1 is blocked and recorded, so a test can assert that none was attempted. Screenshots go
to test-artifacts/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fixtures.embedded import REPO_ROOT, Up, running

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1"}
# CSP violations seen by the page (plotly.js tries to inject styles, refused; its rules come from
# /ui/vendor/plotly.css instead); the init script runs before any of the page's own scripts
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => window.cspViolations.push(
  {directive: event.effectiveDirective, blocked: event.blockedURI}));
"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: `apt-get install -y chromium` (done by .ci/run)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Up]:
    with running(tmp_path_factory.mktemp("web"), data_dir) as up:
        yield up


class Page:
    """A Playwright page on the service, off-machine requests blocked and listed in ``blocked``."""

    def __init__(self, browser: Any, service: Up) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.blocked: list[str] = []
        self.context.route("**/*", self._local_only)
        self.context.add_init_script(RECORD_CSP_VIOLATIONS)
        self.page = self.context.new_page()
        self.url = service.url
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _local_only(self, route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def csp_violations(self) -> list[dict[str, str]]:
        found: list[dict[str, str]] = self.page.evaluate("window.cspViolations")
        return found

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def page(browser: Any, service: Up) -> Iterator[Page]:
    opened = Page(browser, service)
    yield opened
    opened.context.close()


@pytest.fixture(scope="session", autouse=True)
def fresh_screenshots() -> None:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
