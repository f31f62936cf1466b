"""Two real server processes sharing PostgreSQL and a real Redis: convergence across nodes, REST writes,
presence, awareness, membership changes, kill -9 of a node and a Redis restart mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pycrdt import Awareness, Doc, Map, read_message
from websockets.asyncio.client import connect as ws_connect

from persistence.db import Database
from persistence.doclog import PendingUpdate, open_document_log
from tests.support.cluster import Cluster, check_still_whole, two_nodes
from tests.support.databases import stored_document
from tests.support.metrics import async_wait_moved, delta, scrape
from tests.support.pyclient import YClient, async_wait_until, sync_url
from tests.support.server import ProcessServer
from tests.support.users import Account, add_member, create_workspace, register

pytestmark = pytest.mark.redis


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Two nodes on one PostgreSQL and one Redis: the session's shared pair, or a pair of the test's own when it
    is marked ``own_cluster`` (it kills a node or stops Redis) or ``@pytest.mark.node_env(NAME=value, ...)``
    (settings of its own)."""
    marker = request.node.get_closest_marker("node_env")
    if marker is not None or request.node.get_closest_marker("own_cluster") is not None:
        with two_nodes(tmp_path, dict(marker.kwargs) if marker else None) as own:
            yield own
        return
    shared: Cluster = request.getfixturevalue("shared_cluster")
    yield shared
    check_still_whole(shared)


def _setup(c: Cluster) -> tuple[str, Account, Account]:
    with httpx.Client(base_url=c.a.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        editor = register(http, "editor")
        add_member(http, wid, owner, editor, "editor")
    return wid, owner, editor


async def _join(server: ProcessServer, wid: str, acct: Account, **kw: object) -> YClient:
    c = YClient(**kw)  # type: ignore[arg-type]
    await c.connect(sync_url(server.ws_url, wid, acct.token))
    await c.wait_synced()
    return c


async def test_clients_on_two_nodes_converge_with_awareness_and_presence(cluster: Cluster) -> None:
    wid, owner, editor = _setup(cluster)
    on_a = await _join(cluster.a, wid, owner, user_state={"user": {"id": "spoof", "name": "Spoofed"}})
    on_b = await _join(cluster.b, wid, editor)
    await asyncio.sleep(0.3)  # both rooms loaded and subscribed
    on_a.text("t").insert(0, "from A ")
    on_b.text("t").insert(0, "from B ")
    for i in range(30):
        on_a.map("m")[f"a{i}"] = i
        on_b.map("m")[f"b{i}"] = i
    await on_a.wait_for(lambda: str(on_a.text("t")) == str(on_b.text("t")) and len(on_a.map("m").to_py() or {}) == 60)
    await on_b.wait_for(lambda: len(on_b.map("m").to_py() or {}) == 60)
    # awareness crosses nodes, with the identity enforced by the accepting node
    on_a.awareness.set_local_state({"user": {"id": "spoof", "name": "Spoofed"}, "cursor": 1})
    await on_b.wait_for(lambda: (on_b.awareness.states.get(on_a.awareness.client_id) or {}).get("cursor") == 1)
    assert on_b.awareness.states[on_a.awareness.client_id]["user"] == {"id": owner.id, "name": owner.display_name}
    # presence lists users of both nodes, from either node
    with httpx.Client(base_url=cluster.b.base_url) as http:

        def present() -> set[str]:
            r = http.get(f"/api/workspaces/{wid}/presence", headers=editor.headers)
            assert r.status_code == 200, r.text
            return {p["user_id"] for p in r.json()}

        deadline = time.monotonic() + 5
        while present() != {owner.id, editor.id} and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert present() == {owner.id, editor.id}
        # an abrupt close removes the awareness state on the other node and drops out of presence
        await on_a.abort()
        await on_b.wait_for(lambda: on_a.awareness.client_id not in on_b.awareness.states, timeout=5)
        deadline = time.monotonic() + 5
        while owner.id in present() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert present() == {editor.id}
    await on_b.close()


async def test_rest_write_and_member_removal_reach_the_other_node(cluster: Cluster) -> None:
    wid, owner, editor = _setup(cluster)
    on_b = await _join(cluster.b, wid, editor)
    await asyncio.sleep(0.3)
    with httpx.Client(base_url=cluster.a.base_url) as http:
        r = http.post(f"/api/workspaces/{wid}/tasks", json={"title": "from REST on A"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        await on_b.wait_for(lambda: (on_b.tasks().get(tid) or {}).get("title") == "from REST on A")
        r = http.delete(f"/api/workspaces/{wid}/members/{editor.id}", headers=owner.headers)
        assert r.status_code in (200, 204), r.text
    assert await on_b.wait_closed() == 4403


@pytest.mark.own_cluster
async def test_kill_9_of_one_node_loses_nothing_any_peer_saw(cluster: Cluster) -> None:
    wid, owner, editor = _setup(cluster)
    writers = [await _join(cluster.a, wid, owner), await _join(cluster.b, wid, editor)]
    watcher = await _join(cluster.b, wid, editor)
    seen: set[str] = set()
    watched = watcher.map("m")  # keep the wrapper alive: pycrdt ties the subscription to it
    watched.observe(lambda ev: seen.update(k for k, v in ev.keys.items() if v["action"] == "add"))

    async def storm(n: int, c: YClient) -> None:
        i = 0
        while c.connected and i < 2000:
            c.map("m")[f"w{n}-{i}"] = i
            i += 1
            await asyncio.sleep(0.003)

    tasks = [asyncio.create_task(storm(n, c)) for n, c in enumerate(writers)]
    await asyncio.sleep(1.0)
    cluster.a.kill()
    await asyncio.sleep(0.5)
    # the writer of node A reconnects to node B (what a load balancer does); its unsent edits are re-sent
    orphan = writers[0]
    await orphan.abort()
    await orphan.connect(sync_url(cluster.b.ws_url, wid, owner.token))
    await orphan.wait_synced()
    tasks[0] = asyncio.create_task(storm(2, orphan))
    await asyncio.sleep(0.5)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    union: set[str] = set()
    for c in writers:
        union |= set((c.map("m").to_py() or {}).keys())
    fresh = await _join(cluster.b, wid, owner)
    # every update a peer saw survived the crash; with the writers still connected everyone converges
    assert seen <= set((fresh.map("m").to_py() or {}).keys())
    assert len(seen) > 100
    await fresh.wait_for(lambda: set((fresh.map("m").to_py() or {}).keys()) == union, timeout=15)
    for c in [*writers, fresh, watcher]:
        await c.close()


@pytest.mark.own_cluster
async def test_redis_restart_mid_stream_converges_from_the_database(cluster: Cluster) -> None:
    wid, owner, editor = _setup(cluster)
    on_a = await _join(cluster.a, wid, owner)
    on_b = await _join(cluster.b, wid, editor)
    await asyncio.sleep(0.3)
    a0, b0 = scrape(cluster.a.base_url), scrape(cluster.b.base_url)
    for i in range(20):
        on_a.map("m")[f"before{i}"] = i
    await on_b.wait_for(lambda: len(on_b.map("m").to_py() or {}) == 20)
    # node B applied node A's updates from Redis (its lag histogram counts each one)
    assert delta(b0, scrape(cluster.b.base_url), "plait_redis_fanout_lag_seconds_count") >= 1
    cluster.redis.stop()
    for i in range(20):
        on_a.map("m")[f"during{i}"] = i  # fan-out is down: only the database and node A have these
        on_b.map("m")[f"b-during{i}"] = i
    # longer than the publish client's retries (two, backing off to 0.5 s): those publishes fail for certain
    await asyncio.sleep(2.0)
    cluster.redis.start()
    for i in range(5):
        on_a.map("m")[f"after{i}"] = i
    await on_b.wait_for(lambda: len(on_b.map("m").to_py() or {}) == 65, timeout=20)
    await on_a.wait_for(lambda: len(on_a.map("m").to_py() or {}) == 65, timeout=20)
    # both nodes failed to publish during the outage and caught their room up from the database after it
    for node, before in ((cluster.a, a0), (cluster.b, b0)):
        after = await async_wait_moved(node.base_url, before, "plait_redis_gap_repairs_total")
        assert delta(before, after, "plait_redis_publish_failures_total") >= 1
    await on_a.close()
    await on_b.close()


async def test_notification_created_once_and_streamed_on_the_other_node(cluster: Cluster) -> None:
    from tests.support.sse import SseReader

    wid, owner, editor = _setup(cluster)
    on_a = await _join(cluster.a, wid, owner)
    on_b = await _join(cluster.b, wid, editor)  # node B has the room loaded too
    await asyncio.sleep(0.3)
    with SseReader(f"{cluster.b.base_url}/api/notifications/stream?token={editor.token}") as sse:
        sse.wait_open()
        tid = str(uuid.uuid4())
        from pycrdt import Map, Text

        now = "2026-11-25T00:00:00.000Z"
        on_a.tasks_map()[tid] = Map(
            {
                "id": tid,
                "title": "cross-node",
                "description": Text(""),
                "status": "todo",
                "assignee_id": editor.id,
                "due_date": None,
                "created_by": owner.id,
                "created_at": now,
                "updated_at": now,
                "completed_at": None,
            }
        )
        event = await asyncio.to_thread(sse.wait_event, lambda e: e.event == "notification", 10.0)
        assert event.json()["type"] == "task_assigned"
    await asyncio.sleep(0.5)
    with httpx.Client(base_url=cluster.b.base_url) as http:
        items = http.get("/api/notifications", headers=editor.headers).json()["items"]
    assert [n["type"] for n in items] == ["task_assigned"], "exactly one notification, though two nodes hold the room"
    await on_a.close()
    await on_b.close()


async def test_a_newcomer_on_another_node_sees_every_present_state_at_once(cluster: Cluster) -> None:
    """Node B loads the room for the newcomer and asks the other nodes for their clients' states: the newcomer
    sees them without waiting for their 15 s renewal (this client never renews), and a query-awareness (type
    3) is answered with every node's states."""
    wid, owner, editor = _setup(cluster)
    on_a = await _join(cluster.a, wid, owner, user_state={"cursor": 7})
    await on_a.wait_for(lambda: (on_a.awareness.states.get(on_a.awareness.client_id) or {}).get("cursor") == 7)
    on_b = await _join(cluster.b, wid, editor, user_state={"cursor": 9})
    await on_b.wait_for(lambda: on_a.awareness.client_id in on_b.awareness.states, timeout=3)
    assert on_b.awareness.states[on_a.awareness.client_id]["user"]["id"] == owner.id
    # a socket that asks (type 3) is answered with both nodes' states
    async with ws_connect(sync_url(cluster.b.ws_url, wid, editor.token), proxy=None) as raw:
        heard = Awareness(Doc())
        with contextlib.suppress(TimeoutError):
            while True:  # what the server sends on joining (step 1, the states it knows) is not counted
                await asyncio.wait_for(raw.recv(), 0.5)
        await raw.send(bytes([3]))
        want = {on_a.awareness.client_id, on_b.awareness.client_id}
        while not want <= set(heard.states):
            message = await asyncio.wait_for(raw.recv(), 3)
            if isinstance(message, bytes) and message[0] == 1:
                heard.apply_awareness_update(read_message(message[1:]), "remote")
    # the owner leaves node A: the newcomer's view drops the state without waiting for any timeout
    await on_a.close()
    await on_b.wait_for(lambda: on_a.awareness.client_id not in on_b.awareness.states, timeout=5)
    await on_b.close()


@pytest.mark.own_cluster
async def test_a_state_whose_removal_was_lost_with_redis_goes_after_the_reconnect(cluster: Cluster) -> None:
    """A client leaves node A while Redis is down: its removal never reaches node B. After the reconnect B
    asks again, nobody answers for that client, and B drops the state (not 45 s later, at the expiry)."""
    wid, owner, editor = _setup(cluster)
    on_a = await _join(cluster.a, wid, owner, user_state={"cursor": 1})
    stays = await _join(cluster.a, wid, owner, user_state={"cursor": 2})
    on_b = await _join(cluster.b, wid, editor)
    both = {on_a.awareness.client_id, stays.awareness.client_id}
    await on_b.wait_for(lambda: both <= set(on_b.awareness.states), timeout=5)
    cluster.redis.stop()
    await on_a.close()
    await asyncio.sleep(0.5)
    cluster.redis.start()
    await on_b.wait_for(lambda: on_a.awareness.client_id not in on_b.awareness.states, timeout=15)
    assert stays.awareness.client_id in on_b.awareness.states, "a state its node still answers for stays"
    await stays.close()
    await on_b.close()


async def _orphan_commit(cluster: Cluster, wid: str, key: str) -> None:
    """An update committed by a node that died before publishing it: in the log, never on Redis."""
    doc: Doc = Doc()
    doc.get("m", type=Map)[key] = True
    db = Database(cluster.env["PLAIT_DATABASE_URL"])
    store = open_document_log(db)
    try:
        await store.append_batch([PendingUpdate(wid, doc.get_update(), None)])
    finally:
        await store.close()
        await db.dispose()


@pytest.mark.parametrize("followed", [True, False], ids=["hole-then-later-updates", "head-ahead-quiet"])
async def test_an_update_missing_from_the_fan_out_is_repaired_from_the_database(
    cluster: Cluster, followed: bool
) -> None:
    """A sequence hole (a later update arrives, an earlier one never will) is caught up from the database; so is
    a room whose log head in the database is ahead of memory with nothing arriving after it (the periodic head
    check). Not through a Redis reconnect: Redis stays up."""
    wid, owner, editor = _setup(cluster)
    on_a = await _join(cluster.a, wid, owner)
    on_b = await _join(cluster.b, wid, editor)
    on_a.map("m")["first"] = 1
    await on_b.wait_for(lambda: on_b.map("m").get("first") == 1)
    before = [(n, scrape(n.base_url)) for n in (cluster.a, cluster.b)]
    await _orphan_commit(cluster, wid, "orphan")
    if followed:
        on_a.map("m")["later"] = 1  # its seq arrives at node B with the orphan's missing before it
        await on_b.wait_for(lambda: on_b.map("m").get("later") == 1)
    for c in (on_a, on_b):
        await c.wait_for(lambda c=c: c.map("m").get("orphan") is True, timeout=15)
    for node, samples in before:
        await async_wait_moved(node.base_url, samples, "plait_redis_gap_repairs_total")
    await on_a.close()
    await on_b.close()


@pytest.mark.node_env(PLAIT_COMPACTION_MAX_UPDATES="5")
async def test_two_nodes_compacting_one_workspace_lose_nothing(cluster: Cluster) -> None:
    """Both nodes fold the log of the same document while writers on both keep appending: each snapshot is of
    its node's memory, one not newer than the stored one is dropped, and the stored document is never missing
    an update (docs/architecture.md, Storage)."""
    wid, owner, editor = _setup(cluster)
    on_a = await _join(cluster.a, wid, owner)
    on_b = await _join(cluster.b, wid, editor)
    expected: dict[str, int] = {}

    async def write(writers: list[tuple[str, YClient]], n: int) -> None:
        for i in range(n):
            for name, c in writers:
                c.map("m")[f"{name}{len(expected)}"] = i
                expected[f"{name}{len(expected)}"] = i
            if i % 10 == 0:
                await asyncio.sleep(0.01)
        for c in (on_a, on_b):
            await c.wait_for(lambda c=c: c.map("m").to_py() == expected, timeout=30)

    # each node in turn (a node's snapshot that is not newer than the stored one is dropped, and not counted),
    # then both at once
    for node, writers in ((cluster.a, [("a", on_a)]), (cluster.b, [("b", on_b)])):
        before = scrape(node.base_url)
        await write(writers, 120)  # past 20 x PLAIT_COMPACTION_MAX_UPDATES rows of this node's own tail
        await async_wait_moved(node.base_url, before, "plait_compactions_total")
    before = [(n, scrape(n.base_url)) for n in (cluster.a, cluster.b)]
    await write([("a", on_a), ("b", on_b)], 150)
    await async_wait_until(lambda: sum(delta(b, scrape(n.base_url), "plait_compactions_total") for n, b in before))
    db = Database(cluster.env["PLAIT_DATABASE_URL"])
    try:
        stored = await stored_document(db, wid)
    finally:
        await db.dispose()
    doc: Doc = Doc()
    for chunk in stored.chunks():
        doc.apply_update(chunk)
    assert stored.snapshot is not None
    assert doc.get("m", type=Map).to_py() == expected, "the stored document lost an update"
    await on_a.close()
    await on_b.close()


@pytest.mark.own_cluster
async def test_a_killed_nodes_awareness_and_presence_expire_on_the_other_node(cluster: Cluster) -> None:
    """kill -9 sends no awareness removal: the survivor drops the dead node's states once its heartbeat key
    expires (PLAIT_PRESENCE_TTL_SECONDS=5 here), tells its own clients, and presence stops listing them."""
    wid, owner, editor = _setup(cluster)
    on_a = await _join(cluster.a, wid, owner)
    on_b = await _join(cluster.b, wid, editor)
    on_a.awareness.set_local_state({"cursor": 7})
    await on_b.wait_for(lambda: (on_b.awareness.states.get(on_a.awareness.client_id) or {}).get("cursor") == 7)
    with httpx.Client(base_url=cluster.b.base_url) as http:

        def present() -> set[str]:
            r = http.get(f"/api/workspaces/{wid}/presence", headers=editor.headers)
            assert r.status_code == 200, r.text
            return {p["user_id"] for p in r.json()}

        await async_wait_until(lambda: present() == {owner.id, editor.id}, timeout=10, interval=0.2)
        cluster.a.kill()
        await on_b.wait_for(lambda: on_a.awareness.client_id not in on_b.awareness.states, timeout=25)
        await async_wait_until(lambda: present() == {editor.id}, timeout=25, interval=0.2)
        assert on_b.connected  # the survivor's own clients are not disturbed
    await on_a.abort()
    await on_b.close()


async def test_a_member_change_on_one_node_reaches_streams_and_sockets_on_the_other(cluster: Cluster) -> None:
    """The `members` stream event and the 4423 close of a writer made viewer cross nodes (the hub's and the sync
    service's node messages)."""
    from tests.support.sse import SseReader

    wid, owner, editor = _setup(cluster)
    on_b = await _join(cluster.b, wid, editor)
    with SseReader(f"{cluster.b.base_url}/api/notifications/stream?token={editor.token}") as sse:
        sse.wait_open()
        await async_wait_until(lambda: "connected" in sse.comments)  # subscribed on node B: it then says so
        with httpx.Client(base_url=cluster.a.base_url) as http:
            r = http.patch(f"/api/workspaces/{wid}/members/{editor.id}", json={"role": "viewer"}, headers=owner.headers)
            assert r.status_code == 200, r.text
        event = await asyncio.to_thread(sse.wait_event, lambda e: e.event == "members", 10.0)
        assert event.json() == {"workspace_id": wid}
    assert await on_b.wait_closed() == 4423


async def test_sigusr1_logs_where_each_task_of_a_node_waits_and_the_node_goes_on(cluster: Cluster) -> None:
    """The diagnosis docs/operations.md gives for a node that does not stop: kill -USR1 logs its tasks."""
    assert cluster.a.proc is not None
    cluster.a.proc.send_signal(signal.SIGUSR1)
    await async_wait_until(lambda: "task dump (SIGUSR1)" in cluster.a.log(), timeout=10)
    dump = cluster.a.log().split("task dump (SIGUSR1)", 1)[1]
    assert "task plait-group-commit:" in dump
    assert "sync_server/writer.py" in dump  # the writer's chain of awaits is followed, not only its task
    with httpx.Client(base_url=cluster.a.base_url) as http:
        assert http.get("/readyz").status_code == 200
