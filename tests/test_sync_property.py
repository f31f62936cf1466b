"""Property: random interleavings of edits, disconnects and reconnects from three clients always converge, and
the persisted state equals the clients' state."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from tests.support.databases import stored_doc
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.users import create_workspace, register

op = st.one_of(
    st.tuples(st.just("text"), st.integers(0, 2), st.integers(0, 50), st.text("abcxyz", min_size=1, max_size=4)),
    st.tuples(st.just("map"), st.integers(0, 2), st.sampled_from("pqrs"), st.integers(0, 9)),
    st.tuples(st.just("drop"), st.integers(0, 2)),
    st.tuples(st.just("join"), st.integers(0, 2)),
    st.tuples(st.just("pause")),
)


def _snapshot(doc: Doc) -> tuple[str, dict[str, object]]:
    return str(doc.get("t", type=Text)), dict(doc.get("m", type=Map).to_py() or {})


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(op, min_size=5, max_size=30))
def test_random_interleavings_converge_and_persist(server: ThreadServer, ops: list[tuple[object, ...]]) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        owner = register(http, "prop")
        wid = create_workspace(http, owner)
    url = sync_url(server.ws_url, wid, owner.token)

    async def run() -> None:
        clients = [YClient() for _ in range(3)]
        for c in clients:
            await c.connect(url)
            await c.wait_synced()
        for step in ops:
            kind = step[0]
            c = clients[int(step[1])] if len(step) > 1 else clients[0]  # type: ignore[call-overload]
            if kind == "text":
                t = c.text("t")
                t.insert(min(int(step[2]), len(str(t).encode())), str(step[3]))  # type: ignore[call-overload]
            elif kind == "map":
                c.map("m")[str(step[2])] = step[3]
            elif kind == "drop" and c.connected:
                await c.abort()
            elif kind == "join" and not c.connected:
                await c.connect(url)
                await c.wait_synced()
            else:
                await asyncio.sleep(0.01)
        for c in clients:
            if not c.connected:
                await c.connect(url)
                await c.wait_synced()
        await clients[0].wait_for(
            lambda: _snapshot(clients[0].doc) == _snapshot(clients[1].doc) == _snapshot(clients[2].doc), timeout=15
        )
        await asyncio.sleep(0.1)
        doc = await stored_doc(server.settings.resolved_database_url(), wid)
        assert _snapshot(doc) == _snapshot(clients[0].doc)
        for c in clients:
            await c.close()

    asyncio.run(run())


@given(st.binary(max_size=70_000))
def test_sync_step2_frames_like_pycrdt(update: bytes) -> None:
    """Plait's one-copy step 2 encoder produces pycrdt's bytes exactly."""
    from pycrdt._sync import create_sync_step2_message

    from sync_server.protocol import sync_step2

    assert sync_step2(update) == create_sync_step2_message(update)
