"""Two people in two browser contexts on one workspace: live changes, shared editing, offline, roles."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.node import wait_until
from tests.support.users import add_member, create_workspace

from .conftest import PHONE, Person

pytestmark = pytest.mark.browser


def open_board(p: Person, wid: str) -> None:
    p.goto(f"/w/{wid}")
    expect(p.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=20_000)


def add_task(p: Person, title: str) -> None:
    p.page.get_by_label("New task title").fill(title)
    p.page.get_by_role("button", name="Add task").click()


def card(p: Person, title: str) -> object:
    return p.page.get_by_test_id("task-card").filter(has_text=title)


# The editor's text without the remote cursors' name labels that y-codemirror.next draws inside it.
EDITOR_TEXT = """(() => {
  const el = document.querySelector('[data-testid=description]').cloneNode(true)
  el.querySelectorAll('.cm-ySelectionCaret, .cm-ySelectionInfo').forEach((n) => n.remove())
  return Array.from(el.querySelectorAll('.cm-line')).map((l) => l.textContent).join('\\n').replace(/\\u2060/g, '')
})"""


def editor_text(p: Person) -> str:
    return str(p.page.evaluate(f"{EDITOR_TEXT}()"))


def wait_editor_text(p: Person, text: str) -> None:
    p.page.wait_for_function(f"t => {EDITOR_TEXT}() === t", arg=text, timeout=10_000)


def team(person: Callable[..., Person], api: httpx.Client, role: str = "editor") -> tuple[Person, Person, str]:
    a = person("Alice")
    b = person("Bob")
    wid = create_workspace(api, a.account, "Live team")
    add_member(api, wid, a.account, b.account, role)
    open_board(a, wid)
    open_board(b, wid)
    return a, b, wid


def test_a_creates_a_task_and_b_sees_it_live(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, wid = team(person, api)
    add_task(a, "Draft the launch post")
    expect(b.page.get_by_test_id("column-todo").get_by_text("Draft the launch post")).to_be_visible()
    # moving with the keyboard-accessible control
    card(a, "Draft the launch post").get_by_label(re.compile("Status of")).select_option("in_progress")
    expect(b.page.get_by_test_id("column-in_progress").get_by_text("Draft the launch post")).to_be_visible()
    # drag and drop into Done
    card(b, "Draft the launch post").drag_to(b.page.get_by_test_id("column-done"))
    expect(a.page.get_by_test_id("column-done").get_by_text("Draft the launch post")).to_be_visible()
    # the REST view of the same document agrees
    tasks = api.get(f"/api/workspaces/{wid}/tasks", headers=a.account.headers).json()
    items = tasks["items"] if isinstance(tasks, dict) else tasks
    assert [(t["title"], t["status"]) for t in items] == [("Draft the launch post", "done")]
    assert items[0]["completed_at"]
    # presence: both see two people online
    expect(a.page.get_by_test_id("presence").get_by_role("img")).to_have_count(2)
    a.shot("board-live")


def test_both_type_into_one_description_and_converge(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, _ = team(person, api)
    add_task(a, "Shared notes")
    expect(card(b, "Shared notes")).to_be_visible()
    card(a, "Shared notes").get_by_role("button", name=re.compile("Open task")).click()
    card(b, "Shared notes").get_by_role("button", name=re.compile("Open task")).click()
    ed_a = a.page.get_by_test_id("description")
    ed_b = b.page.get_by_test_id("description")
    ed_a.click()
    ed_b.click()
    # each sees the other looking at the task
    expect(a.page.get_by_test_id("task-viewers")).to_contain_text("Bob")
    expect(b.page.get_by_test_id("task-viewers")).to_contain_text("Alice")
    for i in range(3):  # interleaved, no waiting for the other side
        ed_a.press_sequentially(f"alpha{i} ", delay=5)
        ed_b.press_sequentially(f"beta{i} ", delay=5)

    expect(ed_a).to_contain_text("beta2", timeout=10_000)
    expect(ed_b).to_contain_text("alpha2", timeout=10_000)
    a.page.wait_for_function(
        f"() => {EDITOR_TEXT}().includes('alpha2') && {EDITOR_TEXT}().includes('beta2')", timeout=10_000
    )
    b.page.wait_for_function(f"() => {EDITOR_TEXT}().includes('alpha2') && {EDITOR_TEXT}().includes('beta2')")
    final = editor_text(a)
    assert editor_text(b) == final
    for i in range(3):
        assert f"alpha{i}" in final and f"beta{i}" in final, final
    # the other's cursor and name are drawn (y-codemirror.next remote selection)
    expect(a.page.locator(".cm-ySelectionCaret")).to_have_count(1)
    a.shot("task-detail-collab")


def test_assigning_b_gives_b_a_toast_and_an_unread_badge(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, _ = team(person, api)
    add_task(a, "Review the budget")
    card(a, "Review the budget").get_by_role("button", name=re.compile("Open task")).click()
    a.page.get_by_label("Assignee", exact=True).select_option(label="Bob")
    expect(b.page.get_by_test_id("toast").filter(has_text="assigned")).to_be_visible(timeout=15_000)
    expect(b.page.get_by_test_id("unread-count")).to_have_text("1")
    # Alice was told Bob joined (she owns the workspace), never about her own assignment
    expect(a.page.get_by_test_id("unread-count")).to_have_text("1")
    mine = api.get("/api/notifications", headers=a.account.headers).json()["items"]
    assert [n["type"] for n in mine] == ["member_joined"]
    b.page.get_by_role("button", name=re.compile("^Notifications")).click()
    center = b.page.get_by_role("dialog", name="Notification center")
    expect(center.get_by_test_id("notification")).to_contain_text("Alice assigned “Review the budget” to you")
    b.shot("notification-center")
    center.get_by_role("button", name="Mark all read").click()
    expect(b.page.get_by_test_id("unread-count")).to_have_count(0)
    # the filter "mine" shows it for Bob
    b.page.keyboard.press("Escape")
    b.page.get_by_label("Filter by assignee").select_option("mine")
    expect(card(b, "Review the budget")).to_be_visible()


def test_offline_edits_sync_on_reconnect(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, _ = team(person, api)
    add_task(a, "Before offline")
    expect(card(b, "Before offline")).to_be_visible()
    b.context.set_offline(True)
    expect(b.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "offline")
    expect(b.page.get_by_test_id("connection-status")).to_have_text("Offline — changes saved locally")
    add_task(b, "Written on the train")
    card(b, "Before offline").get_by_label(re.compile("Status of")).select_option("done")
    b.shot("offline")
    expect(card(a, "Written on the train")).to_have_count(0)
    b.context.set_offline(False)
    expect(b.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(card(a, "Written on the train")).to_be_visible()
    expect(a.page.get_by_test_id("column-done").get_by_text("Before offline")).to_be_visible()


def test_local_copy_opens_the_board_after_a_reload(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Solo")
    wid = create_workspace(api, a.account, "Local first")
    open_board(a, wid)
    add_task(a, "Persisted in IndexedDB")
    expect(card(a, "Persisted in IndexedDB")).to_be_visible()
    a.page.reload()
    expect(card(a, "Persisted in IndexedDB")).to_be_visible()


def test_viewer_sees_changes_but_cannot_edit(person: Callable[..., Person], api: httpx.Client) -> None:
    a, v, _ = team(person, api, role="viewer")
    expect(v.page.get_by_test_id("viewer-note")).to_be_visible()
    expect(v.page.get_by_label("New task title")).to_have_count(0)
    add_task(a, "Visible to viewers")
    expect(card(v, "Visible to viewers")).to_be_visible()
    expect(card(v, "Visible to viewers").get_by_label(re.compile("Status of"))).to_have_count(0)
    card(v, "Visible to viewers").get_by_role("button", name=re.compile("Open task")).click()
    expect(v.page.get_by_label("Title")).to_have_count(0)
    expect(v.page.get_by_label("Assignee", exact=True)).to_be_disabled()
    expect(v.page.get_by_test_id("description")).to_have_attribute("contenteditable", "false")
    expect(v.page.get_by_role("button", name="Delete task")).to_have_count(0)
    # an edit made by the editor appears in the viewer's open description
    card(a, "Visible to viewers").get_by_role("button", name=re.compile("Open task")).click()
    a.page.get_by_test_id("description").click()
    a.page.get_by_test_id("description").press_sequentially("from the editor")
    wait_editor_text(v, "from the editor")


def test_delete_with_undo(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, _ = team(person, api)
    add_task(a, "Delete me")
    card(a, "Delete me").get_by_role("button", name=re.compile("Open task")).click()
    a.page.get_by_test_id("description").click()
    a.page.get_by_test_id("description").press_sequentially("precious")
    a.page.get_by_role("button", name="Delete task").click()
    expect(card(b, "Delete me")).to_have_count(0)
    a.page.get_by_test_id("toast").get_by_role("button", name="Undo").click()
    expect(card(b, "Delete me")).to_be_visible()
    card(b, "Delete me").get_by_role("button", name=re.compile("Open task")).click()
    wait_editor_text(b, "precious")


def test_removed_member_sees_no_access(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, wid = team(person, api)
    r = api.delete(f"/api/workspaces/{wid}/members/{b.account.id}", headers=a.account.headers)
    assert r.status_code in (200, 204), r.text
    expect(b.page.get_by_test_id("no-access")).to_be_visible(timeout=15_000)


def test_phone_board(person: Callable[..., Person], api: httpx.Client) -> None:
    p = person("Mobile", viewport=PHONE)
    wid = create_workspace(api, p.account, "On the go")
    open_board(p, wid)
    for title in ["Buy tickets", "Pack", "Check in"]:
        add_task(p, title)
    card(p, "Pack").get_by_label(re.compile("Status of")).select_option("in_progress")
    p.page.get_by_role("tab", name=re.compile("In progress")).click()  # a phone shows one column at a time
    expect(p.page.get_by_test_id("column-in_progress").get_by_text("Pack")).to_be_visible()
    width = p.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"board overflows a phone screen: {width}px"
    p.shot("board-phone")


def test_board_opens_and_edits_offline_after_a_reload(person: Callable[..., Person], api: httpx.Client) -> None:
    """Service worker (app shell) + IndexedDB (the doc) + cached REST answers: a reload with no network works."""
    a = person("Traveller")
    wid = create_workspace(api, a.account, "Offline first")
    open_board(a, wid)
    add_task(a, "Made online")
    expect(card(a, "Made online")).to_be_visible()
    a.page.wait_for_function(
        "async () => (await navigator.serviceWorker.ready)"
        " && (await (await caches.open('plait-shell-v1')).keys()).length > 1",
        timeout=15_000,
    )
    a.page.wait_for_timeout(300)  # y-indexeddb writes the last update
    a.context.set_offline(True)
    a.page.reload()
    expect(card(a, "Made online")).to_be_visible()
    expect(a.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "offline")
    add_task(a, "Made offline after reload")
    expect(card(a, "Made offline after reload")).to_be_visible()
    a.context.set_offline(False)
    expect(a.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=20_000)
    deadline = time.monotonic() + 10
    titles: list[str] = []
    while time.monotonic() < deadline:
        got = api.get(f"/api/workspaces/{wid}/tasks", headers=a.account.headers).json()
        titles = sorted(t["title"] for t in (got["items"] if isinstance(got, dict) else got))
        if len(titles) == 2:
            break
        time.sleep(0.2)
    assert titles == ["Made offline after reload", "Made online"]


def test_title_due_date_and_activity(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, _ = team(person, api)
    add_task(a, "Old title")
    card(b, "Old title").get_by_role("button", name=re.compile("Open task")).click()
    b.page.get_by_label("Title", exact=True).fill("New title")
    b.page.get_by_label("Title", exact=True).press("Enter")
    expect(card(a, "New title")).to_be_visible()
    b.page.get_by_label("Due date", exact=True).fill("2031-03-14")
    expect(card(a, "New title")).to_contain_text("2031-03-14")
    activity = b.page.get_by_test_id("activity")
    expect(activity).to_contain_text("Bob changed title from Old title to New title")
    expect(activity).to_contain_text("Bob changed due date from — to 2031-03-14")
    expect(activity).to_contain_text("Alice created the task")


def test_showcase_for_the_readme(person: Callable[..., Person], api: httpx.Client) -> None:
    """Not a check of its own: a populated board and a shared task, saved as the README's screenshots."""
    a, b, wid = team(person, api)
    h = a.account.headers
    rows = [
        ("Write the launch announcement", "in_progress", b.account.id, "2031-05-02"),
        ("Fix sign-in on Safari", "todo", a.account.id, "2031-04-28"),
        ("Plan the team offsite", "todo", None, None),
        ("Update the pricing page", "todo", b.account.id, "2031-05-10"),
        ("Migrate the database to PostgreSQL", "done", a.account.id, None),
        ("Record the demo video", "in_progress", a.account.id, "2031-05-05"),
    ]
    ids = {}
    for title, status, assignee, due in rows:
        body = {"title": title, "status": status, "assignee_id": assignee, "due_date": due}
        r = api.post(f"/api/workspaces/{wid}/tasks", json=body, headers=h)
        assert r.status_code == 201, r.text
        ids[title] = r.json()["id"]
    expect(a.page.get_by_test_id("task-card")).to_have_count(len(rows))
    b.goto(f"/w/{wid}/t/{ids['Write the launch announcement']}")
    b.page.get_by_test_id("description").click()
    b.page.get_by_test_id("description").press_sequentially("Plait 1.0 is out: live boards that also work offline.")
    expect(card(a, "Write the launch announcement").get_by_test_id("card-viewers")).to_be_visible()
    a.page.mouse.move(0, 0)
    a.shot("readme-board")
    a.goto(f"/w/{wid}/t/{ids['Write the launch announcement']}")
    a.page.get_by_test_id("description").click()
    a.page.keyboard.press("End")
    a.page.get_by_test_id("description").press_sequentially(" Try it today!")
    wait_editor_text(b, "Plait 1.0 is out: live boards that also work offline. Try it today!")
    expect(b.page.locator(".cm-ySelectionCaret")).to_have_count(1)
    b.page.wait_for_timeout(300)
    b.shot("readme-task-detail")


def test_notification_preferences_turn_off_assignment_notices(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, wid = team(person, api)
    b.goto("/settings/notifications")
    box = b.page.get_by_role("checkbox", name="Assigned to you")
    expect(box).to_be_checked()
    box.uncheck()
    expect(b.page.get_by_text("Saved.")).to_be_visible()
    assert api.get("/api/notifications/preferences", headers=b.account.headers).json()["task_assigned"] is False
    b.page.reload()
    expect(b.page.get_by_role("checkbox", name="Assigned to you")).not_to_be_checked()
    add_task(a, "Quiet assignment")
    card(a, "Quiet assignment").get_by_role("button", name=re.compile("Open task")).click()
    a.page.get_by_label("Assignee", exact=True).select_option(label="Bob")
    a.page.keyboard.press("Escape")
    add_task(a, "Marker")  # a later change, so the assignment has been processed when this lands
    card(a, "Marker").get_by_label(re.compile("Status of")).select_option("done")

    def marker_done() -> bool:  # activity and notifications are derived in order, in one transaction per window
        items = api.get(f"/api/workspaces/{wid}/activity", headers=a.account.headers).json()["items"]
        return any(i["field"] == "status" and i["new_value"] == "done" for i in items)

    wait_until(marker_done, 10, message="the marker's change was never derived")
    assert api.get("/api/notifications", headers=b.account.headers).json()["items"] == []
    expect(b.page.get_by_test_id("toast")).to_have_count(0)


def test_keyboard_only_create_open_edit_and_close(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Keys")
    wid = create_workspace(api, a.account, "Keyboard")
    open_board(a, wid)
    kb = a.page.keyboard
    a.page.get_by_label("New task title").focus()
    kb.type("Typed without a mouse")
    kb.press("Enter")
    open_button = card(a, "Typed without a mouse").get_by_role("button", name=re.compile("Open task"))
    expect(open_button).to_be_visible()
    # Tab from the add form reaches the card's open button, then its status control
    for _ in range(6):
        kb.press("Tab")
        if open_button.evaluate("el => el === document.activeElement"):
            break
    assert open_button.evaluate("el => el === document.activeElement")
    kb.press("Tab")
    kb.press("ArrowDown")  # status select: To do -> In progress
    expect(a.page.get_by_test_id("column-in_progress").get_by_text("Typed without a mouse")).to_be_visible()
    open_button = card(a, "Typed without a mouse").get_by_role("button", name=re.compile("Open task"))
    open_button.focus()
    kb.press("Enter")
    dialog = a.page.get_by_role("dialog", name=re.compile("Task: Typed without a mouse"))
    expect(dialog).to_be_visible()
    kb.press("Escape")
    expect(dialog).to_have_count(0)
    expect(a.page).to_have_url(re.compile(f"/w/{wid}$"))


def test_unknown_workspace_shows_no_access(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Lost")
    a.goto("/w/0b7f3c2e-1111-4222-8333-444455556666")
    expect(a.page.get_by_test_id("no-access")).to_be_visible()


def test_demoted_editor_loses_editing_controls(person: Callable[..., Person], api: httpx.Client) -> None:
    a, b, wid = team(person, api)
    expect(b.page.get_by_label("New task title")).to_be_visible()
    r = api.patch(f"/api/workspaces/{wid}/members/{b.account.id}", json={"role": "viewer"}, headers=a.account.headers)
    assert r.status_code == 200, r.text
    b.page.evaluate("window.dispatchEvent(new Event('focus'))")  # the app re-reads its role on focus
    expect(b.page.get_by_test_id("viewer-note")).to_be_visible()
    expect(b.page.get_by_label("New task title")).to_have_count(0)


def test_local_copy_from_before_a_restore_is_replaced_not_merged(
    person: Callable[..., Person], api: httpx.Client
) -> None:
    """A local copy whose epoch is not the server's (a restore happened) is dropped and reloaded: edits it holds
    that the server never saw are not merged back (they would duplicate content)."""
    a = person("Restorer")
    wid = create_workspace(api, a.account, "Restored")
    info = api.get(f"/api/workspaces/{wid}/document", headers=a.account.headers).json()
    assert info.get("epoch"), info
    open_board(a, wid)
    add_task(a, "On the server")
    expect(card(a, "On the server")).to_be_visible()
    key = f"plait.epoch.{a.account.id}.{wid}"
    a.page.wait_for_function("k => localStorage.getItem(k) !== null", arg=key)
    a.context.set_offline(True)
    # only once the socket is really down: an edit sent before that reaches the server legitimately
    expect(a.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "offline")
    add_task(a, "Only in the stale copy")
    expect(card(a, "Only in the stale copy")).to_be_visible()
    a.page.wait_for_timeout(300)  # y-indexeddb stores it
    a.page.evaluate("k => localStorage.setItem(k, 'epoch-of-an-older-life')", key)
    # Reload while still offline: the open session still holds the real epoch and would sync the offline edit
    # the moment the network returns; the reloaded page starts from the stale copy and its stale epoch.
    a.page.reload()
    expect(card(a, "Only in the stale copy")).to_be_visible()
    a.context.set_offline(False)
    expect(a.page.get_by_test_id("toast").filter(has_text="restored from a backup")).to_be_visible()
    expect(a.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    expect(card(a, "On the server")).to_be_visible()
    server_titles = [t["title"] for t in api.get(f"/api/workspaces/{wid}/tasks", headers=a.account.headers).json()]
    assert server_titles == ["On the server"], server_titles
    expect(card(a, "Only in the stale copy")).to_have_count(0)
    assert a.page.evaluate("k => localStorage.getItem(k)", key) == info["epoch"]
    got = api.get(f"/api/workspaces/{wid}/tasks", headers=a.account.headers).json()
    assert [t["title"] for t in (got["items"] if isinstance(got, dict) else got)] == ["On the server"]
