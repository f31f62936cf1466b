"""Workspace export and import (REST and the ``plait`` command): a round trip of a workspace that live npm Yjs
clients built gives the same content; a Trello board comes in as tasks; bad or oversized input is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.node import NodeClient, start_clients, wait_until
from tests.support.server import ThreadServer
from tests.support.sql import query
from tests.support.users import Account, register, workspace_with

# What a copy keeps of each task (``updated_at`` too: an import writes the values it was given).
CONTENT = ("id", "title", "description", "status", "assignee_id", "due_date", "created_by", "created_at",
           "updated_at", "completed_at", "rank", "priority", "labels", "checklist", "comments")  # fmt: skip


def _content(client: httpx.Client, wid: str, acct: Account) -> dict[str, Any]:
    tasks = client.get(f"/api/workspaces/{wid}/tasks", headers=acct.headers).json()
    labels = client.get(f"/api/workspaces/{wid}/labels", headers=acct.headers).json()
    return {"tasks": [{k: t[k] for k in CONTENT} for t in tasks], "labels": labels}


@pytest.fixture
def pair(server: ThreadServer) -> Iterator[tuple[NodeClient, NodeClient]]:
    a, b = start_clients(2, prefix="xfer")
    with a, b:
        yield a, b


@pytest.mark.node
def test_export_import_round_trip_of_a_workspace_built_by_live_clients(
    server: ThreadServer, client: httpx.Client, pair: tuple[NodeClient, NodeClient]
) -> None:
    a, b = pair
    wid, owner, (editor,) = workspace_with(client, "editor")
    a.connect(f"{server.ws_url}/sync", wid, owner.token)
    b.connect(f"{server.ws_url}/sync", wid, editor.token)
    for n in (a, b):
        n.wait_synced(10)
    lid = a.call("createLabel", name="Bug", color="#ff0000")["id"]
    t1 = a.create_task("First", description="**bold** and @[Ed](user:" + editor.id + ")", assignee_id=owner.id,
                       created_by=owner.id, priority="high", due_date="2027-02-01")  # fmt: skip
    t2 = b.create_task("Second", created_by=editor.id, status="in_progress")
    wait_until(lambda: t1 in b.tasks() and lid in b.map("labels"), 10)
    b.call("setLabels", task_id=t1, ids=[lid])
    b.call("addComment", task_id=t1, body="from the editor", author_id=editor.id)
    # the second comment after the first arrived: concurrent inserts at one place have no fixed order
    wait_until(lambda: len(a.tasks()[t1]["comments"]) == 1, 10)
    a.call("addComment", task_id=t1, body="from the owner", author_id=owner.id)
    item = b.call("addChecklistItem", task_id=t2, text="check")["id"]
    b.call("setChecklistDone", task_id=t2, item_id=item, done=True)
    b.call("moveTask", task_id=t2, status="todo", before_id=t1)

    def settled() -> dict[str, Any] | None:
        c = _content(client, wid, owner)
        comments = next(t for t in c["tasks"] if t["id"] == t1)["comments"]
        second = next(t for t in c["tasks"] if t["id"] == t2)
        return c if len(comments) == 2 and second["checklist"] and second["status"] == "todo" else None

    original = wait_until(settled, 10, message="the clients' work reached the server")
    assert [c["author_id"] for c in next(t for t in original["tasks"] if t["id"] == t1)["comments"]] == [
        editor.id,
        owner.id,
    ]

    exported = client.get(f"/api/workspaces/{wid}/export", headers=owner.headers)
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/json"
    assert "attachment" in exported.headers["content-disposition"]
    data = exported.json()
    assert data["format"] == "plait.workspace" and data["workspace"]["id"] == wid
    assert {m["user_id"]: m["role"] for m in data["members"]} == {owner.id: "owner", editor.id: "editor"}
    binary = client.get(f"/api/workspaces/{wid}/export", params={"format": "yjs"}, headers=owner.headers)
    assert binary.headers["content-type"] == "application/octet-stream"

    # both imports give the owner a new workspace with the same content (the editor's comment stays theirs)
    from_json = client.post("/api/workspaces/import", content=exported.content, headers=owner.headers)
    assert from_json.status_code == 201, from_json.text
    assert from_json.json()["name"] == "ws" and from_json.json()["role"] == "owner"
    from_yjs = client.post(
        "/api/workspaces/import",
        params={"name": "From Yjs"},
        content=binary.content,
        headers={**owner.headers, "Content-Type": "application/octet-stream"},
    )
    assert from_yjs.status_code == 201, from_yjs.text
    for copy in (from_json.json()["id"], from_yjs.json()["id"]):
        assert copy != wid
        assert _content(client, copy, owner) == original
    # the editor is not a member of the copies: nothing of them shows to the editor
    assert client.get(f"/api/workspaces/{from_json.json()['id']}", headers=editor.headers).status_code == 404


TRELLO = {
    "name": "Roadmap",
    "lists": [
        {"id": "l1", "name": "To Do", "closed": False},
        {"id": "l2", "name": "Doing", "closed": False},
        {"id": "l3", "name": "Done", "closed": False},
        {"id": "l4", "name": "Old", "closed": True},
    ],
    "labels": [{"id": "g", "name": "", "color": "green"}, {"id": "r", "name": "Urgent", "color": "red"}],
    "cards": [
        {"id": "c2", "name": "Second", "desc": "", "idList": "l1", "pos": 2, "closed": False, "idLabels": []},
        {"id": "c1", "name": "First", "desc": "Body", "idList": "l1", "pos": 1, "closed": False,
         "idLabels": ["r", "g"], "due": "2027-01-15T12:00:00.000Z"},
        {"id": "c3", "name": "Working", "idList": "l2", "pos": 1, "closed": False},
        {"id": "c4", "name": "Shipped", "idList": "l3", "pos": 1, "closed": False},
        {"id": "c5", "name": "Archived", "idList": "l1", "pos": 3, "closed": True},
        {"id": "c6", "name": "In a closed list", "idList": "l4", "pos": 1, "closed": False},
    ],
    "checklists": [{"id": "k", "idCard": "c1", "checkItems": [
        {"id": "i2", "name": "two", "state": "incomplete", "pos": 2},
        {"id": "i1", "name": "one", "state": "complete", "pos": 1}]}],
    "actions": [
        {"id": "a2", "type": "commentCard", "date": "2026-05-02T00:00:00.000Z",
         "data": {"text": "newer", "card": {"id": "c1"}}, "memberCreator": {"fullName": "Bo"}},
        {"id": "a1", "type": "commentCard", "date": "2026-05-01T00:00:00.000Z",
         "data": {"text": "older", "card": {"id": "c1"}}, "memberCreator": {"fullName": "Al"}},
        {"id": "a0", "type": "updateCard", "data": {}},
    ],
}  # fmt: skip


@pytest.mark.db_agnostic
def test_a_trello_board_is_imported_as_tasks(client: httpx.Client) -> None:
    owner = register(client, "trello")
    r = client.post("/api/workspaces/import", json=TRELLO, headers=owner.headers)
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    assert r.json()["name"] == "Roadmap"
    tasks = client.get(f"/api/workspaces/{wid}/tasks", params={"sort": "rank"}, headers=owner.headers).json()
    assert [(t["title"], t["status"]) for t in tasks] == [
        ("First", "todo"),
        ("Second", "todo"),
        ("Working", "in_progress"),
        ("Shipped", "done"),
    ]
    first = tasks[0]
    assert first["description"] == "Body" and first["due_date"] == "2027-01-15" and first["labels"] == ["r", "g"]
    assert [(i["text"], i["done"]) for i in first["checklist"]] == [("one", True), ("two", False)]
    assert [c["body"].split("\n")[0] for c in first["comments"]] == ["older", "newer"]
    assert "Al" in first["comments"][0]["body"] and first["comments"][0]["author_id"] is None
    assert tasks[3]["completed_at"] is not None  # the guard completes what lands in "done"
    labels = client.get(f"/api/workspaces/{wid}/labels", headers=owner.headers).json()
    assert {(x["name"], x["color"]) for x in labels} == {("green", "#61bd4f"), ("Urgent", "#eb5a46")}


@pytest.mark.db_agnostic
def test_bad_imports_are_refused_and_create_nothing(client: httpx.Client) -> None:
    owner = register(client, "importer")
    before = client.get("/api/workspaces", headers=owner.headers).json()
    for body, kind in (
        (b"not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"hello": "world"}', "application/json"),
        (b"\xff\x00garbage", "application/octet-stream"),
    ):
        r = client.post("/api/workspaces/import", content=body, headers={**owner.headers, "Content-Type": kind})
        assert r.status_code == 422 and isinstance(r.json()["detail"], str), (body, r.text)
    assert client.post("/api/workspaces/import", json={"format": "plait.workspace"}).status_code == 401
    assert client.get("/api/workspaces", headers=owner.headers).json() == before


def test_size_limits_of_imports(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", import_max_bytes=2000, quota_max_tasks=3)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "big")
        big = {"format": "plait.workspace", "tasks": [], "pad": "x" * 3000}
        r = client.post("/api/workspaces/import", json=big, headers=owner.headers)
        assert r.status_code == 413 and "at most 2000 bytes" in r.json()["detail"]
        many = {"format": "plait.workspace", "tasks": [{"id": f"t{i}", "title": "t"} for i in range(4)]}
        r = client.post("/api/workspaces/import", json=many, headers=owner.headers)
        assert r.status_code == 413 and "at most 3 tasks" in r.json()["detail"]
        assert client.get("/api/workspaces", headers=owner.headers).json() == []


def test_plait_export_and_import_commands(make_server: Callable[..., ThreadServer], tmp_path: Path) -> None:
    srv = make_server("sqlite")
    url = srv.settings.resolved_database_url()
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        wid, owner, _ = workspace_with(client)
        for title in ("one", "two"):
            client.post(f"/api/workspaces/{wid}/tasks", json={"title": title}, headers=owner.headers)
        original = _content(client, wid, owner)
    srv.stop()
    env = {**os.environ, "PLAIT_DATABASE_URL": url, "PLAIT_DATA_DIR": str(srv.settings.data_dir)}

    def plait(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api", *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    out = tmp_path / "ws.json"
    done = plait("export", wid, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["workspace"]["id"] == wid
    done = plait("import", str(out), "--owner", owner.email, "--name", "Copy")
    assert done.returncode == 0, done.stderr
    assert plait("import", str(out), "--owner", "nobody@example.com").returncode == 1
    assert plait("export", "00000000-0000-0000-0000-000000000000").returncode == 1
    again = make_server("sqlite", database_url=url)
    with httpx.Client(base_url=again.base_url, timeout=30) as client:
        spaces = client.get("/api/workspaces", headers=owner.headers).json()
        copy = next(w["id"] for w in spaces if w["name"] == "Copy")
        assert _content(client, copy, owner) == original
    actions = query(url, "SELECT action, workspace_id, actor_id FROM audit_log ORDER BY id")
    assert ("workspace.exported", wid, None) in actions and ("workspace.imported", copy, None) in actions


WORKSPACE_TABLES = (
    "memberships", "invites", "notifications", "documents", "activity", "doc_versions", "webhooks",
    "task_index", "task_index_state",
)  # fmt: skip


def test_deleting_a_workspace_purges_everything_under_it(make_server: Callable[..., ThreadServer]) -> None:
    """Document, log, snapshots, versions, notifications, activity, search index, webhooks and invites."""
    srv = make_server("sqlite", webhook_allow_private=True)
    url = srv.settings.resolved_database_url()
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        wid, owner, (editor,) = workspace_with(client, "editor")
        base = f"/api/workspaces/{wid}"
        tid = client.post(f"{base}/tasks", json={"title": "gone", "assignee_id": editor.id}, headers=owner.headers)
        client.post(f"{base}/tasks/{tid.json()['id']}/comments", json={"body": "x"}, headers=owner.headers)
        client.post(f"{base}/versions", json={"label": "v"}, headers=owner.headers)
        client.post(f"{base}/invites", json={"role": "viewer"}, headers=owner.headers)
        client.post(f"{base}/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["task.created"]},
                    headers=owner.headers)  # fmt: skip
        wait_until(lambda: query(url, "SELECT count(*) FROM task_index WHERE workspace_id = :w", w=wid)[0][0], 10)
        wait_until(lambda: query(url, "SELECT count(*) FROM activity WHERE workspace_id = :w", w=wid)[0][0], 10)
        counts = {
            t: query(url, f"SELECT count(*) FROM {t} WHERE workspace_id = :w", w=wid)[0][0] for t in WORKSPACE_TABLES
        }
        assert all(counts.values()), counts
        assert query(url, "SELECT count(*) FROM doc_updates WHERE workspace_id = :w", w=wid)[0][0]
        assert client.delete(base, headers=owner.headers).status_code == 204
    for table in (*WORKSPACE_TABLES, "doc_updates", "doc_snapshots", "workspaces"):
        column = "id" if table == "workspaces" else "workspace_id"
        assert query(url, f"SELECT count(*) FROM {table} WHERE {column} = :w", w=wid) == [(0,)], table
    assert query(url, "SELECT count(*) FROM task_index_fts WHERE task_index_fts MATCH 'gone'") == [(0,)]
