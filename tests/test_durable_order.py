"""Durable before broadcast, deterministically: with the document's append blocked by a lock another connection
holds, a peer must receive nothing of a writer's update; once the lock is released, it receives it.

The negative is not a sleep: after its update the writer changes its awareness state on the *same* socket. The
server handles a socket's frames in order and broadcasts awareness at once, so when the peer sees that awareness
the server has applied the update and queued it for the commit, and a server that broadcast before committing
would already have put the update on the peer's socket, ahead of the awareness frame.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from persistence.db import Database
from tests.support.databases import stored_document
from tests.support.metrics import async_wait_moved, delta, scrape
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.users import workspace_with


@asynccontextmanager
async def _append_blocked(server: ThreadServer, workspace_id: str) -> AsyncIterator[Any]:
    """Hold what the document's append must write: SQLite's write lock (BEGIN IMMEDIATE on the server's file; the
    appender polls for it), or on PostgreSQL the workspace's head row in ``documents`` (the append updates it)."""
    url = server.settings.resolved_database_url()
    db = Database(url)
    if db.is_sqlite:
        path = db.sqlite_path
        await db.dispose()
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield None
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    await db.dispose()
    pg = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        tx = pg.transaction()
        await tx.start()
        locked = await pg.fetch("SELECT 1 FROM documents WHERE workspace_id = $1 FOR UPDATE", workspace_id)
        assert len(locked) == 1
        try:
            yield pg
        finally:
            await tx.rollback()
    finally:
        await pg.close()


async def _stored_seq(server: ThreadServer, workspace_id: str) -> int:
    db = Database(server.settings.resolved_database_url())
    try:
        return (await stored_document(db, workspace_id)).last_seq
    finally:
        await db.dispose()


async def test_a_peer_receives_nothing_until_the_update_is_committed(
    server: ThreadServer, client: httpx.Client
) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a, b = YClient(), YClient()
    try:
        for c, acct in ((a, owner), (b, editor)):
            await c.connect(sync_url(server.ws_url, wid, acct.token))
            await c.wait_synced()
        a.map("m")["first"] = 1  # the document head exists and both sockets are synced and broadcast to
        await b.wait_for(lambda: b.map("m").get("first") == 1)
        head = await _stored_seq(server, wid)
        received = b.updates_received

        async with _append_blocked(server, wid) as pg:
            a.map("m")["k"] = "durable"
            a.awareness.set_local_state({"probe": 1})
            await b.wait_for(lambda: (b.awareness.states.get(a.awareness.client_id) or {}).get("probe") == 1)
            if pg is not None:  # the server's append is waiting for the lock, not merely not yet sent
                await b.wait_for(
                    lambda: pg.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = "
                        "current_database() AND query LIKE '%doc_updates%'"
                    )
                )
            assert b.map("m").get("k") is None, "the peer received an update that was not committed"
            assert b.updates_received == received
            assert await _stored_seq(server, wid) == head

        await b.wait_for(lambda: b.map("m").get("k") == "durable")
        assert await _stored_seq(server, wid) == head + 1
        assert not a.errors and not b.errors
    finally:
        await a.close()
        await b.close()


@pytest.mark.allow_errors(r"^commit of 1 updates failed: QueryCanceledError", r"^room \S+ failed \(QueryCanceledError")
async def test_a_failed_commit_closes_the_room_1011_and_the_peer_gets_the_update_only_once_stored(
    make_server: Callable[..., ThreadServer],
) -> None:
    """PostgreSQL cancels the append while it waits for the head row: the room is failed (1011 to every socket)
    and rebuilt from the database on the next join, which never had the update; the writer's reconnect re-sends
    it (sync step 1/2), and then everyone has it."""
    server = make_server("postgres")
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
        a, b = YClient(), YClient()
        for c, acct in ((a, owner), (b, editor)):
            await c.connect(sync_url(server.ws_url, wid, acct.token))
            await c.wait_synced()
        a.map("m")["first"] = 1
        await b.wait_for(lambda: b.map("m").get("first") == 1)
        head = await _stored_seq(server, wid)
        before = scrape(http)
        async with _append_blocked(server, wid) as pg:
            a.map("m")["k"] = "lost"
            waiting = await b.wait_for(
                lambda: pg.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = "
                    "current_database() AND query LIKE '%doc_updates%'"
                )
            )
            assert await pg.fetchval("SELECT pg_cancel_backend($1)", waiting)
            assert await a.wait_closed() == 1011
            assert await b.wait_closed() == 1011
        assert "k" not in b.map("m")
        assert await _stored_seq(server, wid) == head
        after = await async_wait_moved(http, before, "plait_commit_failures_total")
        assert delta(before, after, "plait_socket_closes_total", code="1011") >= 2
        # the next join rebuilds the room from the database; the writer's own copy brings the update back
        await b.connect(sync_url(server.ws_url, wid, editor.token))
        await b.wait_synced()
        assert "k" not in b.map("m") and b.map("m").get("first") == 1
        await a.connect(sync_url(server.ws_url, wid, owner.token))
        await a.wait_synced()
        await b.wait_for(lambda: b.map("m").get("k") == "lost")
        assert await _stored_seq(server, wid) == head + 1
        await a.close()
        await b.close()


async def test_a_writer_waits_once_its_room_has_pending_limit_updates_uncommitted(
    make_server: Callable[..., ThreadServer],
) -> None:
    """Write back-pressure (sync_server/room.py PENDING_LIMIT): with commits blocked, a socket's updates are
    applied until the room holds PENDING_LIMIT + 1 uncommitted ones; then its reader waits, so later frames of
    that socket (here its awareness) are not handled until the database catches up. Then everything arrives."""
    from sync_server.room import PENDING_LIMIT

    server = make_server("sqlite")
    rooms = server.ctx.sync.rooms
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
    w, o = YClient(), YClient()
    for c, acct in ((w, owner), (o, editor)):
        await c.connect(sync_url(server.ws_url, wid, acct.token))
        await c.wait_synced()
    total = PENDING_LIMIT + 100
    async with _append_blocked(server, wid):
        for i in range(total):
            w.map("m")[str(i)] = i
        w.awareness.set_local_state({"probe": 1})  # after every update, on the same socket
        await o.wait_for(lambda: len(rooms[wid]._pending) == PENDING_LIMIT + 1, timeout=30)
        await o.handled()  # the server is handling other sockets meanwhile
        assert len(rooms[wid]._pending) == PENDING_LIMIT + 1, "the writer's reader did not wait"
        assert (o.awareness.states.get(w.awareness.client_id) or {}).get("probe") is None
        assert o.map("m").get("0") is None
    await o.wait_for(lambda: len(o.map("m")) == total, timeout=60)
    await o.wait_for(lambda: (o.awareness.states.get(w.awareness.client_id) or {}).get("probe") == 1)
    assert await _stored_seq(server, wid) == total
    await w.close()
    await o.close()
