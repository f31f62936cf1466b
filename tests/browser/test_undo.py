"""Issue 24: Ctrl+Z / Ctrl+Shift+Z undo and redo the local user's own changes only (Y.UndoManager scoped to the
local origin), never someone else's, on both boards; text fields keep their own undo."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import expect

from .conftest import Person
from .test_live import card, team

pytestmark = pytest.mark.browser


def _status(p: Person, title: str) -> object:
    return card(p, title).get_by_label(re.compile("Status of"))


def test_ctrl_z_undoes_only_my_own_change_on_both_boards(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, wid = team(person, api)
    for title in ("Mine", "Theirs"):  # created by the server's API: on nobody's undo stack
        r = api.post(f"/api/workspaces/{wid}/tasks", json={"title": title}, headers=a.account.headers)
        assert r.status_code == 201, r.text
    expect(card(a, "Theirs")).to_be_visible()
    expect(card(b, "Theirs")).to_be_visible()

    _status(a, "Mine").select_option("in_progress")  # A's change
    expect(b.page.get_by_test_id("column-in_progress").get_by_text("Mine")).to_be_visible()
    _status(b, "Theirs").select_option("done")  # then B's
    expect(a.page.get_by_test_id("column-done").get_by_text("Theirs")).to_be_visible()

    a.page.get_by_role("heading", name="Live team").click()  # focus out of the select: keys go to the board
    a.page.keyboard.press("Control+z")
    for p in (a, b):
        expect(p.page.get_by_test_id("column-todo").get_by_text("Mine")).to_be_visible()
        expect(p.page.get_by_test_id("column-done").get_by_text("Theirs")).to_be_visible()
    expect(a.page.get_by_test_id("move-announcement")).to_have_text("Undone.")
    # nothing more of A's to undo: B's change stays
    a.page.keyboard.press("Control+z")
    expect(a.page.get_by_test_id("move-announcement")).to_have_text("Nothing to undo.")
    expect(b.page.get_by_test_id("column-done").get_by_text("Theirs")).to_be_visible()

    a.page.keyboard.press("Control+Shift+z")  # redo
    for p in (a, b):
        expect(p.page.get_by_test_id("column-in_progress").get_by_text("Mine")).to_be_visible()
    a.page.keyboard.press("Control+z")
    expect(b.page.get_by_test_id("column-todo").get_by_text("Mine")).to_be_visible()
    a.page.keyboard.press("Control+y")  # the other redo
    expect(b.page.get_by_test_id("column-in_progress").get_by_text("Mine")).to_be_visible()
    tasks = api.get(f"/api/workspaces/{wid}/tasks", headers=a.account.headers).json()
    items = tasks["items"] if isinstance(tasks, dict) else tasks
    assert sorted((t["title"], t["status"]) for t in items) == [("Mine", "in_progress"), ("Theirs", "done")]

    # In a text field Ctrl+Z is the field's own undo, not the board's
    a.page.get_by_label("New task title").fill("typed")
    a.page.get_by_label("New task title").press("Control+z")
    expect(b.page.get_by_test_id("column-in_progress").get_by_text("Mine")).to_be_visible()
    expect(a.page.get_by_test_id("column-in_progress").get_by_text("Mine")).to_be_visible()
