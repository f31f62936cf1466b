"""A client reconnecting after its node stopped: the edits it sent that the old node never read reach the new
node only in the client's sync step 2 (its answer to the server's step 1), and what it edits meanwhile depends on
them. Those edits wait for the step 2 (bounded) instead of closing the socket with 1003 over and over while its
user types (tests/test_rollout.py saw a dozen such closes per restart under a write storm). An update whose
dependencies the step 2 does not bring is still refused, and nothing of it is kept (issue 21, item 3).

Driven with a raw WebSocket so that the order of the frames is the test's: a y-websocket client sends its step 2
as soon as it reads the server's step 1, and its new edits as soon as they are made."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Map, create_update_message
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sync_server.connection import HELD_MAX_BYTES
from sync_server.protocol import EMPTY_UPDATE, MSG_SYNC, SYNC_STEP1, sync_step2
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.users import workspace_with

pytestmark = pytest.mark.db_agnostic


def _edits(*values: str) -> list[bytes]:
    """One client's successive updates: each depends on the one before (same client, next clock)."""
    doc: Doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda e: updates.append(e.update))
    tasks = doc.get("t", type=Map)
    for i, value in enumerate(values):
        tasks[f"k{i}"] = value
    return updates


@asynccontextmanager
async def _raw(srv: ThreadServer, wid: str, token: str) -> AsyncIterator[ClientConnection]:
    """A socket that has read the server's step 1 and sent nothing yet."""
    async with connect(sync_url(srv.ws_url, wid, token), max_size=None) as ws:
        while True:
            frame = await ws.recv()
            assert isinstance(frame, bytes)
            if frame[:2] == bytes((MSG_SYNC, SYNC_STEP1)):
                break
        yield ws


async def _closed_with(ws: ClientConnection) -> int | None:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


async def _reader(srv: ThreadServer, wid: str, token: str) -> YClient:
    c = YClient()
    await c.connect(sync_url(srv.ws_url, wid, token))
    await c.wait_synced()
    return c


@pytest.fixture
def room(make_server: Any) -> tuple[ThreadServer, str, str]:
    srv: ThreadServer = make_server()
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
    return srv, wid, owner.token


async def test_edits_made_before_the_step_2_wait_for_it(room: tuple[ThreadServer, str, str]) -> None:
    srv, wid, token = room
    lost, after, later = _edits("sent to the stopped node", "made after the reconnect", "and after the step 2")
    async with _raw(srv, wid, token) as ws:
        await ws.send(create_update_message(after))  # depends on `lost`, which the server never read
        await ws.send(sync_step2(lost))  # the step 2 brings it (here only it: the held edit is applied after)
        await ws.send(create_update_message(later))
        reader = await _reader(srv, wid, token)
        await reader.wait_for(lambda: len(reader.map("t")) == 3)
        assert reader.map("t").to_py() == {
            "k0": "sent to the stopped node",
            "k1": "made after the reconnect",
            "k2": "and after the step 2",
        }
        await ws.ping()  # still open
        await reader.close()


async def test_what_the_step_2_does_not_bring_is_refused(room: tuple[ThreadServer, str, str]) -> None:
    srv, wid, token = room
    _, depends = _edits("never sent", "depends on it")
    async with _raw(srv, wid, token) as ws:
        await ws.send(create_update_message(depends))
        await ws.send(sync_step2(EMPTY_UPDATE))  # an empty step 2: the client has nothing more
        assert await _closed_with(ws) == 1003
    reader = await _reader(srv, wid, token)
    assert not reader.map("t").to_py(), "nothing of the refused update was kept"
    await reader.close()


async def test_the_hold_is_bounded(room: tuple[ThreadServer, str, str]) -> None:
    srv, wid, token = room
    edits = _edits("root", *(f"{i}" + "x" * 16_000 for i in range(8)))
    assert sum(map(len, edits[1:])) > HELD_MAX_BYTES
    async with _raw(srv, wid, token) as ws:
        for update in edits[1:]:  # none can be applied without the first; more than the hold takes
            await ws.send(create_update_message(update))
        assert await _closed_with(ws) == 1003


async def test_after_the_step_2_nothing_is_held(room: tuple[ThreadServer, str, str]) -> None:
    srv, wid, token = room
    _, depends = _edits("never sent", "depends on it")
    async with _raw(srv, wid, token) as ws:
        await ws.send(sync_step2(EMPTY_UPDATE))
        await ws.send(create_update_message(depends))
        assert await _closed_with(ws) == 1003
