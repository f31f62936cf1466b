"""Issue 24 on a phone (390x844): the notification popover and the members table fit the screen (no sideways
scrolling), and the board shows one column at a time behind tabs instead of one long page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.users import add_member, create_workspace

from .conftest import PHONE, Person
from .test_live import open_board

pytestmark = pytest.mark.browser

NO_SIDEWAYS_SCROLL = "() => document.scrollingElement.scrollWidth <= window.innerWidth"


def _fits(page: Any, locator: Any) -> None:
    assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    box = locator.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box


def test_a_phone_gets_column_tabs_and_popovers_and_tables_that_fit(
    person: Callable[..., Person], api: httpx.Client
) -> None:
    a = person("Pocket", viewport=PHONE)
    other = person("Colleague-with-a-rather-long-display-name")
    wid = create_workspace(api, a.account, "Phone board")
    add_member(api, wid, a.account, other.account, "editor")
    h = a.account.headers
    for title, status in (("Plan the trip", "todo"), ("Book the flights", "in_progress"), ("Pack", "done")):
        r = api.post(f"/api/workspaces/{wid}/tasks", json={"title": title, "status": status}, headers=h)
        assert r.status_code == 201, r.text
    open_board(a, wid)
    page = a.page

    tabs = page.get_by_role("tablist", name="Columns")
    expect(tabs).to_be_visible()
    expect(page.get_by_test_id("column-todo")).to_be_visible()
    expect(page.get_by_test_id("column-in_progress")).to_be_hidden()
    expect(page.get_by_test_id("column-done")).to_be_hidden()
    tabs.get_by_role("tab", name="In progress").click()
    expect(tabs.get_by_role("tab", name="In progress")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("column-in_progress").get_by_text("Book the flights")).to_be_visible()
    expect(page.get_by_test_id("column-todo")).to_be_hidden()
    tabs.get_by_role("tab", name="Done").click()
    expect(page.get_by_test_id("column-done").get_by_text("Pack")).to_be_visible()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)

    page.get_by_role("button", name="Notifications").click()
    popover = page.get_by_role("dialog", name="Notification center")
    expect(popover).to_be_visible()
    _fits(page, popover)
    page.keyboard.press("Escape")

    r = api.post(f"/api/workspaces/{wid}/invites", json={"role": "editor"}, headers=h)  # a long link to show
    assert r.status_code == 201, r.text
    a.goto(f"/w/{wid}/members")
    table = page.locator("table.members")
    expect(table.get_by_test_id("member-row")).to_have_count(2)
    _fits(page, table)
    # and on a wide screen the tabs are not there: three columns side by side
    other.goto(f"/w/{wid}")
    expect(other.page.get_by_test_id("column-done")).to_be_visible()
    expect(other.page.get_by_role("tablist", name="Columns")).to_be_hidden()
