"""The real-client harnesses (Node yjs + y-websocket, pycrdt clients) against vanilla pycrdt-websocket.

These prove the harnesses themselves work before Plait's sync tests rely on them. Each test gets its
own vanilla server: its known process-wide broadcast failure after a disconnect (notes §b.7) must not
leak between tests. Clients join one after another because vanilla hangs concurrent first joins.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pycrdt import Doc, Map, Text, create_update_message

from tests.support.node import NodeClient, require_node, start_clients, wait_until
from tests.support.pyclient import YClient, pycrdt_provider
from tests.support.vanilla import VanillaServer

pytestmark = pytest.mark.node


@pytest.fixture
def vanilla() -> Iterator[VanillaServer]:
    srv = VanillaServer(ws_max_size=256 * 1024).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def node_pair(vanilla: VanillaServer, room: str) -> Iterator[tuple[NodeClient, NodeClient]]:
    a, b = start_clients(2)
    with a, b:
        for c in (a, b):  # one after the other: vanilla hangs two concurrent first joins
            c.connect(f"{vanilla.ws_url}/sync", room, token="t0k3n")
            c.wait_synced(10)
        yield a, b


def test_two_node_clients_converge_on_text(node_pair: tuple[NodeClient, NodeClient]) -> None:
    a, b = node_pair
    a.text_insert("notes", 0, "hello")
    wait_until(lambda: b.text("notes") == "hello", 5)
    # concurrent edits at both ends converge to the same string
    a.text_insert("notes", 5, " from a")
    b.text_insert("notes", 0, "b says: ")
    wait_until(lambda: a.text("notes") == b.text("notes") and len(a.text("notes")) == 20, 5)
    assert a.text("notes") == "b says: hello from a"
    # the JS wait runs inside Node
    assert b.wait_for("doc.getText('notes').length === 20", 2) is True


def test_create_task_and_field_edits_reach_the_other_client(node_pair: tuple[NodeClient, NodeClient]) -> None:
    a, b = node_pair
    tid = a.create_task("Write harness", description="first", status="todo", created_by="u1", due_date="2030-01-02")
    task = wait_until(lambda: b.tasks().get(tid), 5)
    assert task["title"] == "Write harness"
    assert task["description"] == "first"
    assert task["status"] == "todo" and task["created_by"] == "u1" and task["due_date"] == "2030-01-02"
    assert task["completed_at"] is None and task["created_at"].endswith("Z")
    b.insert_text(tid, 5, " draft")
    b.set_field(tid, "status", "done")
    wait_until(lambda: a.tasks()[tid]["description"] == "first draft" and a.tasks()[tid]["status"] == "done", 5)
    a.batch(
        [
            {"cmd": "setField", "task_id": tid, "field": "assignee_id", "value": "u2"},
            {"cmd": "setText", "task_id": tid, "text": "new"},
        ]
    )
    wait_until(lambda: b.tasks()[tid]["assignee_id"] == "u2" and b.tasks()[tid]["description"] == "new", 5)
    # the encoded state is a real Yjs update that pycrdt can load
    doc: Doc[Any] = Doc()
    doc.apply_update(b.encode_state_as_update())
    assert doc.get("tasks", type=Map).to_py() == b.tasks()


def test_awareness_states_are_visible_on_the_other_client(node_pair: tuple[NodeClient, NodeClient]) -> None:
    a, b = node_pair
    a.set_local_state({"user": {"id": "u1", "name": "Ann"}, "cursor": 3})
    states = wait_until(lambda: b.get_states().get(a.client_id), 5)
    assert states == {"user": {"id": "u1", "name": "Ann"}, "cursor": 3}
    # a clean disconnect announces a null state, which removes a from b
    a.disconnect()
    wait_until(lambda: a.client_id not in b.get_states(), 5)


def test_offline_edits_merge_on_reconnect(node_pair: tuple[NodeClient, NodeClient]) -> None:
    a, b = node_pair
    a.text_insert("t", 0, "base")
    wait_until(lambda: b.text("t") == "base", 5)
    b.disconnect()
    a.text_insert("t", 4, "+online")
    b.text_insert("t", 0, "offline+")
    assert b.text("t") == "offline+base"
    b.reconnect()
    b.wait_synced(10)
    wait_until(lambda: a.text("t") == b.text("t") == "offline+base+online", 5)


def test_server_close_code_is_captured(vanilla: VanillaServer) -> None:
    require_node()
    with NodeClient() as c:
        c.connect(f"{vanilla.ws_url}/close", "4401", token="bad")
        close = c.wait_close(0, 5)
        assert close["code"] == 4401
        assert close["reason"] == "test close"
        # 4400-4499 is terminal for y-websocket: it stops reconnecting
        wait_until(lambda: c.status()["terminalClose"] == {"code": 4401, "reason": "test close"}, 5)
        assert c.status()["shouldConnect"] is False
        # handshake headers (Origin, Authorization) reach the server
        c.connect(
            f"{vanilla.ws_url}",
            "echo-headers",
            token="jwt.abc",
            headers={"Origin": "http://evil.test", "Authorization": "Bearer x"},
        )
        assert c.wait_close(0, 5)["reason"] == "http://evil.test|Bearer x|token=jwt.abc"
        # a refusal before the upgrade is seen as 1006 plus the HTTP status
        c.connect(f"{vanilla.ws_url}", "reject", reconnect=False)
        assert c.wait_close(0, 5)["code"] == 1006
        assert c.status()["errors"][0]["status"] == 403


def test_raw_frames_are_written_as_given(node_pair: tuple[NodeClient, NodeClient]) -> None:
    a, b = node_pair
    # a hand-made update frame written raw by a is applied by the server and relayed to b
    src: Doc[Any] = Doc()
    src.get("raw", type=Text).insert(0, "bytes")
    a.send_raw(create_update_message(src.get_update()))
    wait_until(lambda: b.text("raw") == "bytes", 5)
    # vanilla tolerates bad binary frames (it logs and carries on) but drops a text frame's socket
    a.send_raw("not binary")
    assert a.wait_close(0, 5)["code"] in (1003, 1006, 1011)


def test_oversize_frame_close_code(vanilla: VanillaServer, room: str) -> None:
    require_node()
    with NodeClient() as c:
        c.connect(f"{vanilla.ws_url}/sync", room, reconnect=False)
        c.wait_synced(10)
        c.wait_synced(10)
        c.text_insert("big", 0, "x" * 300_000)  # over the server's 256 KiB ws_max_size
        assert c.wait_close(0, 5)["code"] == 1009


def test_python_clients_converge_and_interoperate_with_node(vanilla: VanillaServer, room: str) -> None:
    require_node()
    import asyncio

    async def scenario(node: NodeClient) -> None:
        async with YClient(user_state={"user": {"id": "py"}}) as p1, YClient() as p2:
            await p1.connect(f"{vanilla.ws_url}/sync/{room}?token=x")
            await p1.wait_synced()
            await p2.connect(f"{vanilla.ws_url}/sync/{room}?token=x")
            await p2.wait_synced()
            p1.text("t").insert(0, "py1")
            await p2.wait_for(lambda: str(p2.text("t")) == "py1", 5)
            # a task written by pycrdt is a task for the Node client, and back
            with p2.doc.transaction():
                p2.tasks_map()["t1"] = Map({"id": "t1", "title": "from py", "description": Text("d")})
            await asyncio.to_thread(wait_until, lambda: node.tasks().get("t1", {}).get("description") == "d", 5)
            await asyncio.to_thread(node.insert_text, "t1", 1, "oc")
            await p1.wait_for(lambda: p1.tasks().get("t1", {}).get("description") == "doc", 5)
            # awareness from Python reaches Node
            await asyncio.to_thread(wait_until, lambda: node.get_states().get(p1.awareness.client_id), 5)
            # pycrdt-websocket's own provider syncs the same room
            other: Doc[Any] = Doc()
            async with pycrdt_provider(f"{vanilla.ws_url}/sync/{room}", other):
                assert str(other.get("t", type=Text)) == "py1"
            # offline edit on p2, reconnect, merge
            await p2.close()
            p2.text("t").insert(3, "-offline")
            await p2.connect(f"{vanilla.ws_url}/sync/{room}?token=x")
            await p2.wait_synced()
            await p1.wait_for(lambda: str(p1.text("t")) == "py1-offline", 5)

    with NodeClient() as node:
        node.connect(f"{vanilla.ws_url}/sync", room)
        node.wait_synced(10)
        asyncio.run(scenario(node))


def test_python_client_captures_close_code_and_sends_raw(vanilla: VanillaServer, room: str) -> None:
    import asyncio

    async def scenario() -> None:
        async with YClient() as c:
            await c.connect(f"{vanilla.ws_url}/close/4404")
            assert await c.wait_closed(5) == 4404
            assert c.close_reason == "test close"
            await c.connect(f"{vanilla.ws_url}/echo-headers", origin="http://evil.test", headers={"Authorization": "B"})
            assert await c.wait_closed(5) == 4000
            assert c.close_reason == "http://evil.test|B|"
            await c.connect(f"{vanilla.ws_url}/sync/{room}")
            await c.wait_synced()
            other: Doc[Any] = Doc()
            other.get("t", type=Text).insert(0, "raw")
            await c.send_raw(create_update_message(other.get_update()))
            async with YClient() as d:
                await d.connect(f"{vanilla.ws_url}/sync/{room}")
                await d.wait_synced()
                assert str(d.text("t")) == "raw"
            await c.send_raw("text frame")  # vanilla drops the socket on a text frame
            assert await c.wait_closed(5) in (1003, 1006, 1011)

    asyncio.run(scenario())
