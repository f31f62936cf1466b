"""REST tasks over the live Yjs document, driven by real Yjs clients (Node yjs + y-websocket) and HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.node import NodeClient, start_clients, wait_until
from tests.support.server import ThreadServer
from tests.support.users import Account, register, workspace_with


def _url(wid: str) -> str:
    return f"/api/workspaces/{wid}/tasks"


@pytest.fixture
def node(server: ThreadServer) -> Iterator[NodeClient]:
    (c,) = start_clients(1, prefix="tasks")
    with c:
        yield c


def _connect(c: NodeClient, server: ThreadServer, wid: str, acct: Account) -> None:
    c.connect(f"{server.ws_url}/sync", wid, acct.token)
    c.wait_synced(10)


# ---- REST only -------------------------------------------------------------------------------------------


def test_crud_filters_and_validation(client: httpx.Client) -> None:
    wid, owner, (editor, viewer) = workspace_with(client, "editor", "viewer")
    stranger = register(client, "stranger")
    h = owner.headers
    r = client.post(_url(wid), json={"title": "  Write spec  "}, headers=h)
    assert r.status_code == 201, r.text
    t1 = r.json()
    assert t1["title"] == "Write spec" and t1["description"] == "" and t1["status"] == "todo"
    assert t1["assignee_id"] is None and t1["due_date"] is None and t1["completed_at"] is None
    assert t1["created_by"] == owner.id and t1["created_at"] == t1["updated_at"]
    r = client.post(
        _url(wid),
        json={
            "title": "Ship",
            "description": "d",
            "status": "in_progress",
            "assignee_id": editor.id,
            "due_date": "2030-01-05",
        },
        headers=editor.headers,
    )
    assert r.status_code == 201, r.text
    t2 = r.json()
    assert t2["created_by"] == editor.id and t2["status"] == "in_progress"

    # list (plain array) and filters
    r = client.get(_url(wid), headers=viewer.headers)
    assert r.status_code == 200 and [t["id"] for t in r.json()] == [t1["id"], t2["id"]]
    assert [t["id"] for t in client.get(_url(wid), params={"assignee_id": editor.id}, headers=h).json()] == [t2["id"]]
    assert [t["id"] for t in client.get(_url(wid), params={"status": "todo"}, headers=h).json()] == [t1["id"]]
    assert [t["id"] for t in client.get(_url(wid), params={"due_before": "2030-01-06"}, headers=h).json()] == [t2["id"]]
    assert client.get(_url(wid), params={"due_before": "2030-01-05"}, headers=h).json() == []
    for bad in ({"status": "bogus"}, {"due_before": "2030-1-5"}, {"due_before": "tomorrow"}):
        assert client.get(_url(wid), params=bad, headers=h).status_code == 422, bad

    # get one / unknown
    assert client.get(f"{_url(wid)}/{t2['id']}", headers=viewer.headers).json() == t2
    assert client.get(f"{_url(wid)}/no-such-task", headers=h).status_code == 404

    # patch: only given fields; done sets completed_at, leaving done clears it
    r = client.patch(f"{_url(wid)}/{t1['id']}", json={"status": "done"}, headers=h)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "done" and done["completed_at"] and done["title"] == "Write spec"
    assert done["updated_at"] >= t1["updated_at"]
    r = client.patch(f"{_url(wid)}/{t1['id']}", json={"status": "todo", "assignee_id": editor.id}, headers=h)
    assert r.json()["completed_at"] is None and r.json()["assignee_id"] == editor.id
    r = client.patch(f"{_url(wid)}/{t1['id']}", json={"assignee_id": None, "due_date": None}, headers=h)
    assert r.json()["assignee_id"] is None

    # validation: 422
    bad_bodies: list[dict[str, Any]] = [
        {"title": ""},
        {"title": None},
        {"status": "bogus"},
        {"status": None},
        {"due_date": "2030-02-30"},
        {"due_date": "05/01/2030"},
        {"assignee_id": stranger.id},
        {"assignee_id": "not-a-user"},
        {"unknown_field": 1},
    ]
    for body in bad_bodies:
        r = client.patch(f"{_url(wid)}/{t1['id']}", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
    assert client.post(_url(wid), json={"title": "x", "assignee_id": stranger.id}, headers=h).status_code == 422
    assert client.post(_url(wid), json={}, headers=h).status_code == 422

    # viewers may read but not write; strangers see nothing
    assert client.post(_url(wid), json={"title": "v"}, headers=viewer.headers).status_code == 403
    assert client.patch(f"{_url(wid)}/{t1['id']}", json={"title": "v"}, headers=viewer.headers).status_code == 403
    assert client.delete(f"{_url(wid)}/{t1['id']}", headers=viewer.headers).status_code == 403
    assert client.get(_url(wid), headers=stranger.headers).status_code == 404

    # delete
    assert client.delete(f"{_url(wid)}/{t1['id']}", headers=editor.headers).status_code == 204
    assert client.delete(f"{_url(wid)}/{t1['id']}", headers=editor.headers).status_code == 404
    assert client.patch(f"{_url(wid)}/{t1['id']}", json={"title": "gone"}, headers=h).status_code == 404
    assert [t["id"] for t in client.get(_url(wid), headers=h).json()] == [t2["id"]]


def test_description_patch_is_a_minimal_diff(client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    tid = client.post(_url(wid), json={"title": "t", "description": "hello world"}, headers=owner.headers).json()["id"]
    client.patch(f"{_url(wid)}/{tid}", json={"description": "hello brave world"}, headers=owner.headers)
    url = f"/api/workspaces/{wid}/tasks/{tid}/activity"

    def desc() -> list[dict[str, Any]]:
        items = client.get(url, headers=owner.headers).json()["items"]
        return [a for a in items if a["field"] == "description"]

    rows = wait_until(desc, 5, message="description activity")  # derived asynchronously after the commit
    assert len(rows) == 1 and rows[0]["summary"] == {"inserted": 6, "deleted": 0}, rows


def test_reading_an_unloaded_workspace_does_not_load_a_room(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", room_idle_seconds=0.3)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        wid, owner, _ = workspace_with(client)
        client.post(_url(wid), json={"title": "stored"}, headers=owner.headers)
        rooms = srv.ctx.sync.rooms
        wait_until(lambda: wid not in rooms, 10, message="idle room unloaded")
        r = client.get(_url(wid), headers=owner.headers)
        assert [t["title"] for t in r.json()] == ["stored"]
        assert client.get(f"{_url(wid)}/{r.json()[0]['id']}", headers=owner.headers).status_code == 200
        assert wid not in rooms, "a REST read must not load the room"


# ---- with real Yjs clients ----------------------------------------------------------------------------------


@pytest.mark.node
def test_client_task_appears_via_get_and_post_appears_in_client(
    server: ThreadServer, client: httpx.Client, node: NodeClient
) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    _connect(node, server, wid, editor)
    tid = node.create_task("From the client", description="typed offline-capable", created_by=editor.id)
    # visible through GET at once (the client's update is durable before anyone else sees it)
    task = wait_until(lambda: client.get(f"{_url(wid)}/{tid}", headers=owner.headers).json().get("title"), 5)
    assert task == "From the client"
    listed = client.get(_url(wid), headers=owner.headers).json()
    assert [t["description"] for t in listed if t["id"] == tid] == ["typed offline-capable"]

    started = time.perf_counter()
    r = client.post(_url(wid), json={"title": "From REST", "description": "abc"}, headers=owner.headers)
    rest_id = r.json()["id"]
    wait_until(lambda: node.tasks().get(rest_id), 5, interval=0.005)
    latency_ms = (time.perf_counter() - started) * 1000
    seen = node.tasks()[rest_id]
    assert seen["title"] == "From REST" and seen["description"] == "abc" and seen["created_by"] == owner.id
    assert latency_ms < 1000, latency_ms
    print(f"REST POST -> Node client: {latency_ms:.1f} ms (including the HTTP round trip)")

    client.patch(f"{_url(wid)}/{rest_id}", json={"status": "done"}, headers=owner.headers)
    wait_until(lambda: node.tasks()[rest_id]["status"] == "done" and node.tasks()[rest_id]["completed_at"], 5)
    client.delete(f"{_url(wid)}/{rest_id}", headers=owner.headers)
    wait_until(lambda: rest_id not in node.tasks(), 5)


@pytest.mark.node
def test_concurrent_rest_patch_and_live_edits_converge(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a, b = start_clients(2, prefix="conc")
    with a, b:
        _connect(a, server, wid, editor)
        _connect(b, server, wid, owner)
        tid = a.create_task("Doc", description="hello world", created_by=editor.id)
        wait_until(lambda: b.tasks().get(tid), 5)

        # 1) an offline client's typing and a REST rewrite made meanwhile both survive
        a.disconnect()
        a.insert_text(tid, len("hello world"), " typed-offline")
        r = client.patch(
            f"{_url(wid)}/{tid}", json={"description": "HELLO world", "title": "Doc!"}, headers=owner.headers
        )
        assert r.status_code == 200
        a.reconnect()
        a.wait_synced(10)
        want = "HELLO world typed-offline"
        wait_until(lambda: a.tasks()[tid]["description"] == want and b.tasks()[tid]["description"] == want, 5)
        assert client.get(f"{_url(wid)}/{tid}", headers=owner.headers).json()["description"] == want

        # 2) live: a client keeps typing while REST patches fields and the description at the same time
        stop = threading.Event()
        errors: list[BaseException] = []

        def rest() -> None:
            try:
                for i in range(10):
                    cur = client.get(f"{_url(wid)}/{tid}", headers=owner.headers).json()["description"]
                    client.patch(
                        f"{_url(wid)}/{tid}",
                        json={"description": f"R{i}" + cur, "title": f"title {i}"},
                        headers=owner.headers,
                    )
            except BaseException as exc:
                errors.append(exc)
            finally:
                stop.set()

        t = threading.Thread(target=rest)
        t.start()
        typed = 0
        while not stop.is_set() and typed < 40:
            a.insert_text(tid, 0, "a")
            b.insert_text(tid, 0, "b")
            typed += 1
        t.join(30)
        assert not errors, errors

        def converged() -> bool:
            da, db = a.tasks()[tid], b.tasks()[tid]
            rest_view = client.get(f"{_url(wid)}/{tid}", headers=owner.headers).json()
            return da == db and da["description"] == rest_view["description"] and da["title"] == rest_view["title"]

        wait_until(converged, 10, message="clients and REST converge")
        final = client.get(f"{_url(wid)}/{tid}", headers=owner.headers).json()
        assert final["title"] == "title 9"
        assert "R9" in final["description"] and "typed-offline" in final["description"]


@pytest.mark.node
def test_invalid_status_from_a_client_is_repaired_for_everyone(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a, b = start_clients(2, prefix="guard")
    with a, b:
        _connect(a, server, wid, editor)
        _connect(b, server, wid, owner)
        tid = a.create_task("Guarded", created_by=editor.id)
        wait_until(lambda: b.tasks().get(tid), 5)
        a.set_field(tid, "status", "bogus")
        a.set_field(tid, "assignee_id", "00000000-0000-4000-8000-000000000000")  # not a member
        wait_until(lambda: a.tasks()[tid]["status"] == "todo" and a.tasks()[tid]["assignee_id"] is None, 5)
        wait_until(lambda: b.tasks()[tid]["status"] == "todo" and b.tasks()[tid]["assignee_id"] is None, 5)
        got = client.get(f"{_url(wid)}/{tid}", headers=owner.headers).json()
        assert got["status"] == "todo" and got["assignee_id"] is None
