"""Real Chromium (Debian's, driven by Playwright) against a real Plait server serving the built web client."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import fresh_database
from tests.support.server import ThreadServer, free_port, test_settings
from tests.support.users import Account, register

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("PLAIT_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The web client's own coverage: with PLAIT_WEB_COVERAGE=<dir> (`make test` sets it) every page the fixtures open
# records V8 precise coverage until the test ends; its app scripts go to <dir> as one JSON file per page, which
# web/scripts/coverage-report.mjs maps to web/src through the build's source maps.
WEB_COVERAGE = os.environ.get("PLAIT_WEB_COVERAGE", "")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _unavailable(reason: str) -> None:
    """Locally a missing browser skips; in CI it is a failure, never a silent skip."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _stale(dist: Path) -> bool:
    """True when web/dist is missing or older than any source that goes into it."""
    index = dist / "index.html"
    if not index.is_file():
        return True
    built = index.stat().st_mtime
    sources = [WEB / "index.html", WEB / "package-lock.json", WEB / "vite.config.ts"]
    sources += [p for d in ("src", "public") for p in (WEB / d).rglob("*") if p.is_file()]
    return any(p.stat().st_mtime > built for p in sources if p.exists())


def build_web() -> Path:
    """web/dist, (re)built with npm when missing or stale (the README's test command relies on this)."""
    dist = WEB / "dist"
    if not _stale(dist):
        return dist
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is needed to build the web client")
    assert npm is not None
    installed = WEB / "node_modules" / ".package-lock.json"
    if not installed.is_file() or installed.stat().st_mtime < (WEB / "package-lock.json").stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
    return dist


@pytest.fixture(scope="session")
def web_dist() -> Path:
    return build_web()


@pytest.fixture(scope="session")
def live_server(web_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """A fresh SQLite-backed server that also serves web/dist; one per session, tests isolate by user."""
    tmp = tmp_path_factory.mktemp("browser-server")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    settings = test_settings(fresh_database("sqlite", tmp), tmp, allowed_origins=[origin], public_url=origin)
    srv = ThreadServer(settings, port=port).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[browser]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect

    # Two cores shared by a server, two browsers and the test: give assertions room, never a fixed sleep.
    expect.set_options(timeout=10_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def api(live_server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, timeout=30) as c:
        yield c


@dataclass
class Person:
    """One user in their own browser context (own storage, own IndexedDB, own network switch)."""

    account: Account
    context: Any
    page: Any
    base_url: str

    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


# Every page reports what its Content-Security-Policy blocked; the fixtures fail a test that saw any.
REPORT_CSP_VIOLATIONS = """document.addEventListener('securitypolicyviolation', (e) =>
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`
    + ` at ${e.sourceFile}:${e.lineNumber}`))"""


def csp_violations(log: list[str]) -> list[str]:
    return [line for line in log if "CSP violation" in line or "Content Security Policy" in line]


def _watch(page: Any, label: str, log: list[str]) -> None:
    page.add_init_script(REPORT_CSP_VIOLATIONS)
    page.on("console", lambda m: m.type in ("error", "warning") and log.append(f"[{label}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: log.append(f"[{label}] pageerror: {e}"))


class _PageCoverage:
    """V8 precise coverage (block counts) of one page's app scripts, through its own CDP session.

    A page reports only what its current document ran (after a reload script ids start afresh), so goto and
    reload take the coverage before they navigate, and the fixture takes it once more before the context closes.
    Each take (counts since the previous one) is written as one V8 coverage file: {"result": [scripts]}.
    """

    def __init__(self, page: Any, label: str, base_url: str) -> None:
        self.label = label
        self.assets = base_url + "/assets/"
        self.takes: list[list[dict[str, Any]]] = []
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Profiler.enable")
        self.cdp.send("Profiler.startPreciseCoverage", {"callCount": True, "detailed": True})
        for name in ("goto", "reload"):
            setattr(page, name, self._taking_first(getattr(page, name)))
        context = page.context
        context.set_offline = self._mirroring_offline(context.set_offline)

    def _taking_first(self, navigate: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.take()
            return navigate(*args, **kwargs)

        return wrapper

    def _mirroring_offline(self, set_offline: Callable[[bool], None]) -> Callable[[bool], None]:
        """With a second CDP session on a page, a document loaded while the context is offline sees
        navigator.onLine true (the network itself stays off): Chromium gives the new document that session's
        network conditions, none. So this session repeats set_offline (else the offline-reload test fails)."""

        def both(offline: bool) -> None:
            set_offline(offline)
            conditions = {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
            self.cdp.send("Network.emulateNetworkConditions", conditions)

        return both

    def take(self) -> None:
        scripts = self.cdp.send("Profiler.takePreciseCoverage")["result"]
        if app := [s for s in scripts if s["url"].startswith(self.assets)]:
            self.takes.append(app)

    def save(self, test: str) -> None:
        try:
            self.take()
        except Exception as exc:  # a crashed page: say so, the report will be lower
            warnings.warn(f"no web coverage from the last document of {test} [{self.label}]: {exc}", stacklevel=1)
        out = Path(WEB_COVERAGE)
        out.mkdir(parents=True, exist_ok=True)
        for i, scripts in enumerate(self.takes):
            (out / f"{test}-{self.label}-{i}.json").write_text(json.dumps({"result": scripts}))


def _save_coverage(request: pytest.FixtureRequest, pages: list[_PageCoverage]) -> None:
    test = re.sub(r"[^\w.-]+", "_", request.node.name)
    for page in pages:
        page.save(test)


def _finish(request: pytest.FixtureRequest, pages: list[tuple[str, Any]], log: list[str]) -> None:
    """On failure keep a screenshot of every page and print the browser console: the test's evidence."""
    if not request.node.stash.get(FAILED, False):
        return
    ARTIFACTS.mkdir(exist_ok=True)
    for label, page in pages:
        try:
            page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}-{label}.png"))
        except Exception as exc:  # a closed page has nothing to show
            log.append(f"[{label}] no screenshot: {exc}")
    print("\n".join(log[-80:]))


@pytest.fixture
def person(
    browser: Any, live_server: ThreadServer, api: httpx.Client, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Person]]:
    """Factory: a registered user signed in (token in localStorage, as the app keeps it) in a new context."""
    contexts: list[Any] = []
    pages: list[tuple[str, Any]] = []
    coverage: list[_PageCoverage] = []
    log: list[str] = []

    def make(name: str, account: Account | None = None, viewport: dict[str, int] | None = None) -> Person:
        acc = account or register(api, name)
        ctx = browser.new_context(viewport=viewport or DESKTOP, base_url=live_server.base_url)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        pages.append((name, page))
        _watch(page, name, log)
        if WEB_COVERAGE:
            coverage.append(_PageCoverage(page, f"{name}{len(pages)}", live_server.base_url))
        page.goto(live_server.base_url + "/signin")
        page.evaluate(f"localStorage.setItem('plait.token', {json.dumps(acc.token)})")
        return Person(acc, ctx, page, live_server.base_url)

    yield make
    _finish(request, pages, log)
    _save_coverage(request, coverage)
    for ctx in contexts:
        ctx.close()
    assert not csp_violations(log), csp_violations(log)


@pytest.fixture
def anonymous(browser: Any, live_server: ThreadServer, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Factory: a page in a fresh context with nobody signed in."""
    contexts: list[Any] = []
    pages: list[tuple[str, Any]] = []
    coverage: list[_PageCoverage] = []
    log: list[str] = []

    def make(viewport: dict[str, int] | None = None) -> Any:
        ctx = browser.new_context(viewport=viewport or DESKTOP, base_url=live_server.base_url)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        label = f"anonymous{len(pages)}"
        pages.append((label, page))
        _watch(page, label, log)
        if WEB_COVERAGE:
            coverage.append(_PageCoverage(page, label, live_server.base_url))
        return page

    yield make
    _finish(request, pages, log)
    _save_coverage(request, coverage)
    for ctx in contexts:
        ctx.close()
    assert not csp_violations(log), csp_violations(log)
