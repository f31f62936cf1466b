"""Issue 24: axe-core (the npm package's axe.min.js, run in the page) finds no serious or critical violation on
any page: sign-in, home, board, task detail, members, invite, notifications (light and dark)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.users import add_member, create_workspace

from .conftest import WEB, Person, _unavailable
from .test_live import open_board

pytestmark = pytest.mark.browser

AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        _unavailable(f"{AXE} is missing: npm ci --prefix web")
    return Path(AXE).read_text()


def serious(page: Any, axe_source: str, where: str) -> list[str]:
    """Run axe on the page as shown; the serious and critical violations, one line each."""
    # Evaluated through the DevTools protocol, so the page's Content-Security-Policy (no inline scripts) holds.
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    result = page.evaluate(
        """async () => {
          const r = await axe.run(document, { resultTypes: ['violations'] })
          return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
            .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                           nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }))
        }"""
    )
    return [f"{where}: {json.dumps(v)}" for v in result]


def test_no_serious_accessibility_violations_on_any_page(
    person: Callable[..., Person], anonymous: Callable[..., Any], api: httpx.Client, axe_source: str
) -> None:
    found: list[str] = []
    stranger = anonymous()
    stranger.goto("/signin")
    expect(stranger.get_by_role("heading", name="Sign in")).to_be_visible()
    found += serious(stranger, axe_source, "sign-in")

    a = person("Auditor")
    b = person("Peer")
    wid = create_workspace(api, a.account, "Audited")
    add_member(api, wid, a.account, b.account, "editor")
    r = api.post(
        f"/api/workspaces/{wid}/tasks", json={"title": "Check me", "priority": "high"}, headers=a.account.headers
    )
    assert r.status_code == 201, r.text
    task = r.json()["id"]

    a.goto("/")
    expect(a.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    found += serious(a.page, axe_source, "home")

    open_board(a, wid)
    expect(a.page.get_by_test_id("task-card")).to_have_count(1)
    found += serious(a.page, axe_source, "board")
    a.page.keyboard.press("?")
    expect(a.page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    found += serious(a.page, axe_source, "shortcuts")
    a.page.keyboard.press("Escape")

    a.goto(f"/w/{wid}/t/{task}")
    expect(a.page.get_by_role("dialog", name="Task: Check me")).to_be_visible()
    found += serious(a.page, axe_source, "task detail")

    a.page.get_by_role("button", name="Close task").click()
    a.page.get_by_role("button", name="Notifications").click()
    expect(a.page.get_by_role("dialog", name="Notification center")).to_be_visible()
    found += serious(a.page, axe_source, "notifications")
    a.page.keyboard.press("Escape")

    a.goto(f"/w/{wid}/members")
    expect(a.page.get_by_test_id("member-row")).to_have_count(2)
    found += serious(a.page, axe_source, "members")
    a.page.get_by_test_id("member-row").filter(has_text="Peer").get_by_role("button", name="Remove Peer").click()
    expect(a.page.get_by_role("alertdialog")).to_be_visible()
    found += serious(a.page, axe_source, "confirm dialog")
    a.page.keyboard.press("Escape")

    a.goto("/preferences")
    found += serious(a.page, axe_source, "notification preferences")

    # dark mode: the same board and detail
    a.page.get_by_label("Theme").select_option("dark")
    open_board(a, wid)
    found += serious(a.page, axe_source, "board (dark)")
    a.goto(f"/w/{wid}/t/{task}")
    expect(a.page.get_by_role("dialog", name="Task: Check me")).to_be_visible()
    found += serious(a.page, axe_source, "task detail (dark)")

    invite = api.post(f"/api/workspaces/{wid}/invites", json={"role": "editor"}, headers=a.account.headers).json()
    stranger.goto(f"/invite/{invite['token']}")
    expect(stranger.get_by_text("Audited").first).to_be_visible()
    found += serious(stranger, axe_source, "invite")

    assert not found, "\n".join(found)
