"""The web client under its Content-Security-Policy: the headers are sent, and real use (sign-in, the board,
two people typing into one description with each other's cursors drawn, the service worker) violates nothing.
Every browser test also fails on any CSP violation (tests/browser/conftest.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.server import ThreadServer

from .conftest import REPORT_CSP_VIOLATIONS, Person, csp_violations
from .test_live import add_task, card, team

pytestmark = pytest.mark.browser


def test_pages_carry_the_security_headers(anonymous: Callable[..., Any], live_server: ThreadServer) -> None:
    page = anonymous()
    response = page.goto(live_server.base_url + "/signin")
    assert response is not None and response.ok
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    csp = headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_collaborative_editing_runs_without_csp_violations(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, _ = team(person, api)
    add_task(a, "Policy notes")
    expect(card(b, "Policy notes")).to_be_visible()
    card(a, "Policy notes").get_by_role("button", name=re.compile("Open task")).click()
    card(b, "Policy notes").get_by_role("button", name=re.compile("Open task")).click()
    ed_a, ed_b = a.page.get_by_test_id("description"), b.page.get_by_test_id("description")
    ed_a.click()
    ed_b.click()
    ed_a.press_sequentially("from alice ", delay=5)
    ed_b.press_sequentially("from bob ", delay=5)
    expect(ed_a).to_contain_text("from bob", timeout=10_000)
    # y-codemirror.next draws the other's caret with an inline style: the policy must allow it.
    expect(a.page.locator(".cm-ySelectionCaret")).to_have_count(1)
    caret_colour = a.page.locator(".cm-ySelectionCaret").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert caret_colour not in ("", "rgba(0, 0, 0, 0)"), caret_colour
    # the service worker registered (worker-src), and the socket is connected (connect-src)
    a.page.wait_for_function("navigator.serviceWorker.getRegistration().then(r => !!r)", timeout=10_000)
    expect(a.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def test_the_policy_does_block_and_report_an_injected_script(browser: Any, live_server: ThreadServer) -> None:
    """The violation check is not vacuous: an inline script (what an XSS would inject) is blocked and reported
    the way the fixtures watch for (its own context, so the fixtures' check does not see this one)."""
    context = browser.new_context(base_url=live_server.base_url)
    try:
        page = context.new_page()
        page.add_init_script(REPORT_CSP_VIOLATIONS)
        seen: list[str] = []
        page.on("console", lambda m: seen.append(m.text))
        page.goto(live_server.base_url + "/signin")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        ran = page.evaluate(
            """() => { window.__ran = false; const s = document.createElement('script');
            s.textContent = 'window.__ran = true'; document.body.appendChild(s); return window.__ran }"""
        )
        assert ran is False
        page.wait_for_function("() => true")
        deadline = time.monotonic() + 5
        while not csp_violations(seen) and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert any("CSP violation: script-src" in text for text in seen), seen
    finally:
        context.close()
