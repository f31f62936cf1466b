"""Issue 21: what one account can make a node hold through its sync sockets is bounded, through the real
interfaces (raw y-websocket frames over real sockets, pycrdt and npm clients, a real server and database)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Map, create_awareness_message, create_update_message, write_var_uint

from sync_server.protocol import AwarenessEntry, encode_awareness
from tests.support.node import NodeClient, node_available
from tests.support.pyclient import YClient, async_wait_until, sync_url
from tests.support.server import ThreadServer
from tests.support.users import Account, workspace_with
from tests.test_sync_protocol import _frames, _raw_ws_reader_that_stalls


async def _client(srv: ThreadServer, wid: str, acct: Account, doc: Doc | None = None) -> YClient:
    c = YClient(doc)
    await c.connect(sync_url(srv.ws_url, wid, acct.token))
    await c.wait_synced()
    return c


def _metric(http: httpx.Client, name: str, **labels: str) -> float:
    """A counter's value from /metrics (0 when absent)."""
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in http.get("/metrics").text.splitlines():
        if line.split(" ")[0] == want:
            return float(line.split()[-1])
    return 0.0


def _big_document(writer: YClient, entries: int, size: int = 1000) -> None:
    """``entries`` map entries of ``size`` bytes, in one transaction (one update; many structs)."""
    m = writer.map("m")
    with writer.doc.transaction():
        for i in range(entries):
            m[f"k{i:05d}"] = f"{i:05d}" + "x" * (size - 5)


# ---- item 2: sync step 2 counts against the send limit, goes out in pieces, and a stalled reader is closed ----


def _read_until_close(sock: socket.socket, timeout: float) -> tuple[int | None, int]:
    """Read every frame up to the close frame: (close code, payload bytes received before it)."""
    received = 0
    for opcode, body in _frames(sock, timeout):
        if opcode == 0x8:
            return (int.from_bytes(body[:2], "big") if len(body) >= 2 else None), received
        received += len(body)
    return None, received


@pytest.mark.slow
async def test_step2_to_readers_that_never_read_is_bounded_and_closed_1013(make_server: Any) -> None:
    """Ten sockets ask for a 12 MB document and never read: each used to keep the whole step 2 in its transport
    until the keepalive ping gave up (1011, ~40 s). Now a stalled socket holds one fragment and is closed with
    1013 (a close frame may go between two fragments of a message)."""
    srv = make_server(send_stall_seconds=1.0, send_queue_max_bytes=4 * 1024 * 1024)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        writer = await _client(srv, wid, owner)
        _big_document(writer, 12_000)
        await async_wait_until(
            lambda: http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["log_bytes"] > 12e6,
            timeout=30,
        )
        before = _metric(http, "plait_socket_closes_total", code="1013")
        stalled = [_raw_ws_reader_that_stalls(srv.port, f"/sync/{wid}?token={owner.token}") for _ in range(10)]
        await async_wait_until(
            lambda: _metric(http, "plait_socket_closes_total", code="1013") >= before + 10, timeout=30
        )
        for sock in stalled:
            code, received = await asyncio.to_thread(_read_until_close, sock, 30)
            sock.close()
            assert code == 1013
            # What was in the kernel's buffers (loopback: up to ~4 MB) and at most a piece or two more: not 12 MB.
            assert received < 7_000_000, received
        # a reader gets all of it (one message, in fragments)
        reader = await _client(srv, wid, owner)
        assert len(reader.map("m")) == 12_000
        # a client that has part of the document gets the rest (here: the whole, a valid step 2 for anyone)
        partial = Doc()
        partial.apply_update(writer.doc.get_update())
        partial.get("m", type=Map)["mine"] = "offline"
        back = await _client(srv, wid, owner, partial)
        await back.wait_for(lambda: len(writer.map("m")) == 12_001)
        assert len(back.map("m")) == 12_001
        for c in (writer, reader, back):
            await c.close()


@pytest.mark.skipif(not node_available(), reason="node not installed")
async def test_npm_client_syncs_a_step2_sent_in_fragments(make_server: Any) -> None:
    """A large step 2 goes out as one fragmented WebSocket message: the npm client (ws) reassembles it."""
    srv = make_server()
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        a = await _client(srv, wid, owner)
        b = await _client(srv, wid, owner)
        for round_ in range(20):
            for c in (a, b):
                text = c.text("t")
                text.insert(len(text) // 2, f"<{round_}:{c.doc.client_id % 97}>" + "y" * 30_000)
                c.map("m")[f"{c.doc.client_id}-{round_}"] = {"n": round_, "s": "z" * 1000}
            await b.wait_for(lambda: str(a.text("t")) == str(b.text("t")) and len(a.map("m")) == len(b.map("m")), 30)
        want_text, want_keys = str(a.text("t")), len(a.map("m"))
        assert len(a.doc.get_update()) > 3 * 256 * 1024
        node = NodeClient()
        try:
            await asyncio.to_thread(node.connect, f"{srv.ws_url}/sync", wid, owner.token)
            await asyncio.to_thread(node.wait_synced, 30)
            state = await asyncio.to_thread(node.state, texts=["t"], maps=["m"])
            assert state["texts"]["t"] == want_text
            assert len(state["maps"]["m"]) == want_keys
            assert (await asyncio.to_thread(node.status))["errors"] == []
        finally:
            node.close()
        await a.close()
        await b.close()


# ---- item 3: updates with missing dependencies are refused, never kept pending ----


async def test_update_with_missing_dependencies_is_refused_and_not_kept(make_server: Any) -> None:
    """yrs keeps an update whose dependencies are absent as pending, outside the document, the quota and the
    log (20 x 7.5 MB grew a node by 215 MB while /document said 0 bytes); when the missing part arrived later
    it would be integrated too. Now the socket is closed (1003) and nothing of it stays."""
    srv = make_server()
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        author: Doc = Doc()
        updates: list[bytes] = []
        author.observe(lambda e: updates.append(e.update))
        tasks = author.get("t", type=Map)
        tasks["first"] = "one"
        tasks["second"] = "two" + "p" * 2_000_000  # depends on the first (same client, next clock)
        first, second = updates
        attacker = await _client(srv, wid, owner)
        await attacker.send_raw(create_update_message(second))
        assert await attacker.wait_closed() == 1003
        assert "missing dependencies" in attacker.close_reason
        info = http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()
        assert info["snapshot_bytes"] + info["log_bytes"] < 1000
        # The first update arrives: only it is in the document (a pending second one would integrate now).
        other = await _client(srv, wid, owner)
        await other.send_raw(create_update_message(first))
        reader = await _client(srv, wid, owner)
        await reader.wait_for(lambda: reader.map("t").get("first") == "one")
        assert "second" not in reader.map("t")
        # A client sending its own updates in order, a duplicate included, is not affected.
        editor = await _client(srv, wid, owner)
        for i in range(20):
            editor.text("x").insert(0, f"{i};")
        await editor.send_raw(create_update_message(first))
        await reader.wait_for(lambda: str(reader.text("x")).startswith("19;"))
        assert editor.connected and reader.connected
        for c in (other, reader, editor):
            await c.close()


# ---- items 1 and 12: awareness is bounded and strictly JSON ----


def _awareness_frame(*entries: tuple[int, int, Any]) -> bytes:
    payload = encode_awareness([AwarenessEntry(cid, clock, state) for cid, clock, state in entries])
    return create_awareness_message(payload)


def _raw_awareness_frame(client_id: int, clock: int, state_json: str) -> bytes:
    raw = state_json.encode()
    payload = write_var_uint(1) + write_var_uint(client_id) + write_var_uint(clock) + write_var_uint(len(raw)) + raw
    return create_awareness_message(payload)


async def test_awareness_client_ids_per_socket_and_bytes_per_room_are_bounded(make_server: Any) -> None:
    """A fresh client id in every message (8 sockets, 60 KiB states) grew a node by 207 MB and gave every
    newcomer one 216 MB frame. A socket now holds at most 4 ids, a room at most its awareness byte budget."""
    srv = make_server(max_awareness_room_bytes=400_000, max_awareness_per_second=1000)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
        watcher = await _client(srv, wid, owner)
        attackers = [await _client(srv, wid, editor) for _ in range(3)]
        blob = "b" * 50_000

        async def flood(n: int, attacker: YClient) -> None:
            for i in range(10):
                await attacker.send_raw(_awareness_frame((1_000_000 + n * 100 + i, 1, {"blob": blob})))
            # its own small state last: once the watcher has it, everything before was handled
            own = attacker.awareness.client_id
            await attacker.send_raw(_awareness_frame((own, 1000, {"done": True})))
            await watcher.wait_for(lambda: (watcher.awareness.states.get(own) or {}).get("done"))

        def forged(n: int) -> list[int]:
            return [cid for cid in watcher.awareness.states if cid // 100 == 10_000 + n]

        dropped_ids = _metric(http, "plait_awareness_dropped_total", reason="client_ids")
        await flood(0, attackers[0])
        assert len(forged(0)) == 3
        assert _metric(http, "plait_awareness_dropped_total", reason="client_ids") - dropped_ids >= 7
        dropped_bytes = _metric(http, "plait_awareness_dropped_total", reason="room_bytes")
        await flood(1, attackers[1])
        await flood(2, attackers[2])
        total = sum(len(forged(n)) for n in range(3))
        assert all(len(forged(n)) <= 3 for n in range(3))
        assert total * 50_000 <= 400_000 and total < 9
        assert _metric(http, "plait_awareness_dropped_total", reason="room_bytes") > dropped_bytes
        # a newcomer receives the states in one frame no larger than the budget
        newcomer = await _client(srv, wid, owner)
        await newcomer.wait_for(
            lambda: sum(1 for cid in newcomer.awareness.states if cid // 100 - 10_000 in (0, 1, 2)) == total
        )
        assert len(json.dumps(newcomer.awareness.states)) < 400_000 + 10_000
        for c in (watcher, newcomer, *attackers):
            await c.close()


@pytest.mark.slow
async def test_awareness_states_not_renewed_expire(make_server: Any) -> None:
    srv = make_server(awareness_timeout_seconds=1.0, room_idle_seconds=1.0)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
        watcher = await _client(srv, wid, owner)
        quiet = await _client(srv, wid, editor)
        await quiet.send_raw(_awareness_frame((777_001, 1, {"cursor": 1})))
        await watcher.wait_for(lambda: 777_001 in watcher.awareness.states)
        renewing = await _client(srv, wid, editor)
        clock = 1
        await renewing.send_raw(_awareness_frame((777_002, clock, {"cursor": 2})))
        await watcher.wait_for(lambda: 777_002 in watcher.awareness.states)

        async def gone_while_renewing() -> bool:
            nonlocal clock
            clock += 1
            await renewing.send_raw(_awareness_frame((777_002, clock, {"cursor": 2})))
            return 777_001 not in watcher.awareness.states

        await async_wait_until(gone_while_renewing, timeout=15, interval=0.3)
        assert 777_002 in watcher.awareness.states
        assert quiet.connected  # only its state went, not the socket
        for c in (watcher, quiet, renewing):
            await c.close()


@pytest.mark.parametrize(
    "state_json",
    ['{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}', '{"x":' * 1200 + "1" + "}" * 1200, '{"x":[' * 40 + "]}" * 40],
    ids=["nan", "infinity", "-infinity", "nested-1200", "nested-80"],
)
async def test_awareness_that_is_not_json_or_too_deep_closes_1003_and_reaches_nobody(
    server: ThreadServer, client: httpx.Client, state_json: str
) -> None:
    """Python's json reads NaN/Infinity and writes them back: every Yjs peer's JSON.parse then fails and drops
    all the states of that message. 1,200 levels raised RecursionError: the socket dropped with no close code."""
    wid, owner, (editor,) = workspace_with(client, "editor")
    watcher = await _client(server, wid, owner)
    bad = await _client(server, wid, editor)
    await bad.send_raw(_raw_awareness_frame(888_001, 1, state_json))
    assert await bad.wait_closed() == 1003
    ok = await _client(server, wid, editor)
    await ok.send_raw(_awareness_frame((888_002, 1, {"fine": True})))
    await watcher.wait_for(lambda: 888_002 in watcher.awareness.states)
    assert 888_001 not in watcher.awareness.states
    await watcher.close()
    await ok.close()


# ---- item 6: sockets and notification streams per account and per node ----


async def test_sockets_per_account_and_per_node_are_capped_4503(make_server: Any) -> None:
    """400 sockets of one account were accepted. Past the caps a socket is closed with 4503 (transient)."""
    srv = make_server(max_sockets_per_user=3, max_sockets_per_node=5)
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
        mine = [await _client(srv, wid, owner) for _ in range(3)]
        extra = YClient()
        await extra.connect(sync_url(srv.ws_url, wid, owner.token))
        assert await extra.wait_closed() == 4503
        assert "account" in extra.close_reason
        theirs = [await _client(srv, wid, editor) for _ in range(2)]  # other accounts are not affected
        full = YClient()
        await full.connect(sync_url(srv.ws_url, wid, editor.token))
        assert await full.wait_closed() == 4503
        assert "server" in full.close_reason
        await mine[0].close()
        await async_wait_until(lambda: srv.ctx.sync._sockets == 4)
        again = await _client(srv, wid, owner)  # a place was given back
        for c in (*mine[1:], *theirs, again):
            assert c.connected
            await c.close()


async def test_notification_streams_per_account_and_per_node_are_capped_429(make_server: Any) -> None:
    """200 streams of one account were accepted. Past the caps: 429 JSON with Retry-After."""
    srv = make_server(max_sse_streams_per_user=2, max_sse_streams_per_node=3)
    url = f"{srv.base_url}/api/notifications/stream"
    with httpx.Client(base_url=srv.base_url) as http:
        _, owner, (other,) = workspace_with(http, "editor")

        def open_stream(acct: Account) -> Any:
            cm = http.stream("GET", url, headers=acct.headers)
            r = cm.__enter__()
            return cm, r

        streams = [open_stream(owner), open_stream(owner)]
        assert all(r.status_code == 200 for _, r in streams)
        refused = http.get(url, headers=owner.headers)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert "account" in refused.json()["detail"]
        streams.append(open_stream(other))
        assert streams[-1][1].status_code == 200
        node_full = http.get(url, headers=other.headers)
        assert node_full.status_code == 429 and "server" in node_full.json()["detail"]
        cm, _ = streams.pop(0)
        cm.__exit__(None, None, None)

        def reopened() -> Any:
            r = open_stream(owner)
            if r[1].status_code == 200:
                return r
            r[0].__exit__(None, None, None)
            return None

        streams.append(await async_wait_until(reopened, timeout=10, interval=0.1))
        for cm, _ in streams:
            cm.__exit__(None, None, None)


# ---- a socket of an account that goes away is closed (4401), on every node ----


def _execute(url: str, sql: str, **params: Any) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql), params)
        finally:
            await engine.dispose()

    asyncio.run(run())


async def _close_user(srv: ThreadServer, user_id: str) -> int:
    """``SyncService.close_user`` on the server's own event loop (it runs in another thread)."""
    sync = srv.ctx.sync
    loop = sync._janitor.get_loop()
    return int(await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(sync.close_user(user_id), loop)))


@pytest.mark.redis
async def test_sockets_of_a_deleted_account_are_closed_4401_on_every_node(make_server: Any, tmp_path: Any) -> None:
    from tests.support.redisproc import RedisProcess
    from tests.support.server import free_port

    rds = RedisProcess(free_port()).start()
    try:
        shared = {"redis_url": rds.url, "redis_namespace": f"t{os.getpid()}"}
        a = make_server("postgres", node_id="node-a", **shared)
        url = a.settings.resolved_database_url()
        b = make_server("postgres", database_url=url, node_id="node-b", **shared)
        with httpx.Client(base_url=a.base_url) as http:
            wid, owner, (editor,) = workspace_with(http, "editor")
        on_a = await _client(a, wid, editor)
        on_b = await _client(b, wid, editor)
        watcher = await _client(b, wid, owner)
        on_b.text("t").insert(0, "before")
        await watcher.wait_for(lambda: str(watcher.text("t")) == "before")
        await asyncio.to_thread(_execute, url, "DELETE FROM users WHERE id = :id", id=editor.id)
        assert await _close_user(a, editor.id) == 1
        assert await on_a.wait_closed() == 4401
        assert await on_b.wait_closed() == 4401  # through Redis
        assert watcher.connected
        again = YClient()
        await again.connect(sync_url(b.ws_url, wid, editor.token))
        assert await again.wait_closed() == 4401
        await watcher.close()
    finally:
        rds.stop()


def test_updates_of_real_clients_are_never_refused_for_missing_dependencies() -> None:
    """The other side of item 3: every update a client sends in order, with concurrent edits of other clients
    merged in between (what the server sees), passes the dependency check, and so do whole-document diffs."""
    import random

    from pycrdt import Array, Text

    from sync_server.protocol import decode_state_vector, missing_dependencies

    rng = random.Random(21)
    for _ in range(6):
        server: Doc = Doc()
        clients: list[Doc] = [Doc() for _ in range(rng.randint(2, 4))]
        for _ in range(rng.randint(20, 60)):
            sent: list[bytes] = []
            for c in clients:
                subscription = c.observe(lambda e, sent=sent: sent.append(e.update))  # type: ignore[misc]
                text, tasks, items = c.get("t", type=Text), c.get("m", type=Map), c.get("a", type=Array)
                for _ in range(rng.randint(1, 3)):
                    k = rng.random()
                    if k < 0.4:
                        text.insert(rng.randint(0, len(text)), rng.choice(["ab", "héllo", "z" * rng.randint(1, 50)]))
                    elif k < 0.55 and len(text) > 4:
                        start = rng.randint(0, len(text) - 3)
                        del text[start : start + 2]
                    elif k < 0.75:
                        tasks[f"k{rng.randint(0, 20)}"] = rng.choice([1, "s", None, {"x": [1, {"y": 2}]}])
                    elif k < 0.85:
                        tasks[f"sub{rng.randint(0, 3)}"] = Map({"description": Text("hi"), "n": 3})
                    elif k < 0.95:
                        items.append(rng.choice([1, "x", {"o": 1}]))
                    elif len(items):
                        del items[rng.randint(0, len(items) - 1)]
                c.unobserve(subscription)
            for update in sent:  # the server receives each client's updates in order
                assert missing_dependencies(update, decode_state_vector(server.get_state())) is None
                server.apply_update(update)
            for c in clients:  # and broadcasts them
                diff = server.get_update(c.get_state())
                assert missing_dependencies(diff, decode_state_vector(c.get_state())) is None
                c.apply_update(diff)
        assert missing_dependencies(server.get_update(), {}) is None
