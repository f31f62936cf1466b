"""The sync endpoint driven by real pycrdt clients over real sockets: convergence, access control, bad input,
awareness, durability-before-broadcast and the pycrdt-websocket defects Plait must not inherit."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from pycrdt import (
    Doc,
    Map,
    Text,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    write_var_uint,
)

from persistence.db import Database
from persistence.doclog import DocumentLog, open_document_log
from sync_server.protocol import AwarenessEntry, encode_awareness
from tests.support.databases import stored_doc, stored_document
from tests.support.metrics import Samples, async_wait_moved, delta, scrape
from tests.support.pyclient import YClient, async_wait_until, pycrdt_provider, sync_url
from tests.support.server import ThreadServer
from tests.support.users import Account, create_workspace, register, workspace_with


async def _client(server: ThreadServer, wid: str, acct: Account, **kw: object) -> YClient:
    c = YClient(**kw)  # type: ignore[arg-type]
    await c.connect(sync_url(server.ws_url, wid, acct.token))
    await c.wait_synced()
    return c


async def _stored_doc(server: ThreadServer, wid: str) -> Doc:
    return await stored_doc(server.settings.resolved_database_url(), wid)


async def test_two_clients_converge_and_text_edits_merge(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a = await _client(server, wid, owner)
    b = await _client(server, wid, editor)
    a.text("t").insert(0, "hello")
    await b.wait_for(lambda: str(b.text("t")) == "hello")
    # concurrent edits of one Y.Text
    for i in range(20):
        a.text("t").insert(0, f"a{i}")
        b.text("t").insert(len(str(b.text("t"))), f"b{i}")
    await a.wait_for(
        lambda: str(a.text("t")) == str(b.text("t")) and "b19" in str(a.text("t")) and "a19" in str(b.text("t"))
    )
    for c in (a, b):
        await c.close()


async def test_update_is_durable_before_any_peer_receives_it(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a = await _client(server, wid, owner)
    b = await _client(server, wid, editor)
    a.map("m")["k"] = "durable"
    await b.wait_for(lambda: b.map("m").get("k") == "durable")
    # The moment b has it, the database has it. (This cannot tell the order apart from a commit a moment after
    # the broadcast: tests/test_durable_order.py holds the append's lock to do that.)
    stored = await _stored_doc(server, wid)
    assert stored.get("m", type=Map).get("k") == "durable"
    await a.close()
    await b.close()


async def test_a_writer_is_not_sent_its_own_update_back(server: ThreadServer, client: httpx.Client) -> None:
    """An update goes to the room's other sockets only: its writer has it already (with two clients a room,
    the echo was half of every broadcast). A server-made change, here a schema repair, reaches the writer."""
    wid, owner, (editor,) = workspace_with(client, "editor")
    a = await _client(server, wid, owner)
    b = await _client(server, wid, editor)
    a_before, b_before = a.updates_received, b.updates_received
    for i in range(5):
        a.map("m")[str(i)] = i
        await b.wait_for(lambda i=i: b.map("m").get(str(i)) == i)
    await a.handled()  # an echo would be queued to a with b's copy, before the server's answer to this probe
    assert b.updates_received >= b_before + 1
    assert a.updates_received == a_before
    tasks = a.doc.get("tasks", type=Map)
    tasks["t-1"] = Map({"id": "t-1", "title": "x", "status": "bogus"})
    await a.wait_for(lambda: tasks["t-1"].get("status") == "todo")  # the repair comes back to the writer
    await b.wait_for(lambda: b.doc.get("tasks", type=Map)["t-1"].get("status") == "todo")
    await a.close()
    await b.close()


async def test_python_provider_of_pycrdt_websocket_works_unchanged(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    a = await _client(server, wid, owner)
    a.text("t").insert(0, "from YClient")
    doc: Doc = Doc()
    async with pycrdt_provider(sync_url(server.ws_url, wid, owner.token), doc):
        text = doc.get("t", type=Text)
        deadline = time.monotonic() + 10
        while str(text) != "from YClient" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert str(text) == "from YClient"
        text.insert(0, ">")
        await a.wait_for(lambda: str(a.text("t")) == ">from YClient")
    await a.close()


async def test_offline_edits_merge_on_reconnect(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a = await _client(server, wid, owner)
    b = await _client(server, wid, editor)
    a.text("t").insert(0, "base")
    await b.wait_for(lambda: str(b.text("t")) == "base")
    await b.abort()
    b.text("t").insert(0, "offline-")
    a.text("t").insert(4, "-online")
    await asyncio.sleep(0.1)
    await b.connect(sync_url(server.ws_url, wid, editor.token))
    await b.wait_synced()
    await a.wait_for(lambda: str(a.text("t")) == str(b.text("t")) == "offline-base-online")
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, 4401), ("garbage", 4401)],
)
async def test_missing_or_invalid_token_closes_4401(
    server: ThreadServer, client: httpx.Client, token: str | None, code: int
) -> None:
    wid, _, _ = workspace_with(client)
    c = YClient()
    await c.connect(sync_url(server.ws_url, wid, token))
    assert await c.wait_closed() == code


async def test_expired_and_forged_tokens_close_4401(server: ThreadServer, client: httpx.Client) -> None:
    import jwt

    from tests.support.server import SECRET

    wid, owner, _ = workspace_with(client)
    now = int(time.time())
    expired = jwt.encode({"sub": owner.id, "iat": now - 100, "exp": now - 10}, SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": owner.id, "iat": now, "exp": now + 100}, "not-the-key" * 4, algorithm="HS256")
    for token in (expired, forged):
        c = YClient()
        await c.connect(sync_url(server.ws_url, wid, token))
        assert await c.wait_closed() == 4401


async def test_valid_token_of_an_account_that_does_not_exist_closes_4401(
    server: ThreadServer, client: httpx.Client
) -> None:
    """The signature is right but the account is gone: 4401 (sign in again), not 4404."""
    import uuid

    import jwt

    from tests.support.server import SECRET

    wid, _, _ = workspace_with(client)
    now = int(time.time())
    ghost = jwt.encode({"sub": str(uuid.uuid4()), "iat": now, "exp": now + 100}, SECRET, algorithm="HS256")
    for target in (wid, "00000000-0000-4000-8000-000000000000"):
        c = YClient()
        await c.connect(sync_url(server.ws_url, target, ghost))
        assert await c.wait_closed() == 4401


async def test_bearer_header_is_accepted(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    c = YClient()
    await c.connect(f"{server.ws_url}/sync/{wid}", headers=owner.headers)
    await c.wait_synced()
    await c.close()


async def test_unknown_workspace_and_non_member_both_close_4404(server: ThreadServer, client: httpx.Client) -> None:
    wid, _, _ = workspace_with(client)
    stranger = register(client, "stranger")
    for target in (wid, "00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        c = YClient()
        await c.connect(sync_url(server.ws_url, target, stranger.token))
        assert await c.wait_closed() == 4404


async def test_foreign_origin_is_refused_same_origin_allowed(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    evil = YClient()
    await evil.connect(sync_url(server.ws_url, wid, owner.token), origin="https://evil.example")
    assert await evil.wait_closed() == 4403
    ok = YClient()
    await ok.connect(sync_url(server.ws_url, wid, owner.token), origin=server.base_url)
    await ok.wait_synced()
    await ok.close()


async def test_viewer_receives_but_cannot_write(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (viewer,) = workspace_with(client, "viewer")
    a = await _client(server, wid, owner)
    v = await _client(server, wid, viewer)
    a.text("t").insert(0, "visible")
    await v.wait_for(lambda: str(v.text("t")) == "visible")
    v.text("t").insert(0, "VIEWER-WRITE ")
    v.map("m")["x"] = 1
    await v.handled(a)  # the viewer's writes were handled, and anything broadcast for them reached a
    assert v.connected, "viewer writes are dropped silently, the socket stays open"
    assert str(a.text("t")) == "visible"
    assert "x" not in a.map("m").to_py()
    stored = await _stored_doc(server, wid)
    assert str(stored.get("t", type=Text)) == "visible"
    # a fresh client sees nothing of the viewer's edits either
    c = await _client(server, wid, owner)
    assert str(c.text("t")) == "visible"
    for x in (a, v, c):
        await x.close()


async def test_member_removal_closes_4403_and_demotion_makes_read_only(
    server: ThreadServer, client: httpx.Client
) -> None:
    wid, owner, (removed, demoted) = workspace_with(client, "editor", "editor")
    a = await _client(server, wid, owner)
    r = await _client(server, wid, removed)
    d = await _client(server, wid, demoted)
    resp = client.delete(f"/api/workspaces/{wid}/members/{removed.id}", headers=owner.headers)
    assert resp.status_code in (200, 204), resp.text
    assert await r.wait_closed() == 4403
    resp = client.patch(f"/api/workspaces/{wid}/members/{demoted.id}", json={"role": "viewer"}, headers=owner.headers)
    assert resp.status_code == 200, resp.text
    # The demoted editor's socket is closed at once with 4423, so its client knows its unsent edits are refused;
    # it reconnects as a viewer (read-only: what it writes is dropped, the socket stays open).
    assert await d.wait_closed() == 4423
    await d.close()
    d = await _client(server, wid, demoted)
    d.text("t").insert(0, "after demotion")
    a.text("u").insert(0, "marker")
    await d.wait_for(lambda: str(d.text("u")) == "marker")
    await d.handled(a)
    assert str(a.text("t")) == ""
    assert d.connected
    await a.close()
    await d.close()


async def test_malformed_frames_close_only_that_socket(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a = await _client(server, wid, owner)
    b = await _client(server, wid, editor)
    a.text("t").insert(0, "intact")
    await b.wait_for(lambda: str(b.text("t")) == "intact")
    bad_frames = [
        b"\x00\x02\xff\xff\xff",  # truncated varint length
        b"\x00\x02\x05ab",  # declared length past the end
        b"\x07\x00",  # unknown message type
        b"\x00\x09\x00",  # unknown sync type
        create_update_message(b"\x01\x02\x03garbage-update"),  # pycrdt cannot apply
        create_awareness_message(b"\x01\x05\x01\x03{x}"),  # awareness state not JSON
        b"",  # empty frame
    ]
    for frame in bad_frames:
        bad = await _client(server, wid, editor)
        await bad.send_raw(frame)
        assert await bad.wait_closed() in (1002, 1003), frame
    text = YClient()
    await text.connect(sync_url(server.ws_url, wid, editor.token))
    await text.send_raw("a text frame")
    assert await text.wait_closed() == 1003
    # everyone else carries on and the document is unharmed
    a.text("t").insert(6, "!")
    await b.wait_for(lambda: str(b.text("t")) == "intact!")
    assert str((await _stored_doc(server, wid)).get("t", type=Text)) == "intact!"
    await a.close()
    await b.close()


async def test_oversize_frame_closes_1009(make_server: object, client: httpx.Client) -> None:
    srv = make_server(max_message_bytes=64 * 1024)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        a = await _client(srv, wid, owner)
        big = YClient()
        await big.connect(sync_url(srv.ws_url, wid, owner.token))
        await big.wait_synced()
        big.text("t").insert(0, "x" * 100_000)
        assert await big.wait_closed() == 1009
        a.text("t").insert(0, "still fine")
        await a.wait_for(lambda: str(a.text("t")) == "still fine")
        await a.close()


async def test_awareness_newcomer_removal_query_and_identity(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a = await _client(server, wid, owner, user_state={"user": {"id": "someone-else", "name": "Mallory"}, "cursor": 3})

    def peers(c: YClient) -> dict[int, dict[str, object]]:
        return {k: v for k, v in c.awareness.states.items() if k != c.awareness.client_id and v}

    await asyncio.sleep(0.1)
    b = await _client(server, wid, editor)
    # the newcomer gets existing states at once, with the identity the server enforces
    await b.wait_for(lambda: a.awareness.client_id in peers(b))
    state = peers(b)[a.awareness.client_id]
    assert state["user"] == {"id": owner.id, "name": owner.display_name}
    assert state["cursor"] == 3
    # query-awareness (type 3) is answered
    b.awareness_clocks.pop(a.awareness.client_id)  # a sends nothing more: only the answer brings it back
    await b.send_raw(b"\x03")
    await b.wait_for(lambda: a.awareness.client_id in b.awareness_clocks)
    # an abrupt close removes the states it controlled for everyone, immediately
    b.awareness.set_local_state({"user": {"id": editor.id, "name": editor.display_name}})
    await a.wait_for(lambda: b.awareness.client_id in peers(a))
    await b.abort()
    await a.wait_for(lambda: b.awareness.client_id not in peers(a), timeout=3)
    await a.close()


async def test_awareness_cannot_hijack_another_connections_client_id(
    server: ThreadServer, client: httpx.Client
) -> None:
    wid, owner, (editor, third) = workspace_with(client, "editor", "editor")
    a = await _client(server, wid, owner, user_state={"user": {"name": "A"}})
    c = await _client(server, wid, third)
    await c.wait_for(lambda: a.awareness.client_id in c.awareness.states)
    b = await _client(server, wid, editor)
    forged = encode_awareness(
        [AwarenessEntry(a.awareness.client_id, 10_000, {"user": {"id": owner.id, "name": "fake"}})]
    )
    await b.send_raw(create_awareness_message(forged))
    await b.handled(c)
    assert c.awareness.states[a.awareness.client_id]["user"]["name"] == owner.display_name
    for x in (a, b, c):
        await x.close()


async def test_concurrent_first_join_of_never_used_rooms(server: ThreadServer, client: httpx.Client) -> None:
    """pycrdt-websocket defect 1: the second of two simultaneous first joins hangs for ever."""
    owner = register(client, "owner")
    wids = [create_workspace(client, owner) for _ in range(5)]

    async def join(wid: str) -> YClient:
        return await _client(server, wid, owner)

    clients = await asyncio.wait_for(asyncio.gather(*(join(w) for w in wids for _ in range(20))), 30)
    assert len(clients) == 100
    await asyncio.gather(*(c.close() for c in clients))


async def test_disconnect_during_broadcast_does_not_stop_broadcasting(
    server: ThreadServer, client: httpx.Client
) -> None:
    """pycrdt-websocket defect 2: a client leaving mid-broadcast stopped live updates process-wide."""
    wid, owner, (editor,) = workspace_with(client, "editor")
    writer = await _client(server, wid, owner)
    leavers = [await _client(server, wid, editor) for _ in range(10)]
    watcher = await _client(server, wid, editor)
    for i in range(50):
        writer.text("t").insert(0, "x")
        if i % 5 == 0 and leavers:
            await leavers.pop().abort()
        await asyncio.sleep(0)
    await watcher.wait_for(lambda: len(str(watcher.text("t"))) == 50)
    # live broadcasting still works in this room and in a brand new one
    writer.text("t").insert(0, "after")
    await watcher.wait_for(lambda: str(watcher.text("t")).startswith("after"))
    wid2 = create_workspace(client, owner)
    x = await _client(server, wid2, owner)
    y = await _client(server, wid2, owner)
    x.text("t").insert(0, "new room")
    await y.wait_for(lambda: str(y.text("t")) == "new room")
    for c in (writer, watcher, x, y, *leavers):
        await c.close()


async def test_duplicate_updates_are_not_logged_again(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    a = await _client(server, wid, owner)
    a.text("t").insert(0, "once")
    db = Database(server.settings.resolved_database_url())
    store = open_document_log(db)
    rows_before = await async_wait_until(lambda: _rows(store, wid))  # the insert is logged
    full = a.doc.get_update()
    for _ in range(5):
        await a.send_raw(create_update_message(full))
    await a.handled()
    # a duplicate would be logged before its room answers a newcomer's step 1 (step 2 waits for the queue)
    b = await _client(server, wid, owner)
    await a.close()
    rows_after, _ = await store.log_size(wid)
    await db.dispose()
    assert rows_after == rows_before
    assert str(b.text("t")) == "once"
    await b.close()


async def _rows(store: DocumentLog, wid: str) -> int:
    return (await store.log_size(wid))[0]


def _raw_ws_reader_that_stalls(port: int, path: str) -> socket.socket:
    """A WebSocket client at the byte level: handshake, send sync step 1, then never read again (a tiny
    receive buffer, so the server's sends really back up)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n", 1)[0]
    payload = create_sync_message(Doc())
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x82, 0x80 | len(payload)]) + mask + masked)
    return sock


async def _close_code_once_overflowed(http: httpx.Client, before: Samples, sock: socket.socket) -> int | None:
    """The stalled socket's close code, read as soon as the server counted the overflow: its close frame waits
    behind unread data for CLOSE_GRACE_SECONDS only, then the TCP is dropped (a reader that starts later, on a
    loaded machine, sees the data and no close frame)."""
    await async_wait_moved(http, before, "plait_send_queue_overflows_total", timeout=90)
    return await asyncio.to_thread(_read_close_code, sock, 30)


def _read_close_code(sock: socket.socket, timeout: float) -> int | None:
    """Read frames until a close frame; returns its code."""
    for opcode, body in _frames(sock, timeout):
        if opcode == 0x8:
            return int.from_bytes(body[:2], "big") if len(body) >= 2 else None
    return None


def _frames(sock: socket.socket, timeout: float) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each frame the server sends (server frames are not masked)."""
    sock.settimeout(timeout)
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed without a close frame")
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    while True:
        b0, b1 = need(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(need(2), "big")
        elif length == 127:
            length = int.from_bytes(need(8), "big")
        yield b0 & 0x0F, need(length)


@pytest.mark.slow
async def test_slow_reader_is_closed_1013_without_stalling_others(make_server: object) -> None:
    srv = make_server(send_queue_max_bytes=2 * 1024 * 1024)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        writer = await _client(srv, wid, owner)
        reader = await _client(srv, wid, owner)
        slow = _raw_ws_reader_that_stalls(srv.port, f"/sync/{wid}?token={owner.token}")
        await asyncio.sleep(0.2)
        before = scrape(http)
        closed = asyncio.create_task(_close_code_once_overflowed(http, before, slow))
        chunk = "x" * 4000
        for i in range(3000):  # 12 MB: more than the server's send buffer (4 MB) plus the 2 MiB queue limit
            writer.text("t").insert(0, chunk)
            if i % 5 == 0:
                await asyncio.sleep(0.005)  # a pace that reading clients keep up with
        await reader.wait_for(lambda: len(reader.text("t")) == 3000 * 4000, timeout=90)
        code = await closed
        slow.close()
        assert code == 1013
        await writer.close()
        await reader.close()


@pytest.mark.slow
async def test_a_slow_reader_close_is_counted_among_socket_closes(make_server: object) -> None:
    srv = make_server(send_queue_max_bytes=512 * 1024)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        writer = await _client(srv, wid, owner)
        slow = _raw_ws_reader_that_stalls(srv.port, f"/sync/{wid}?token={owner.token}")
        await asyncio.sleep(0.2)
        before = scrape(http)
        closed = asyncio.create_task(_close_code_once_overflowed(http, before, slow))
        for i in range(2000):  # 8 MB: past the socket buffers and the 512 KiB queue limit
            writer.text("t").insert(0, "x" * 4000)
            if i % 5 == 0:
                await asyncio.sleep(0.005)
        code = await closed
        slow.close()
        await writer.close()
        assert code == 1013
        after = await async_wait_moved(http, before, "plait_socket_closes_total", code="1013")
        assert delta(before, after, "plait_socket_closes_total", code="1013") >= 1


@pytest.mark.slow
async def test_a_reader_that_falls_behind_and_recovers_gets_every_update_in_order(make_server: object) -> None:
    """The other side of the send queue: a socket that backs up is not closed below the limit, and once it
    reads again it receives everything, in order (its writer task drains the queue)."""
    srv = make_server()  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        writer = await _client(srv, wid, owner)
        late = _raw_ws_reader_that_stalls(srv.port, f"/sync/{wid}?token={owner.token}")
        await asyncio.sleep(0.2)
        for i in range(2000):  # 8 MB: more than the socket buffers hold, less than the 32 MiB queue limit
            writer.text("t").insert(0, f"{i:04d}" + "y" * 3996)
            if i % 5 == 0:
                await asyncio.sleep(0.005)
        want = str(writer.text("t"))

        def read_all() -> str:
            doc: Doc = Doc()
            for opcode, body in _frames(late, 60):
                assert opcode == 0x2, f"unexpected frame {opcode}: {body[:40]!r}"
                if body[0] == 0:  # sync: step 2 or update (the server's own step 1 is answered with nothing)
                    handle_sync_message(body[1:], doc)
                if len(text := str(doc.get("t", type=Text))) == len(want):
                    return text
            raise AssertionError("closed early")

        assert await asyncio.to_thread(read_all) == want
        late.close()
        await writer.close()


async def test_fresh_joiners_see_deletions_although_the_whole_document_is_encoded_once(make_server: object) -> None:
    """Step 2 for an empty state vector is cached per document change; a deletion changes no state vector,
    so a cache keyed on it would serve the text from before the deletion."""
    srv = make_server()  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        a = await _client(srv, wid, owner)
        a.text("t").insert(0, "hello world")
        first = await _client(srv, wid, owner)
        await first.wait_for(lambda: str(first.text("t")) == "hello world")
        del a.text("t")[5:11]  # a delete-only update
        await first.wait_for(lambda: str(first.text("t")) == "hello")
        second = await _client(srv, wid, owner)
        assert str(second.text("t")) == "hello"
        for c in (a, first, second):
            await c.close()


async def test_idle_room_unloads_and_reloads_from_storage(make_server: object) -> None:
    srv = make_server(room_idle_seconds=0.3)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        a = await _client(srv, wid, owner)
        a.text("t").insert(0, "survives unload")
        await asyncio.sleep(0.2)
        await a.close()
        from api.app import create_app  # noqa: F401  (the app object is inside the server thread)

        app_ctx = srv.ctx
        deadline = time.monotonic() + 5
        while wid in app_ctx.sync.rooms and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert wid not in app_ctx.sync.rooms
        b = await _client(srv, wid, owner)
        assert str(b.text("t")) == "survives unload"
        await b.close()


async def test_compaction_under_concurrent_writes_loses_nothing(make_server: object, backend: str) -> None:
    srv = make_server(backend, compaction_max_updates=20)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
        writers = [await _client(srv, wid, owner), await _client(srv, wid, editor)]
        before = scrape(http)
        for i in range(150):
            for n, w in enumerate(writers):
                w.map("m")[f"{n}-{i}"] = i
            if i % 10 == 0:
                await asyncio.sleep(0.01)
        expected = {f"{n}-{i}": i for n in range(2) for i in range(150)}
        for w in writers:
            await w.wait_for(lambda w=w: w.map("m").to_py() == expected, timeout=30)
        # compactions ran during the writes (>=: in-process servers share the registry; 300 rows, 20 a fold)
        await async_wait_moved(http, before, "plait_compactions_total", at_least=2)
        db = Database(srv.settings.resolved_database_url())
        stored_rows, _ = await open_document_log(db).log_size(wid)
        snapshot = await stored_document(db, wid)
        await db.dispose()
        assert snapshot.snapshot is not None, "compaction produced a snapshot"
        assert stored_rows < 300, "compaction removed folded rows"
        doc = await _stored_doc(srv, wid)
        assert doc.get("m", type=Map).to_py() == expected
        for w in writers:
            await w.close()


async def test_compaction_waits_until_the_tail_is_worth_encoding_the_document(make_server: object) -> None:
    """Every compaction encodes the whole document: a few small edits to a large one are left in the log until
    they add up to an eighth of the snapshot (or the row cap), instead of re-encoding it every ``max_updates`` rows."""
    srv = make_server("sqlite", compaction_max_updates=10)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        info = lambda: http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()  # noqa: E731
        a = await _client(srv, wid, owner)
        a.text("big").insert(0, "x" * 100_000)
        for i in range(9):
            a.map("m")[str(i)] = i
        await async_wait_until(lambda: info()["snapshot_bytes"] > 100_000, timeout=10)
        for i in range(30):  # 30 rows of ~30 bytes on a 100 KB snapshot: not worth an encoding
            a.map("m")[f"small-{i}"] = i
        b = await _client(srv, wid, owner)
        await b.wait_for(lambda: b.map("m").get("small-29") == 29)
        await asyncio.sleep(0.3)
        assert info()["log_rows"] == 30
        a.text("big").insert(0, "y" * 60_000)  # now the tail holds more than an eighth of the snapshot
        await async_wait_until(lambda: info()["log_rows"] == 0, timeout=10)
        assert info()["snapshot_bytes"] > 160_000
        c = await _client(srv, wid, owner)
        assert len(str(c.text("big"))) == 160_000 and c.map("m").get("small-29") == 29
        for client in (a, b, c):
            await client.close()


def test_sizes_of_awareness_messages_are_capped(server: ThreadServer, client: httpx.Client) -> None:
    async def run() -> None:
        wid, owner, (editor,) = workspace_with(client, "editor")
        a = await _client(server, wid, owner)
        b = await _client(server, wid, editor)
        huge = encode_awareness([AwarenessEntry(12345, 1, {"blob": "x" * 200_000})])
        payload = bytes([1]) + write_var_uint(len(huge)) + huge
        await b.send_raw(payload)
        await b.handled(a)
        assert 12345 not in a.awareness.states
        assert json.dumps(a.awareness.states).find("xxxx") == -1
        await a.close()
        await b.close()

    asyncio.run(run())


@pytest.mark.parametrize("deflate", [False, True])
async def test_broadcasts_reach_sockets_with_and_without_compression(make_server: object, deflate: bool) -> None:
    """A broadcast is encoded once and written as it is to sockets without an extension; with
    permessage-deflate (PLAIT_WS_PER_MESSAGE_DEFLATE) each socket's frame goes through its own compressor."""
    srv = make_server(ws_per_message_deflate=deflate)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, (editor,) = workspace_with(http, "editor")
        clients = [YClient() for _ in range(4)]
        for c, acct in zip(clients, (owner, editor, editor, editor), strict=True):
            await c.connect(sync_url(srv.ws_url, wid, acct.token), compression="deflate")
            await c.wait_synced()
        writer, *readers = clients
        for c in clients:  # every client offers permessage-deflate; the server decides
            assert c.ws is not None and c.ws.response is not None
            offered = c.ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in offered) is deflate
        text = writer.text("t")
        for i in range(50):
            text.insert(len(text), f"line {i} " + "z" * 200 + "\n")
            if i % 10 == 0:
                await asyncio.sleep(0.01)
        want = str(text)
        for r in readers:
            await r.wait_for(lambda r=r: str(r.text("t")) == want)  # type: ignore[misc]
        await writer.close()
        for r in readers:
            await r.close()
