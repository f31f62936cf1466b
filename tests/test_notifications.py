"""Notifications and activity derived from document changes (real Yjs clients, REST, SSE, both databases)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import api.routes.notifications as notification_routes
from api.domain.notifications.worker import NotificationService
from persistence.db import Database
from sync_server.schema import TaskChange
from tests.support.node import NodeClient, start_clients, wait_until
from tests.support.server import ThreadServer
from tests.support.sse import SseReader
from tests.support.users import Account, add_member, register, workspace_with


def _notes(client: httpx.Client, acct: Account, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/notifications", params=params, headers=acct.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _task_notes(client: httpx.Client, acct: Account) -> list[dict[str, Any]]:
    return [n for n in _notes(client, acct) if n["type"] != "member_joined"]


@pytest.fixture
def node(server: ThreadServer) -> Iterator[NodeClient]:
    (c,) = start_clients(1, prefix="notif")
    with c:
        yield c


def _stream(server: ThreadServer, acct: Account, **headers: str) -> SseReader:
    return SseReader(f"{server.base_url}/api/notifications/stream?token={acct.token}", headers=headers)


@pytest.mark.slow
@pytest.mark.node
def test_assignment_from_a_client_notifies_assignee_once_and_never_the_actor(
    server: ThreadServer, client: httpx.Client, node: NodeClient
) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    assert _task_notes(client, editor) == []
    with _stream(server, editor) as sse:
        assert sse.wait_open() == 200
        node.connect(f"{server.ws_url}/sync", wid, owner.token)
        node.wait_synced(10)
        tid = node.create_task("Review", created_by=owner.id)
        node.set_field(tid, "assignee_id", editor.id)
        event = sse.wait_event(lambda e: e.event == "notification")
        pushed = event.json()
        assert pushed["type"] == "task_assigned" and pushed["task_id"] == tid
        assert pushed["actor"] == {"id": owner.id, "display_name": owner.display_name}
        assert pushed["data"]["title"] == "Review" and pushed["read_at"] is None
        assert event.id is not None and int(event.id) > 0
    notes = wait_until(lambda: _task_notes(client, editor), 5)
    assert len(notes) == 1 and notes[0] == pushed
    assert _notes(client, editor, unread="true")[0]["id"] == pushed["id"]
    assert _task_notes(client, owner) == [], "the actor is never notified of their own action"
    # the same value again is no change: still exactly one
    node.set_field(tid, "assignee_id", editor.id)
    node.set_field(tid, "title", "Review (marker)")
    wait_until(
        lambda: (
            client.get(f"/api/workspaces/{wid}/activity", headers=owner.headers).json()["items"][0]["field"] == "title"
        ),
        5,
    )
    assert len(_task_notes(client, editor)) == 1


def test_each_notification_type_goes_to_the_right_people(client: httpx.Client) -> None:
    wid, owner, (alice, bob, admin) = workspace_with(client, "editor", "editor", "admin")
    base = f"/api/workspaces/{wid}/tasks"
    # owner creates a task assigned to alice: alice gets task_assigned
    tid = client.post(
        base, json={"title": "T", "assignee_id": alice.id, "due_date": "2030-01-01"}, headers=owner.headers
    ).json()["id"]
    wait_until(lambda: [n["type"] for n in _task_notes(client, alice)] == ["task_assigned"], 5)
    # bob moves it to himself: bob is the actor (nothing for him), alice is unassigned
    client.patch(f"{base}/{tid}", json={"assignee_id": bob.id}, headers=bob.headers)
    wait_until(lambda: [n["type"] for n in _task_notes(client, alice)] == ["task_unassigned", "task_assigned"], 5)
    # alice changes the due date: the assignee (bob) hears of it
    client.patch(f"{base}/{tid}", json={"due_date": "2030-02-01"}, headers=alice.headers)
    due = wait_until(lambda: [n for n in _task_notes(client, bob) if n["type"] == "task_due_date_changed"], 5)
    assert due[0]["data"]["old"] == "2030-01-01" and due[0]["data"]["new"] == "2030-02-01"
    # alice completes it: creator (owner) and assignee (bob) are told, alice (actor) is not
    client.patch(f"{base}/{tid}", json={"status": "done"}, headers=alice.headers)
    wait_until(lambda: [n["type"] for n in _task_notes(client, owner)] == ["task_completed"], 5)
    wait_until(lambda: "task_completed" in [n["type"] for n in _task_notes(client, bob)], 5)
    assert "task_completed" not in [n["type"] for n in _task_notes(client, alice)]
    # member_joined: to owners and admins, not to editors or the newcomer
    newcomer = register(client, "newcomer")
    add_member(client, wid, owner, newcomer, "viewer")
    for acct in (owner, admin):
        joined = wait_until(
            lambda a=acct: [
                n for n in _notes(client, a) if n["type"] == "member_joined" and n["actor"]["id"] == newcomer.id
            ],  # type: ignore[misc]
            5,
        )
        assert len(joined) == 1 and joined[0]["data"]["user"]["id"] == newcomer.id and joined[0]["task_id"] is None
    for acct in (alice, newcomer):
        assert not [n for n in _notes(client, acct) if n["type"] == "member_joined" and n["actor"]["id"] == newcomer.id]
    # assigning a non-member via REST is refused, so nobody outside is ever notified
    outsider = register(client, "outsider")
    assert client.patch(f"{base}/{tid}", json={"assignee_id": outsider.id}, headers=owner.headers).status_code == 422
    assert _notes(client, outsider) == []


def test_preference_off_creates_nothing(client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    r = client.get("/api/notifications/preferences", headers=editor.headers)
    assert r.status_code == 200 and all(r.json().values()) and "task_assigned" in r.json()
    r = client.put("/api/notifications/preferences", json={"task_assigned": False}, headers=editor.headers)
    assert r.status_code == 200 and r.json()["task_assigned"] is False and r.json()["task_completed"] is True
    assert client.get("/api/notifications/preferences", headers=editor.headers).json() == r.json()
    for bad in ({"nope": True}, {"task_assigned": "no"}):
        assert client.put("/api/notifications/preferences", json=bad, headers=editor.headers).status_code == 422
    base = f"/api/workspaces/{wid}/tasks"
    tid = client.post(base, json={"title": "quiet", "assignee_id": editor.id}, headers=owner.headers).json()["id"]
    client.patch(f"{base}/{tid}", json={"status": "done"}, headers=owner.headers)  # still on: arrives
    wait_until(lambda: [n["type"] for n in _task_notes(client, editor)] == ["task_completed"], 5)
    # preferences are per user: the owner's defaults are untouched
    assert client.get("/api/notifications/preferences", headers=owner.headers).json()["task_assigned"] is True


def test_list_pagination_read_and_read_all(client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    base = f"/api/workspaces/{wid}/tasks"
    for i in range(5):
        client.post(base, json={"title": f"t{i}", "assignee_id": editor.id}, headers=owner.headers)
    wait_until(lambda: len(_task_notes(client, editor)) == 5, 5)
    titles: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/api/notifications", params=params, headers=editor.headers).json()
        titles += [n["data"]["title"] for n in body["items"]]
        cursor = body["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert titles == ["t4", "t3", "t2", "t1", "t0"] and pages == 3, "newest first, every item once"
    first = _notes(client, editor)[0]
    r = client.post(f"/api/notifications/{first['id']}/read", headers=editor.headers)
    assert r.status_code == 200 and r.json()["read_at"] is not None
    assert first["id"] not in [n["id"] for n in _notes(client, editor, unread="true")]
    # someone else's notification is invisible (404), like an unknown one
    assert client.post(f"/api/notifications/{first['id']}/read", headers=owner.headers).status_code == 404
    assert client.post("/api/notifications/not-a-uuid/read", headers=editor.headers).status_code == 404
    assert client.get("/api/notifications", params={"cursor": "x"}, headers=editor.headers).status_code == 422
    r = client.post("/api/notifications/read-all", headers=editor.headers)
    assert r.status_code == 200 and r.json()["updated"] >= 4
    assert _notes(client, editor, unread="true") == []
    assert client.get("/api/notifications").status_code == 401


def test_sse_auth_last_event_id_and_heartbeat(
    server: ThreadServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    assert client.get("/api/notifications/stream").status_code == 401
    assert client.get("/api/notifications/stream", params={"token": "garbage"}).status_code == 401
    base = f"/api/workspaces/{wid}/tasks"
    ids = [
        client.post(base, json={"title": f"s{i}", "assignee_id": editor.id}, headers=owner.headers).json()["id"]
        for i in range(3)
    ]
    wait_until(lambda: len(_task_notes(client, editor)) == 3, 5)
    monkeypatch.setattr(notification_routes, "HEARTBEAT_SECONDS", 0.2)
    # header auth; a fresh stream starts at "now": nothing old is replayed
    with SseReader(f"{server.base_url}/api/notifications/stream", headers=editor.headers) as sse:
        assert sse.wait_open() == 200
        wait_until(lambda: any(c.startswith("ping") for c in sse.comments), 5, message="heartbeat comment")
        assert sse.snapshot() == []
        client.patch(f"{base}/{ids[0]}", json={"due_date": "2031-01-01"}, headers=owner.headers)
        live = sse.wait_event()
        assert live.json()["type"] == "task_due_date_changed"
    # a reconnecting client with Last-Event-ID gets exactly what came after it, in order
    oldest_first = list(reversed(_task_notes(client, editor)))
    after = oldest_first[0]
    seq_of_first = None
    with _stream(server, editor, **{"Last-Event-ID": "0"}) as replay:
        replay.wait_open()
        events = wait_until(lambda: replay.snapshot() if len(replay.snapshot()) >= 4 else None, 5)
        got = [e.json()["id"] for e in events]
        assert got == [n["id"] for n in oldest_first], "everything, oldest first"
        seq_of_first = events[0].id
    assert seq_of_first is not None
    with _stream(server, editor, **{"Last-Event-ID": seq_of_first}) as resumed:
        resumed.wait_open()
        wait_until(lambda: len(resumed.snapshot()) == 3, 5)
        assert [e.json()["id"] for e in resumed.snapshot()] == [n["id"] for n in oldest_first[1:]]
        assert after["id"] not in [e.json()["id"] for e in resumed.snapshot()]


async def test_derivation_is_idempotent_per_change_and_recipient(server: ThreadServer, client: httpx.Client) -> None:
    """Deriving the same durable update twice (a retry, or a second node) stores one row per recipient."""
    wid, owner, (editor,) = workspace_with(client, "editor")
    task = {
        "id": "11111111-1111-4111-8111-111111111111",
        "title": "dup",
        "assignee_id": editor.id,
        "created_by": owner.id,
    }
    changes = [TaskChange(task["id"], "updated", field="assignee_id", old=None, new=editor.id, task=task)]
    db = Database(server.settings.resolved_database_url())
    try:
        a, b = NotificationService(db), NotificationService(db)
        await a.record(wid, [(10_000, owner.id, changes)])
        await b.record(wid, [(10_000, owner.id, changes)])
        await a.record(wid, [(10_000, owner.id, changes)])
    finally:
        await db.dispose()
    assert [n["type"] for n in _task_notes(client, editor)] == ["task_assigned"]
    acts = client.get(f"/api/workspaces/{wid}/activity", headers=owner.headers).json()["items"]
    assert len([a for a in acts if a["task_id"] == task["id"]]) == 1


@pytest.mark.node
def test_activity_rows_match_what_happened(server: ThreadServer, client: httpx.Client, node: NodeClient) -> None:
    wid, owner, (editor, viewer) = workspace_with(client, "editor", "viewer")
    node.connect(f"{server.ws_url}/sync", wid, editor.token)
    node.wait_synced(10)
    tid = node.create_task("First", description="abc", created_by=editor.id)
    node.set_field(tid, "status", "in_progress")
    node.insert_text(tid, 3, "def")
    base = f"/api/workspaces/{wid}/tasks"
    # the client's edits and the REST calls travel on different connections: order them explicitly
    wait_until(lambda: client.get(f"{base}/{tid}", headers=owner.headers).json().get("description") == "abcdef", 5)
    client.patch(f"{base}/{tid}", json={"title": "Second", "assignee_id": editor.id}, headers=owner.headers)
    client.delete(f"{base}/{tid}", headers=owner.headers)
    url = f"/api/workspaces/{wid}/tasks/{tid}/activity"

    def rows() -> list[tuple[Any, ...]]:
        items = client.get(url, headers=viewer.headers).json()["items"]
        return [
            (a["kind"], a["field"], a["old_value"], a["new_value"], a["summary"], a["actor"]["id"])
            for a in reversed(items)
        ]

    expected = [
        ("created", None, None, "task", None, editor.id),
        ("updated", "status", "todo", "in_progress", None, editor.id),
        ("updated", "description", None, None, {"inserted": 3, "deleted": 0}, editor.id),
        ("updated", "title", "First", "Second", None, owner.id),
        ("updated", "assignee_id", None, editor.id, None, owner.id),
        ("deleted", None, "task", None, None, owner.id),
    ]

    def normalised() -> list[tuple[Any, ...]]:
        out = []
        for kind, field, old, new, summary, actor in rows():
            old = "task" if isinstance(old, dict) else old
            new = "task" if isinstance(new, dict) else new
            out.append((kind, field, old, new, summary, actor))
        # one REST PATCH is one transaction: its field order is not significant
        return out[:3] + sorted(out[3:5], key=lambda r: str(r[1]), reverse=True) + out[5:]

    try:
        wait_until(lambda: normalised() == expected, 5, message="activity rows")
    except AssertionError:
        assert normalised() == expected  # the readable diff
    created = client.get(url, headers=viewer.headers).json()["items"][-1]
    assert created["new_value"]["title"] == "First" and created["new_value"]["description"] == "abc"
    # the workspace feed has them too, paginated newest first
    feed = client.get(f"/api/workspaces/{wid}/activity", params={"limit": 4}, headers=viewer.headers).json()
    assert len(feed["items"]) == 4 and feed["next_cursor"]
    more = client.get(
        f"/api/workspaces/{wid}/activity", params={"cursor": feed["next_cursor"]}, headers=viewer.headers
    ).json()
    assert len(feed["items"]) + len(more["items"]) == 6 and more["next_cursor"] is None
    stranger = register(client, "stranger")
    assert client.get(url, headers=stranger.headers).status_code == 404


@pytest.mark.node
def test_typing_is_summarized_as_one_activity_row_per_run(
    server: ThreadServer, client: httpx.Client, node: NodeClient
) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    node.connect(f"{server.ws_url}/sync", wid, editor.token)
    node.wait_synced(10)
    tid = node.create_task("Typing", created_by=editor.id)
    for i, ch in enumerate("hello world, typed key by key"):
        node.insert_text(tid, i, ch)  # one Yjs transaction (one update) per keystroke
    node.delete_text(tid, 0, 6)
    url = f"/api/workspaces/{wid}/tasks/{tid}/activity"
    base = f"/api/workspaces/{wid}/tasks"
    wait_until(
        lambda: client.get(f"{base}/{tid}", headers=owner.headers).json()["description"] == "world, typed key by key", 5
    )

    def shape() -> list[tuple[Any, ...]]:
        items = client.get(url, headers=owner.headers).json()["items"]
        return [(a["kind"], a["field"], a["summary"]) for a in reversed(items)]

    want = [("created", None, None), ("updated", "description", {"inserted": 29, "deleted": 6})]
    wait_until(lambda: shape() == want, 5, message=f"one summarized row, got {shape()}")
    node.set_field(tid, "status", "in_progress")  # another field breaks the run
    node.insert_text(tid, 0, "abc")
    want += [("updated", "status", None), ("updated", "description", {"inserted": 3, "deleted": 0})]
    wait_until(lambda: shape() == want, 5, message="a new run after another change")
