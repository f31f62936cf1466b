"""The v2 task model in the web client, with two people in two browser contexts: ordering by drag and drop and by
keyboard, labels, priority, checklists, comments with mentions, Markdown, search and filters kept in the URL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.node import wait_until
from tests.support.users import add_member, create_workspace

from .conftest import Person

pytestmark = pytest.mark.browser


def open_board(p: Person, wid: str, query: str = "") -> None:
    p.goto(f"/w/{wid}{query}")
    expect(p.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=20_000)


def team(person: Callable[..., Person], api: httpx.Client) -> tuple[Person, Person, str]:
    a = person("Alice")
    b = person("Bob")
    wid = create_workspace(api, a.account, "Board v2")
    add_member(api, wid, a.account, b.account, "editor")
    open_board(a, wid)
    open_board(b, wid)
    return a, b, wid


def add_task(p: Person, title: str) -> None:
    p.page.get_by_label("New task title").fill(title)
    p.page.get_by_role("button", name="Add task").click()
    expect(card(p, title)).to_be_visible()


def card(p: Person, title: str) -> Any:
    return p.page.get_by_test_id("task-card").filter(has=p.page.get_by_role("button", name=f"Open task {title}"))


def titles(p: Person, status: str) -> Any:
    return p.page.get_by_test_id(f"column-{status}").locator(".card-title")


def lower_half(target: Any) -> float:
    """A point near the bottom edge of an element (a drop there lands after it)."""
    box = target.bounding_box()
    assert box is not None
    return float(box["height"]) - 4


def open_task(p: Person, title: str) -> Any:
    card(p, title).get_by_role("button", name=re.compile("Open task")).click()
    return p.page.get_by_role("dialog", name=re.compile("^Task:"))


def test_moves_by_keyboard_and_by_drag_reach_the_other_board_in_order(
    person: Callable[..., Person], api: httpx.Client
) -> None:
    a, b, wid = team(person, api)
    for t in ("One", "Two", "Three"):
        add_task(a, t)
    expect(titles(b, "todo")).to_have_text(["One", "Two", "Three"])
    # keyboard: Alt+ArrowUp twice takes "Three" to the top, focus stays on it
    three = card(a, "Three").get_by_role("button", name="Open task Three")
    three.focus()
    a.page.keyboard.press("Alt+ArrowUp")
    expect(titles(a, "todo")).to_have_text(["One", "Three", "Two"])
    a.page.keyboard.press("Alt+ArrowUp")
    expect(titles(b, "todo")).to_have_text(["Three", "One", "Two"])
    expect(a.page.get_by_test_id("move-announcement")).to_have_text("Moved Three to To do, position 1.")
    # Alt+ArrowRight: to the next column; Alt+ArrowDown at the bottom does nothing
    a.page.keyboard.press("Alt+ArrowRight")
    expect(titles(b, "in_progress")).to_have_text(["Three"])
    expect(titles(b, "todo")).to_have_text(["One", "Two"])
    a.page.keyboard.press("Alt+ArrowDown")
    a.page.keyboard.press("Alt+ArrowLeft")
    expect(titles(b, "todo")).to_have_text(["Three", "One", "Two"])
    # drag and drop: "Two" onto the upper half of "Three" goes before it
    card(b, "Two").drag_to(card(b, "Three"), target_position={"x": 20, "y": 4})
    expect(titles(a, "todo")).to_have_text(["Two", "Three", "One"])
    # onto the lower half of "Two": just after it
    card(b, "One").drag_to(card(b, "Two"), target_position={"x": 20, "y": lower_half(card(b, "Two"))})
    expect(titles(a, "todo")).to_have_text(["Two", "One", "Three"])
    # into another column's empty space: its end
    done = a.page.get_by_test_id("column-done")
    card(a, "One").drag_to(done, target_position={"x": 20, "y": lower_half(done)})
    expect(titles(a, "done")).to_have_text(["One"])
    card(a, "Two").drag_to(done, target_position={"x": 20, "y": lower_half(done)})
    expect(titles(b, "done")).to_have_text(["One", "Two"])
    # the server's view agrees: rank order per column
    got = api.get(f"/api/workspaces/{wid}/tasks", params={"sort": "rank"}, headers=a.account.headers).json()
    items = got["items"] if isinstance(got, dict) else got
    assert [(t["title"], t["status"]) for t in items if t["status"] == "done"] == [("One", "done"), ("Two", "done")]
    assert all(isinstance(t["rank"], str) for t in items)


def test_labels_priority_checklist_and_filters_in_the_url(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, wid = team(person, api)
    add_task(a, "Fix the login bug")
    add_task(a, "Write the release notes")
    # labels manager: create two, rename and recolor one
    a.page.get_by_role("button", name="Labels", exact=True).click()
    manager = a.page.get_by_role("dialog", name="Labels")
    for name in ("Bug", "Design"):
        manager.get_by_label("New label name").fill(name)
        manager.get_by_role("button", name="Create label").click()
    expect(manager.get_by_test_id("label-row")).to_have_count(2)
    manager.get_by_label("Name of Design").fill("UX")
    manager.get_by_label("Name of Design").press("Enter")
    manager.get_by_label("Color of UX").fill("#16a34a")
    manager.get_by_role("button", name="Close labels").click()
    # detail panel: priority, a label, a checklist with one of two items done
    detail = open_task(a, "Fix the login bug")
    detail.get_by_label("Priority").select_option("high")
    detail.get_by_role("button", name="Bug").click()
    expect(detail.get_by_role("button", name="Bug")).to_have_attribute("aria-pressed", "true")
    for item in ("Reproduce", "Write a test"):
        detail.get_by_label("New checklist item").fill(item)
        detail.get_by_role("button", name="Add item").click()
    detail.get_by_label("New checklist item").fill("Obsolete step")
    detail.get_by_role("button", name="Add item").click()
    detail.get_by_role("button", name="Remove Obsolete step").click()
    detail.get_by_label("Text of Write a test").fill("Write a regression test")
    detail.get_by_label("Text of Write a test").press("Enter")
    expect(detail.get_by_role("checkbox", name="Write a regression test")).to_be_visible()
    detail.get_by_role("checkbox", name="Reproduce").check()
    expect(detail.get_by_test_id("checklist-progress")).to_have_text("1/2")
    # status from the detail panel
    detail.get_by_label("Status", exact=True).select_option("in_progress")
    a.page.keyboard.press("Escape")
    # B sees it all on the card
    bug = card(b, "Fix the login bug")
    expect(b.page.get_by_test_id("column-in_progress")).to_contain_text("Fix the login bug")
    expect(bug.get_by_test_id("card-priority")).to_have_text("High")
    expect(bug.get_by_test_id("label-chip")).to_have_text(["Bug"])
    expect(bug.get_by_test_id("card-progress")).to_have_text("☑ 1/2")
    # A filters by label and priority: the URL carries them, and B opening that URL sees the same board
    a.page.get_by_label("Filter by label").select_option(label="Bug")
    a.page.get_by_label("Filter by priority").select_option("high")
    expect(a.page.get_by_test_id("task-card")).to_have_count(1)
    expect(a.page).to_have_url(re.compile(r"\?label=[0-9a-f-]+&priority=high$"))
    shared = a.page.url
    b.page.goto(shared)
    expect(b.page.get_by_test_id("task-card")).to_have_count(1)
    expect(b.page.get_by_label("Filter by label")).to_have_value(re.compile("[0-9a-f-]{36}"))
    expect(card(b, "Write the release notes")).to_have_count(0)
    b.page.get_by_role("button", name="Clear filters").click()
    expect(b.page.get_by_test_id("task-card")).to_have_count(2)
    assert "?" not in b.page.url
    # a filter on status and due date
    b.page.get_by_label("Filter by status").select_option("todo")
    expect(b.page.get_by_test_id("task-card")).to_have_count(1)
    b.page.get_by_label("Filter by due date").select_option("none")
    expect(card(b, "Write the release notes")).to_be_visible()
    b.page.get_by_role("button", name="Clear filters").click()
    # deleting a label takes it off the task, for everyone
    b.page.get_by_role("button", name="Labels", exact=True).click()
    b.page.get_by_role("button", name="Delete label Bug").click()
    expect(card(a, "Fix the login bug").get_by_test_id("label-chip")).to_have_count(0)
    labels = api.get(f"/api/workspaces/{wid}/labels", headers=a.account.headers).json()
    items = labels["items"] if isinstance(labels, dict) else labels
    assert [(label["name"], label["color"]) for label in items] == [("UX", "#16a34a")]


def test_comments_with_mentions_markdown_and_human_dates(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, wid = team(person, api)
    today = dt.date.today()
    h = a.account.headers
    for title, due in (("Due soon", today + dt.timedelta(days=1)), ("Late", today - dt.timedelta(days=3))):
        r = api.post(f"/api/workspaces/{wid}/tasks", json={"title": title, "due_date": due.isoformat()}, headers=h)
        assert r.status_code == 201, r.text
    expect(card(a, "Due soon").get_by_test_id("card-due")).to_have_text("due tomorrow")
    late = card(a, "Late").get_by_test_id("card-due")
    expect(late).to_have_text("overdue by 3 days")
    expect(late).to_have_class(re.compile("overdue"))
    a.page.get_by_label("Filter by due date").select_option("overdue")
    expect(a.page.get_by_test_id("task-card")).to_have_count(1)
    a.page.get_by_label("Filter by due date").select_option("week")
    expect(a.page.get_by_test_id("task-card")).to_have_text(re.compile("Due soon"))
    a.page.get_by_label("Filter by due date").select_option("")

    # a comment with an @-mention picked from the autocomplete
    detail = open_task(a, "Due soon")
    box = detail.get_by_label("New comment")
    # the list follows the arrow keys and closes with Escape (the dialog stays open)
    box.press_sequentially("@")
    suggestions = detail.get_by_role("listbox", name="Mention a member")
    expect(suggestions.get_by_role("option")).to_have_count(2)
    box.press("ArrowDown")
    expect(suggestions.get_by_role("option", selected=True)).to_have_count(1)
    box.press("ArrowUp")
    box.press("Escape")
    expect(suggestions).to_have_count(0)
    expect(detail).to_be_visible()
    box.fill("")
    box.press_sequentially("Can you check this @Bo")
    expect(suggestions.get_by_role("option", name="Bob", exact=True)).to_be_visible()
    box.press("Enter")
    expect(box).to_have_value(f"Can you check this @[Bob](user:{b.account.id}) ")
    box.press_sequentially("please?")
    detail.get_by_role("button", name="Comment", exact=True).click()
    expect(card(b, "Due soon").get_by_test_id("card-comments")).to_have_text("💬 1")
    bdetail = open_task(b, "Due soon")
    comment = bdetail.get_by_test_id("comment")
    expect(comment.get_by_test_id("comment-author")).to_have_text("Alice")
    expect(comment.get_by_test_id("comment-body")).to_have_text("Can you check this @Bob please?")
    # Bob answers and edits his own answer; he cannot edit Alice's
    bdetail.get_by_label("New comment").fill("On it")
    bdetail.get_by_role("button", name="Comment", exact=True).click()
    expect(detail.get_by_test_id("comment")).to_have_count(2)
    expect(comment.first.get_by_role("button", name="Edit")).to_have_count(0)
    mine = bdetail.get_by_test_id("comment").nth(1)
    mine.get_by_role("button", name="Edit").click()
    mine.get_by_role("button", name="Cancel").click()
    mine.get_by_role("button", name="Edit").click()
    mine.get_by_label("Edit comment").fill("On it, today")
    mine.get_by_role("button", name="Save").click()
    expect(detail.get_by_test_id("comment").nth(1).get_by_test_id("comment-body")).to_have_text("On it, today")
    expect(detail.get_by_test_id("comment").nth(1)).to_contain_text("(edited)")

    # Ctrl+Enter sends; the owner may delete anyone's comment
    bdetail.get_by_label("New comment").fill("Typo comment")
    bdetail.get_by_label("New comment").press("Control+Enter")
    expect(detail.get_by_test_id("comment")).to_have_count(3)
    detail.get_by_test_id("comment").nth(2).get_by_role("button", name="Delete comment").click()
    expect(bdetail.get_by_test_id("comment")).to_have_count(2)

    # the description: Markdown when not being edited, sanitized
    editor = detail.get_by_test_id("description")
    editor.click()
    editor.press_sequentially(
        f"# Plan\n**bold** and <img src=x onerror=alert(1)> [link](https://example.org) @[Bobby](user:{b.account.id})"
    )
    # Markdown highlighting in the editor: the heading line is styled (wrapped in spans)
    expect(editor.locator(".cm-line").first.locator("span").first).to_be_visible()
    detail.get_by_label("New comment").focus()
    preview = detail.get_by_test_id("description-preview")
    expect(preview.locator("h1")).to_have_text("Plan")
    expect(preview.locator("strong")).to_have_text("bold")
    expect(preview.locator("a")).to_have_attribute("rel", "noopener noreferrer nofollow")
    # raw HTML is shown as text, never made into elements; a mention shows the member's current name
    expect(preview.locator("img")).to_have_count(0)
    expect(preview).to_contain_text("<img src=x onerror=alert(1)>")
    expect(preview.locator(".mention")).to_have_text("@Bob")
    expect(bdetail.get_by_test_id("description-preview").locator("h1")).to_have_text("Plan")
    # a click on the description (the transparent editor under the preview) edits the source again
    editor.click(position={"x": 5, "y": 5})
    expect(preview).to_have_count(0)

    # a comment by someone who left reads as from a former member
    r = api.delete(f"/api/workspaces/{wid}/members/{b.account.id}", headers=h)
    assert r.status_code == 204, r.text
    a.page.reload()
    expect(a.page.get_by_test_id("comment").nth(1).get_by_test_id("comment-author")).to_have_text("Former member")
    a.shot("board-v2-task-detail")


def test_search_instant_on_the_board_and_across_workspaces(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Searcher")
    h = a.account.headers
    w1 = create_workspace(api, a.account, "Work")
    w2 = create_workspace(api, a.account, "Home")
    for wid, title, desc in (
        (w1, "Quarterly report", "collect the zebra numbers"),
        (w1, "Team lunch", ""),
        (w2, "Zebra crossing", "paint it"),
    ):
        r = api.post(f"/api/workspaces/{wid}/tasks", json={"title": title, "description": desc}, headers=h)
        assert r.status_code == 201, r.text
    open_board(a, w1)
    expect(a.page.get_by_test_id("task-card")).to_have_count(2)
    # `/` focuses the search; typing filters the loaded board at once (title, description) and the URL keeps it
    a.page.keyboard.press("/")
    expect(a.page.get_by_label("Search tasks")).to_be_focused()
    a.page.keyboard.type("zebra")
    expect(a.page.get_by_test_id("task-card")).to_have_count(1)
    expect(card(a, "Quarterly report")).to_be_visible()
    expect(a.page).to_have_url(re.compile(r"\?q=zebra$"))
    # the server's index is kept within about a second: wait for it, then search everywhere
    wait_until(
        lambda: len(api.get("/api/search", params={"q": "zebra"}, headers=h).json()["items"]) == 2,
        timeout=15,
        message="both zebra tasks indexed",
    )
    a.page.keyboard.press("Enter")
    results = a.page.get_by_role("dialog", name="Search results for zebra")
    expect(results.get_by_test_id("search-hit")).to_have_count(2)
    expect(results).to_contain_text("in Home")
    results.get_by_role("link", name="Zebra crossing").click()
    expect(a.page).to_have_url(re.compile(f"/w/{w2}/t/"))
    expect(a.page.get_by_role("dialog", name="Task: Zebra crossing")).to_be_visible()
