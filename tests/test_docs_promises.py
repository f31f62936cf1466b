"""Behaviours the docs promise that had no test: the idle keepalive (docs/protocol.md), deleting a workspace
closing its live sockets with 4403 (docs/protocol.md), at most 20 webhooks per workspace (docs/quotas.md) and a
restore refused with 413 when the version has more tasks than the quota allows (docs/versions.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from pycrdt import create_awareness_message
from websockets.asyncio.client import connect

from tests.support.metrics import async_wait_moved, delta, scrape
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.users import register, workspace_with

KEEPALIVE = create_awareness_message(b"\x00")  # an awareness update with no entries


async def test_a_quiet_socket_gets_an_empty_awareness_update(make_server: Callable[..., ThreadServer]) -> None:
    """y-websocket closes a socket it heard nothing from for 30 s; the server sends an empty awareness update
    to a socket it sent nothing for PLAIT_SYNC_KEEPALIVE_SECONDS (10 s; 0.3 here), and to it only."""
    srv = make_server("sqlite", sync_keepalive_seconds=0.3)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
    async with connect(sync_url(srv.ws_url, wid, owner.token), proxy=None, ping_interval=None) as ws:
        frames: list[bytes] = []
        async with asyncio.timeout(10):  # the join's frames, then quiet: keepalives only
            while (frame := await ws.recv()) != KEEPALIVE:
                assert isinstance(frame, bytes)
                frames.append(frame)
            assert await ws.recv() == KEEPALIVE, "and again while it stays quiet"
    assert frames, "the join's sync step 1 came first"


async def test_deleting_a_workspace_closes_its_live_sockets_4403(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor, viewer) = workspace_with(client, "editor", "viewer")
    clients = [YClient() for _ in range(3)]
    for c, acct in zip(clients, (owner, editor, viewer), strict=True):
        await c.connect(sync_url(server.ws_url, wid, acct.token))
        await c.wait_synced()
    before = scrape(client)
    assert client.delete(f"/api/workspaces/{wid}", headers=owner.headers).status_code == 204
    for c in clients:
        assert await c.wait_closed() == 4403
        assert c.close_reason == "access withdrawn"
    # >=: the registry is the process's, shared with other in-process servers
    after = await async_wait_moved(client, before, "plait_socket_closes_total", code="4403", at_least=3)
    assert delta(before, after, "plait_socket_closes_total", code="4403") >= 3
    again = YClient()
    await again.connect(sync_url(server.ws_url, wid, owner.token))
    assert await again.wait_closed() == 4404


def test_a_workspace_has_at_most_20_webhooks(client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    url = f"/api/workspaces/{wid}/webhooks"
    for i in range(20):
        # a public address (no request is made at creation, and nothing here triggers an event)
        r = client.post(
            url, json={"url": f"https://93.184.216.34/hook/{i}", "events": ["task.created"]}, headers=owner.headers
        )
        assert r.status_code == 201, r.text
    r = client.post(
        url, json={"url": "https://93.184.216.34/hook/20", "events": ["task.created"]}, headers=owner.headers
    )
    assert r.status_code == 409 and "20" in r.json()["detail"]
    hooks = client.get(url, headers=owner.headers).json()
    assert len(hooks) == 20, "the refused one was not created"
    assert client.delete(f"{url}/{hooks[0]['id']}", headers=owner.headers).status_code == 204
    r = client.post(
        url, json={"url": "https://93.184.216.34/hook/21", "events": ["task.created"]}, headers=owner.headers
    )
    assert r.status_code == 201, "room again after a delete"


def test_restoring_a_version_with_more_tasks_than_the_quota_is_refused_413(
    make_server: Callable[..., ThreadServer],
) -> None:
    """The quota was lowered after the version was taken (a restart with a new PLAIT_QUOTA_MAX_TASKS): restoring
    it would bring back more tasks than allowed, so it is refused and nothing changes."""
    first = make_server("sqlite")
    url = first.settings.database_url
    with httpx.Client(base_url=first.base_url, timeout=30) as http:
        owner = register(http, "owner")
        r = http.post("/api/workspaces", json={"name": "ws"}, headers=owner.headers)
        wid = r.json()["id"]
        tasks = f"/api/workspaces/{wid}/tasks"
        ids = [http.post(tasks, json={"title": f"t{i}"}, headers=owner.headers).json()["id"] for i in range(3)]
        r = http.post(f"/api/workspaces/{wid}/versions", json={"label": "three"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        vid = r.json()["id"]
        for tid in ids[1:]:
            assert http.delete(f"{tasks}/{tid}", headers=owner.headers).status_code == 204
    first.stop()
    second = make_server(database_url=url, quota_max_tasks=2)
    with httpx.Client(base_url=second.base_url, timeout=30) as http:
        login = http.post("/api/auth/login", json={"email": owner.email, "password": owner.password})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        versions_before = http.get(f"/api/workspaces/{wid}/versions", headers=headers).json()["items"]
        r = http.post(f"/api/workspaces/{wid}/versions/{vid}/restore", headers=headers)
        assert r.status_code == 413, r.text
        assert r.headers.get("X-Plait-Quota") == "tasks"
        titles = [t["title"] for t in _items(http.get(tasks, headers=headers).json())]
        assert titles == ["t0"], "nothing was restored"
        versions_after = http.get(f"/api/workspaces/{wid}/versions", headers=headers).json()["items"]
        assert [v["id"] for v in versions_after] == [v["id"] for v in versions_before], "no undo version was made"


def _items(body: object) -> list[dict[str, object]]:
    return list(body["items"] if isinstance(body, dict) else body)  # type: ignore[arg-type]


async def test_offline_changes_notify_and_log_activity_exactly_once(server: ThreadServer, client: httpx.Client) -> None:
    """An assignment made offline reaches the server on reconnect and is derived once; the same history sent
    again (another reconnect, a second tab with a copy of the document) derives nothing more."""
    wid, owner, (editor,) = workspace_with(client, "editor")
    tasks = f"/api/workspaces/{wid}/tasks"
    tid = client.post(tasks, json={"title": "offline"}, headers=owner.headers).json()["id"]
    a = YClient()
    url = sync_url(server.ws_url, wid, owner.token)
    await a.connect(url)
    await a.wait_synced()
    await a.wait_for(lambda: tid in a.tasks())
    await a.abort()
    a.tasks_map()[tid]["assignee_id"] = editor.id  # offline: sent by the sync exchange on reconnect
    await a.connect(url)
    await a.wait_synced()

    def assigned() -> list[dict[str, object]]:
        items = client.get("/api/notifications", headers=editor.headers).json()["items"]
        return [n for n in items if n["type"] == "task_assigned" and n["task_id"] == tid]

    await asyncio.to_thread(lambda: _wait(assigned))
    # the same history again: a reconnect, and a second tab holding a copy of the document
    await a.abort()
    await a.connect(url)
    await a.wait_synced()
    copy = YClient()
    copy.doc.apply_update(a.doc.get_update())
    await copy.connect(url)
    await copy.wait_synced()
    await copy.handled()
    # a later change as the barrier: derivation is in order, so once its activity is stored, so is any duplicate
    assert client.patch(f"{tasks}/{tid}", json={"title": "marker"}, headers=owner.headers).status_code == 200

    def activity() -> list[dict[str, object]]:
        r = client.get(f"/api/workspaces/{wid}/activity", headers=owner.headers)
        return list(r.json()["items"])

    await asyncio.to_thread(lambda: _wait(lambda: any(i["field"] == "title" for i in activity())))
    assert len(assigned()) == 1, "notified once"
    assert len([i for i in activity() if i["field"] == "assignee_id"]) == 1, "logged once"
    await a.close()
    await copy.close()


def _wait(fn: Callable[[], object], timeout: float = 10.0) -> object:
    from tests.support.node import wait_until

    return wait_until(fn, timeout)
