"""Issue 24: the board's keyboard shortcuts (c, /, j/k, e/Enter, ?), never triggered while typing."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.users import create_workspace

from .conftest import Person
from .test_live import open_board

pytestmark = pytest.mark.browser

FOCUSED_CARD = "() => document.activeElement?.closest('[data-testid=task-card]')?.textContent ?? null"


def test_keyboard_shortcuts_drive_the_board(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Keys")
    wid = create_workspace(api, a.account, "Keyboard board")
    for title in ("First card", "Second card"):
        r = api.post(f"/api/workspaces/{wid}/tasks", json={"title": title}, headers=a.account.headers)
        assert r.status_code == 201, r.text
    open_board(a, wid)
    page, kb = a.page, a.page.keyboard
    expect(page.get_by_test_id("task-card")).to_have_count(2)

    # ? lists the shortcuts; Escape closes the list
    page.locator("body").click(position={"x": 5, "y": 300})
    kb.press("?")
    help_ = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_).to_be_visible()
    for key in ("c", "/", "j / k", "Ctrl + Z"):
        expect(help_.get_by_role("rowheader", name=key, exact=True)).to_be_visible()
    kb.press("Escape")
    expect(help_).to_have_count(0)

    # j / k move the focus from card to card (clamped at the ends), e opens the focused card
    kb.press("j")
    assert "First card" in page.evaluate(FOCUSED_CARD)
    kb.press("j")
    assert "Second card" in page.evaluate(FOCUSED_CARD)
    kb.press("j")
    assert "Second card" in page.evaluate(FOCUSED_CARD)
    kb.press("k")
    assert "First card" in page.evaluate(FOCUSED_CARD)
    kb.press("e")
    detail = page.get_by_role("dialog", name="Task: First card")
    expect(detail).to_be_visible()
    expect(page).to_have_url(re.compile(f"/w/{wid}/t/"))
    # letters typed into the task's fields are text, not shortcuts
    title = page.get_by_label("Title", exact=True)
    title.focus()
    title.press("End")
    kb.type(" jk?c")
    expect(title).to_have_value("First card jk?c")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_have_count(0)
    kb.press("Escape")  # from inside the panel, Escape closes it
    expect(detail).to_have_count(0)

    # Enter opens the focused card too
    kb.press("j")
    focused = page.evaluate(FOCUSED_CARD)
    kb.press("Enter")
    expect(page.get_by_role("dialog", name=re.compile("Task: "))).to_be_visible()
    kb.press("Escape")
    assert focused

    # c goes to the new task's title; typing there is text (no shortcut fires)
    page.locator("body").click(position={"x": 5, "y": 300})
    kb.press("c")
    expect(page.get_by_label("New task title")).to_be_focused()
    kb.type("check the jk? keys")
    kb.press("Enter")
    expect(page.get_by_test_id("task-card").filter(has_text="check the jk? keys")).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)

    # / goes to the search
    page.locator("body").click(position={"x": 5, "y": 300})
    kb.press("/")
    expect(page.get_by_label("Search tasks")).to_be_focused()

    # the Shortcuts button opens the same list
    page.get_by_role("button", name="Shortcuts").click()
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    page.get_by_role("button", name="Close keyboard shortcuts").click()
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_have_count(0)
