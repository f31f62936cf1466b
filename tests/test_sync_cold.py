"""Rooms loaded from the database ("cold"): the log is folded into one snapshot when a room unloads and at
shutdown, a fresh client is answered with that stored chunk before the server builds its Doc, and clients
that do have something (offline edits, writers) still merge — real servers, real pycrdt clients."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from pycrdt import Doc, Map, Text

from persistence.doclog import StoredDocument
from sync_server.room import Room
from tests.support.databases import stored_at
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.users import Account, workspace_with


async def _client(server: ThreadServer, wid: str, acct: Account, doc: Doc[Any] | None = None) -> YClient:
    c = YClient(doc)
    await c.connect(sync_url(server.ws_url, wid, acct.token))
    await c.wait_synced()
    return c


def _rooms(server: ThreadServer) -> dict[str, Room]:
    rooms: dict[str, Room] = server.ctx.sync.rooms
    return rooms


async def _unloaded(server: ThreadServer, wid: str) -> None:
    deadline = time.monotonic() + 10
    while wid in _rooms(server):
        assert time.monotonic() < deadline, "the idle room was never unloaded"
        await asyncio.sleep(0.05)


async def _stored(server: ThreadServer, wid: str) -> StoredDocument:
    return await stored_at(server.settings.resolved_database_url(), wid)


def _content(doc: Doc[Any]) -> tuple[str, dict[str, Any]]:
    return str(doc.get("t", type=Text)), dict(doc.get("m", type=Map).to_py() or {})


async def test_unload_folds_the_log_and_a_fresh_client_is_answered_from_the_stored_chunk(
    make_server: Any, backend: str
) -> None:
    srv = make_server(backend, room_idle_seconds=0.3)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
        a = await _client(srv, wid, owner)
        for i in range(20):
            a.text("t").insert(len(str(a.text("t"))), f"{i};")
            a.map("m")[f"k{i}"] = i
        want = (str(a.text("t")), dict(a.map("m").to_py() or {}))
        probe = await _client(srv, wid, editor)
        await probe.wait_for(lambda: _content(probe.doc) == want)
        for c in (a, probe):
            await c.close()
        await _unloaded(srv, wid)

        stored = await _stored(srv, wid)
        assert stored.snapshot is not None and stored.updates == [], "unloading left the log unfolded"
        assert _content(stored.to_doc()) == want

        fresh = await _client(srv, wid, editor)
        assert _content(fresh.doc) == want
        room = _rooms(srv)[wid]
        assert not room.built, "a fresh client's join built the Doc; the stored chunk should have answered it"

        # The first write builds it; everyone connected gets the write, and it is durable.
        writer = await _client(srv, wid, owner, stored.to_doc())
        writer.map("m")["after"] = "cold"
        await fresh.wait_for(lambda: fresh.map("m").get("after") == "cold")
        assert room.built
        assert (await _stored(srv, wid)).to_doc().get("m", type=Map).get("after") == "cold"
        for c in (fresh, writer):
            await c.close()


async def test_offline_edits_reach_a_cold_room(make_server: Any) -> None:
    """A reconnecting client's state vector is not empty: the room is built for its step 2, and the server's
    step 1 (owed since the join) makes the client send what it wrote offline."""
    srv = make_server(room_idle_seconds=0.3)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
        a = await _client(srv, wid, owner)
        a.map("m")["online"] = 1
        await asyncio.sleep(0.2)
        await a.close()
        a.map("m")["offline"] = 2  # while disconnected
        await _unloaded(srv, wid)
        other = YClient()
        await other.connect(sync_url(srv.ws_url, wid, editor.token))
        await a.connect(sync_url(srv.ws_url, wid, owner.token))
        await a.wait_synced()
        await other.wait_synced()
        await other.wait_for(lambda: other.map("m").to_py() == {"online": 1, "offline": 2})
        later = await _client(srv, wid, editor)
        assert later.map("m").to_py() == {"online": 1, "offline": 2}
        for c in (a, other, later):
            await c.close()


async def test_many_fresh_clients_join_a_cold_room_at_once_then_all_write(make_server: Any, backend: str) -> None:
    srv = make_server(backend, room_idle_seconds=0.3)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        seed = await _client(srv, wid, owner)
        seed.text("t").insert(0, "x" * 50_000)
        await asyncio.sleep(0.3)
        await seed.close()
        await _unloaded(srv, wid)
        clients = [YClient() for _ in range(10)]
        await asyncio.gather(*(c.connect(sync_url(srv.ws_url, wid, owner.token)) for c in clients))
        await asyncio.gather(*(c.wait_synced() for c in clients))
        assert all(len(str(c.text("t"))) == 50_000 for c in clients)
        for n, c in enumerate(clients):
            c.map("m")[f"c{n}"] = n
        want = {f"c{n}": n for n in range(10)}
        for c in clients:
            await c.wait_for(lambda c=c: c.map("m").to_py() == want)
        stored = (await _stored(srv, wid)).to_doc()
        assert stored.get("m", type=Map).to_py() == want and len(str(stored.get("t", type=Text))) == 50_000
        for c in clients:
            await c.close()


async def test_shutdown_folds_the_log_of_loaded_rooms(make_server: Any, backend: str) -> None:
    srv = make_server(backend)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        a = await _client(srv, wid, owner)
        for i in range(30):
            a.map("m")[f"k{i}"] = i
        await a.wait_for(lambda: _rooms(srv)[wid].log.tail_count == 30)
        srv.stop()  # fails if the server is still running 15 s later
        assert await a.wait_closed() == 1012  # told to reconnect (to another node)
    stored = await _stored(srv, wid)
    assert stored.snapshot is not None and stored.updates == [] and stored.snapshot_seq == 30
    assert stored.to_doc().get("m", type=Map).to_py() == {f"k{i}": i for i in range(30)}


async def test_shutdown_closes_sockets_1012_as_documented(make_server: Any) -> None:
    srv = make_server("sqlite")
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        a = await _client(srv, wid, owner)
        srv.stop()
        code = await a.wait_closed()
    assert code == 1012, "docs/protocol.md: a stopping node closes its sockets with 1012"
