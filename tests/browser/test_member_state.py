"""The member list and the caller's role stay in step with the server (issue 24's three state bugs): pushed to
every open client at once, a viewer's refused edits discarded rather than replayed, names kept offline."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.users import add_member, create_workspace

from .conftest import Person
from .test_live import add_task, card, open_board, team

pytestmark = pytest.mark.browser


def assignee_filter_options(p: Person, name: str) -> object:
    return p.page.get_by_label("Filter by assignee").locator("option", has_text=name)


def set_role(api: httpx.Client, wid: str, actor: Person, target: Person, role: str) -> None:
    url = f"/api/workspaces/{wid}/members/{target.account.id}"
    r = api.patch(url, json={"role": role}, headers=actor.account.headers)
    assert r.status_code == 200, r.text


def task_titles(api: httpx.Client, wid: str, who: Person) -> list[str]:
    got = api.get(f"/api/workspaces/{wid}/tasks", headers=who.account.headers).json()
    return sorted(t["title"] for t in (got["items"] if isinstance(got, dict) else got))


def test_joins_role_changes_and_leaves_reach_open_clients_without_a_reload(
    person: Callable[..., Person], api: httpx.Client
) -> None:
    """No reload, no focus, no poll: the server pushes a `members` event and the client re-reads the list."""
    a = person("Alice")
    b = person("Bruno")
    c = person("Carla")
    wid = create_workspace(api, a.account, "Growing team")
    add_member(api, wid, a.account, c.account, "editor")
    open_board(a, wid)
    add_task(a, "Needs an owner")
    c.goto(f"/w/{wid}/members")
    expect(c.page.get_by_role("row", name=re.compile("Alice"))).to_be_visible()
    expect(assignee_filter_options(a, "Bruno")).to_have_count(0)

    add_member(api, wid, a.account, b.account, "editor")  # Bruno accepts an invite
    expect(assignee_filter_options(a, "Bruno")).to_have_count(1)
    card(a, "Needs an owner").get_by_role("button", name=re.compile("Open task")).click()
    a.page.get_by_label("Assignee", exact=True).select_option(label="Bruno")
    expect(c.page.get_by_role("row", name=re.compile("Bruno"))).to_contain_text("Editor")

    set_role(api, wid, a, b, "admin")  # a role change reaches another member's members page
    expect(c.page.get_by_role("row", name=re.compile("Bruno"))).to_contain_text("Admin")

    r = api.patch("/api/me", json={"display_name": "Bruno Brandt"}, headers=b.account.headers)  # a new name
    assert r.status_code == 200, r.text
    expect(assignee_filter_options(a, "Bruno Brandt")).to_have_count(1)
    expect(card(a, "Needs an owner").get_by_test_id("card-assignee")).to_contain_text("Bruno Brandt")

    r = api.delete(f"/api/workspaces/{wid}/members/{b.account.id}", headers=b.account.headers)  # Bruno leaves
    assert r.status_code == 204, r.text
    expect(assignee_filter_options(a, "Bruno")).to_have_count(0)
    expect(c.page.get_by_role("row", name=re.compile("Bruno"))).to_have_count(0)
    expect(card(a, "Needs an owner").get_by_test_id("card-assignee")).to_contain_text("Former member")


def test_a_demoted_editor_turns_read_only_at_once(person: Callable[..., Person], api: httpx.Client) -> None:
    """The server closes the demoted member's socket with 4423; the client switches to read-only and reconnects."""
    a, b, wid = team(person, api)
    expect(b.page.get_by_label("New task title")).to_be_visible()
    set_role(api, wid, a, b, "viewer")
    expect(b.page.get_by_test_id("viewer-note")).to_be_visible()
    expect(b.page.get_by_label("New task title")).to_have_count(0)
    expect(b.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    add_task(a, "Still seen by the viewer")
    expect(card(b, "Still seen by the viewer")).to_be_visible()
    set_role(api, wid, a, b, "editor")  # and back: the editing controls return without a reload
    expect(b.page.get_by_label("New task title")).to_be_visible()
    add_task(b, "Edited again")
    expect(card(a, "Edited again")).to_be_visible()


def test_an_edit_refused_while_demoted_is_discarded_never_replayed(
    person: Callable[..., Person], api: httpx.Client
) -> None:
    """Bob edits offline, unaware he was made a viewer meanwhile. Back online the server drops the edit; the
    client must drop it too (and its IndexedDB copy), so promoting Bob again and reloading never replays it."""
    a, b, wid = team(person, api)
    add_task(a, "Shared")
    expect(card(b, "Shared")).to_be_visible()
    b.context.set_offline(True)
    expect(b.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "offline")
    set_role(api, wid, a, b, "viewer")
    add_task(b, "Refused edit")  # Bob's screen still offers editing: he cannot know yet
    expect(card(b, "Refused edit")).to_be_visible()
    b.context.set_offline(False)
    expect(b.page.get_by_test_id("viewer-note")).to_be_visible()
    expect(card(b, "Refused edit")).to_have_count(0)
    expect(card(b, "Shared")).to_be_visible()
    expect(b.page.get_by_test_id("toast").filter(has_text="now a viewer")).to_be_visible()

    set_role(api, wid, a, b, "editor")
    expect(b.page.get_by_label("New task title")).to_be_visible()
    b.page.reload()
    expect(b.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(card(b, "Shared")).to_be_visible()
    add_task(b, "Accepted edit")
    expect(card(a, "Accepted edit")).to_be_visible()  # Bob synced everything he holds; A got only this
    expect(card(a, "Refused edit")).to_have_count(0)
    expect(card(b, "Refused edit")).to_have_count(0)
    assert task_titles(api, wid, a) == ["Accepted edit", "Shared"]


# Whether the y-indexeddb copy holds an update that mentions this text (a user id: Yjs writes strings as UTF-8).
IDB_HOLDS = """async ([name, needle]) => {
  const db = await new Promise((ok, fail) => {
    const r = indexedDB.open(name)
    r.onsuccess = () => ok(r.result)
    r.onerror = fail
  })
  try {
    const all = await new Promise((ok) => {
      const q = db.transaction('updates').objectStore('updates').getAll()
      q.onsuccess = () => ok(q.result)
    })
    return all.some((u) => new TextDecoder('latin1').decode(u).includes(needle))
  } finally { db.close() }
}"""


def test_assignees_keep_their_names_after_an_offline_reload(person: Callable[..., Person], api: httpx.Client) -> None:
    """The cached member list is read under the signed-in user's key even before the workspace list loads."""
    a, b, wid = team(person, api)
    add_task(a, "Bob's task")
    card(a, "Bob's task").get_by_role("button", name=re.compile("Open task")).click()
    a.page.get_by_label("Assignee", exact=True).select_option(label="Bob")
    a.page.keyboard.press("Escape")
    expect(card(a, "Bob's task").get_by_test_id("card-assignee")).to_contain_text("Bob")
    a.page.wait_for_function(IDB_HOLDS, arg=[f"plait:{a.account.id}:{wid}", b.account.id])
    a.page.wait_for_function(
        "async () => (await navigator.serviceWorker.ready)"
        " && (await (await caches.open('plait-shell-v1')).keys()).length > 1",
        timeout=15_000,
    )
    a.page.wait_for_function("() => Object.keys(localStorage).some((k) => k.startsWith('plait.cache.members:'))")
    a.context.set_offline(True)
    a.page.reload()
    expect(a.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "offline")
    expect(card(a, "Bob's task").get_by_test_id("card-assignee")).to_contain_text("Bob")
    expect(assignee_filter_options(a, "Bob")).to_have_count(1)
    card(a, "Bob's task").get_by_role("button", name=re.compile("Open task")).click()
    expect(a.page.get_by_label("Assignee", exact=True).locator("option", has_text="Bob")).to_have_count(1)
    assert a.page.evaluate("k => localStorage.getItem(k) !== null", f"plait.cache.members:{a.account.id}:{wid}")
    a.context.set_offline(False)
