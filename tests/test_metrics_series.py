"""The /metrics series docs/operations.md documents, shown to move with the behaviour they count.

A ``plait serve`` process of its own has its own Prometheus registry, so the deltas here are exact (in-process
servers share the test process's registry). Each test reads the series before, does one thing, and waits for a
condition that proves the server handled it (a peer seeing an awareness state sent after the frame on the same
socket) before reading the series again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from pycrdt import Doc, Map, create_awareness_message, create_update_message

from sync_server.protocol import AwarenessEntry, encode_awareness
from tests.support.metrics import Samples, async_wait_moved, delta, scrape, value
from tests.support.pyclient import YClient, async_wait_until, sync_url
from tests.support.server import SECRET, ProcessServer
from tests.support.users import workspace_with

MAX_AWARENESS_BYTES = 2048


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    tmp = tmp_path_factory.mktemp("metrics-node")
    env = {
        "PLAIT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'plait.db'}",
        "PLAIT_DATA_DIR": str(tmp),
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_MIGRATE_ON_START": "true",
        "PLAIT_ENV": "test",
        "PLAIT_ROOM_IDLE_SECONDS": "0.5",
        "PLAIT_COMPACTION_MAX_UPDATES": "5",
        "PLAIT_MAX_AWARENESS_BYTES": str(MAX_AWARENESS_BYTES),
        "PLAIT_MAX_MESSAGE_BYTES": "65536",
        "PLAIT_MAX_AWARENESS_PER_SECOND": "1",  # the burst (30) passes, then almost nothing
    }
    srv = ProcessServer(env, log_path=tmp / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def http(node: ProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.base_url, timeout=30) as c:
        yield c


@pytest.fixture(autouse=True)
async def quiet(http: httpx.Client) -> None:
    """Start from a quiet server: every socket of an earlier test has left (the gauge is decremented in the same
    step that broadcasts the leave), so nothing of it moves this test's deltas."""

    def idle() -> bool:
        s = scrape(http)
        return not any(v for (name, _), v in s.items() if name == "plait_connections")

    await async_wait_until(idle)


async def _join(node: ProcessServer, wid: str, token: str, **kw: object) -> YClient:
    c = YClient(**kw)  # type: ignore[arg-type]
    await c.connect(sync_url(node.ws_url, wid, token))
    await c.wait_synced()
    return c


async def _handled(sender: YClient, peer: YClient, n: int) -> None:
    """Barrier: everything ``sender`` sent before is handled once ``peer`` sees this awareness state of it."""
    sender.awareness.set_local_state({"probe": n})
    await peer.wait_for(lambda: (peer.awareness.states.get(sender.awareness.client_id) or {}).get("probe") == n)


def _new_id() -> int:
    return int.from_bytes(os.urandom(4), "big") | 1


def _awareness(client_id: int, clock: int, state: dict[str, object]) -> bytes:
    return create_awareness_message(encode_awareness([AwarenessEntry(client_id, clock, state)]))


async def _gauge_becomes(http: httpx.Client, name: str, expected: float, **labels: str) -> Samples:
    def poll() -> Samples | None:
        now = scrape(http)
        return now if value(now, name, **labels) == expected else None

    return await async_wait_until(poll)


@pytest.mark.slow
async def test_sockets_and_rooms_gauges_follow_joins_and_unloads(node: ProcessServer, http: httpx.Client) -> None:
    wid, owner, (viewer,) = workspace_with(http, "viewer")
    before = await _gauge_becomes(http, "plait_rooms_loaded", 0)  # earlier tests' rooms unloaded (idle 0.5 s)
    a = await _join(node, wid, owner.token)
    v = await _join(node, wid, viewer.token)
    after = scrape(http)
    assert delta(before, after, "plait_connections", role="owner") == 1
    assert delta(before, after, "plait_connections", role="viewer") == 1
    assert value(after, "plait_rooms_loaded") == 1
    await a.close()
    await v.close()
    after = await _gauge_becomes(http, "plait_rooms_loaded", 0)  # idle, unloaded
    assert delta(before, after, "plait_connections", role="owner") == 0
    assert delta(before, after, "plait_connections", role="viewer") == 0


async def test_dropped_updates_are_counted_by_reason(node: ProcessServer, http: httpx.Client) -> None:
    wid, owner, (viewer,) = workspace_with(http, "viewer")
    a = await _join(node, wid, owner.token)
    v = await _join(node, wid, viewer.token)
    before = scrape(http)
    v.map("m")["k"] = "from a viewer"
    await _handled(v, a, 1)
    assert "k" not in a.map("m")
    mid = scrape(http)
    assert delta(before, mid, "plait_updates_dropped_total", reason="viewer") == 1
    assert delta(before, mid, "plait_updates_in_total") == 0

    doc: Doc = Doc()
    doc.get("m", type=Map)["d"] = 1
    update = create_update_message(doc.get_update())
    await a.send_raw(update)
    await a.send_raw(update)  # the same again: nothing new
    await _handled(a, v, 2)
    await v.wait_for(lambda: v.map("m").get("d") == 1)
    after = await async_wait_moved(http, mid, "plait_updates_in_total")
    assert delta(mid, after, "plait_updates_dropped_total", reason="duplicate") == 1
    assert delta(mid, after, "plait_updates_in_total") == 1
    await a.close()
    await v.close()


async def test_awareness_caps_and_identity_rewrites_are_counted(node: ProcessServer, http: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(http, "editor")
    a = await _join(node, wid, owner.token)
    b = await _join(node, wid, editor.token)
    await _handled(a, b, 1)
    before = scrape(http)

    # too large: dropped whole
    await b.send_raw(_awareness(_new_id(), 1, {"pad": "x" * MAX_AWARENESS_BYTES}))
    # another socket's client id: dropped
    await b.send_raw(_awareness(a.awareness.client_id, 100, {"user": {"id": editor.id, "name": "me"}}))
    # claiming someone else's identity: kept, with the server's identity for this socket
    spoof = _new_id()
    await b.send_raw(_awareness(spoof, 1, {"user": {"id": owner.id, "name": "owner"}}))
    await _handled(b, a, 2)
    mid = scrape(http)
    assert delta(before, mid, "plait_awareness_dropped_total", reason="size") == 1
    assert delta(before, mid, "plait_awareness_dropped_total", reason="foreign_client_id") == 1
    assert delta(before, mid, "plait_awareness_identity_rewrites_total") == 1
    assert delta(before, mid, "plait_awareness_dropped_total", reason="rate") == 0
    assert (a.awareness.states.get(spoof) or {}).get("user", {}).get("id") == editor.id
    assert (a.awareness.states.get(a.awareness.client_id) or {}).get("probe") == 1
    # two accepted states (the rewritten one and the probe), each to both sockets
    assert delta(before, mid, "plait_messages_out_total") == 4

    # the rate cap (PLAIT_MAX_AWARENESS_PER_SECOND=1): what is left of the burst of 30 passes, the rest not
    for i in range(200):
        await b.send_raw(_awareness(spoof, 2 + i, {"n": i}))
    after = await async_wait_moved(http, mid, "plait_awareness_dropped_total", reason="rate", at_least=150)
    assert delta(mid, after, "plait_awareness_dropped_total", reason="rate") < 200 - 20
    await a.close()
    await b.close()


async def test_server_closes_are_counted_by_code(node: ProcessServer, http: httpx.Client) -> None:
    wid, owner, (editor, other) = workspace_with(http, "editor", "editor")
    a = await _join(node, wid, owner.token)
    e = await _join(node, wid, editor.token)
    o = await _join(node, wid, other.token)
    before = scrape(http)
    r = http.delete(f"/api/workspaces/{wid}/members/{editor.id}", headers=owner.headers)
    assert r.status_code == 204
    assert await e.wait_closed() == 4403
    await o.send_raw(b"\x00\x02" + b"\xff" * 70_000)  # larger than PLAIT_MAX_MESSAGE_BYTES
    assert await o.wait_closed() == 1009
    await o.close()
    after = await async_wait_moved(http, before, "plait_socket_closes_total", code="1009")
    assert delta(before, after, "plait_socket_closes_total", code="4403") == 1
    assert delta(before, after, "plait_socket_closes_total", code="1009") == 1
    assert delta(before, after, "plait_connections", role="editor") == -2
    assert a.connected
    await a.close()
    await e.close()


async def test_compactions_are_counted(node: ProcessServer, http: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(http, "editor")
    a = await _join(node, wid, owner.token)
    b = await _join(node, wid, editor.token)
    before = scrape(http)
    for i in range(12):  # PLAIT_COMPACTION_MAX_UPDATES=5: the tail is folded at least twice
        a.map("m")[str(i)] = "x" * 64
        await b.wait_for(lambda i=i: str(i) in b.map("m"))
    after = await async_wait_moved(http, before, "plait_compactions_total", at_least=2)
    assert delta(before, after, "plait_updates_in_total") == 12
    await a.close()
    await b.close()
