"""Per-workspace fan-out channels on two real nodes and a real Redis, sharded (SSUBSCRIBE) and plain pub/sub: a
node hears only the workspaces it hosts, subscribes when it loads a room and leaves when it unloads it, and the
node-wide messages (membership changes) still reach every node."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from persistence.migrate import upgrade
from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.metrics import async_wait_moved, delta, scrape, value
from tests.support.node import wait_until
from tests.support.pyclient import YClient, async_wait_until, sync_url
from tests.support.redisproc import RedisProcess
from tests.support.server import ProcessServer, free_port, node_env, node_pair
from tests.support.users import Account, add_member, create_workspace, register

pytestmark = pytest.mark.redis

RECEIVED = "plait_fanout_messages_received_total"


@dataclass
class Nodes:
    a: ProcessServer
    b: ProcessServer
    redis: RedisProcess
    ns: str
    sharded: bool

    def subscribers(self, wid: str) -> int:
        """How many connections Redis has subscribed to the workspace's channel (one per hosting node)."""
        r = redis.Redis(port=self.redis.port)
        ch = f"{self.ns}:ws:{wid}"
        counts = r.pubsub_shardnumsub(ch) if self.sharded else r.pubsub_numsub(ch)
        return int(counts[0][1])


@pytest.fixture(scope="module", params=["sharded", "plain"])
def pair(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Nodes]:
    """Two nodes per channel kind, shared by the module's tests (each uses workspaces of its own)."""
    tmp_path = tmp_path_factory.mktemp(f"fanout-{request.param}")
    url = fresh_database("postgres", tmp_path)
    upgrade(url)
    rds = RedisProcess(free_port()).start()
    ns = f"t{uuid.uuid4().hex[:8]}"
    env = node_env(
        url,
        rds.url,
        tmp_path,
        PLAIT_REDIS_NAMESPACE=ns,
        PLAIT_REDIS_PUBSUB=request.param,
        PLAIT_ROOM_IDLE_SECONDS="1",
    )
    try:
        with node_pair(env, tmp_path) as (a, b):
            yield Nodes(a, b, rds, ns, request.param == "sharded")
    finally:
        rds.stop()
        drop_postgres_database(url)


@pytest.fixture
def nodes(pair: Nodes) -> Iterator[Nodes]:
    """The pair as a fresh one would be: no room loaded on either node (the last test's rooms idle out within
    PLAIT_ROOM_IDLE_SECONDS), so channel gauges and counters move only for this test's workspaces."""

    def idle() -> bool:
        return all(value(scrape(n.base_url), "plait_fanout_workspace_channels") == 0 for n in (pair.a, pair.b))

    wait_until(idle, 20, message="no room loaded on either node")
    yield pair
    for node in (pair.a, pair.b):
        assert node.proc is not None and node.proc.poll() is None, "a test stopped a shared node"
        node.check_new_log()


async def _join(server: ProcessServer, wid: str, acct: Account) -> YClient:
    c = YClient()
    await c.connect(sync_url(server.ws_url, wid, acct.token))
    await c.wait_synced()
    return c


async def test_a_node_hears_only_the_workspaces_it_hosts(nodes: Nodes) -> None:
    with httpx.Client(base_url=nodes.a.base_url) as http:
        owner = register(http, "owner")
        only_a = create_workspace(http, owner, "only on A")
        shared = create_workspace(http, owner, "on both")
    writer = await _join(nodes.a, only_a, owner)
    on_a = await _join(nodes.a, shared, owner)
    on_b = await _join(nodes.b, shared, owner)
    await async_wait_until(lambda: nodes.subscribers(only_a) == 1 and nodes.subscribers(shared) == 2)
    b0 = scrape(nodes.b.base_url)

    for i in range(30):
        writer.map("m")[f"k{i}"] = i
    await writer.wait_for(lambda: len(writer.map("m").to_py() or {}) == 30)
    # A node-wide message published after every one of those: node B's subscriber hears it after anything
    # published before it, so once it arrived, any update of `only_a` would have been counted already.
    a0 = scrape(nodes.a.base_url)
    with httpx.Client(base_url=nodes.a.base_url) as http:
        add_member(http, only_a, owner, register(http, "late"), "editor")
    await async_wait_moved(nodes.b.base_url, b0, RECEIVED, channel="node")
    assert delta(a0, scrape(nodes.a.base_url), "plait_fanout_messages_published_total") >= 1
    assert delta(b0, scrape(nodes.b.base_url), RECEIVED, channel="workspace") == 0, "B hosts no room of only_a"

    # the shared workspace still crosses nodes, and node B counts what it hears
    on_a.map("m")["x"] = 1
    await on_b.wait_for(lambda: on_b.map("m").get("x") == 1)
    assert delta(b0, scrape(nodes.b.base_url), RECEIVED, channel="workspace") >= 1
    for c in (writer, on_a, on_b):
        await c.close()


async def test_a_node_subscribes_on_load_and_leaves_on_unload(nodes: Nodes) -> None:
    with httpx.Client(base_url=nodes.a.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
    on_a = await _join(nodes.a, wid, owner)
    await async_wait_until(lambda: nodes.subscribers(wid) == 1)
    on_a.map("m")["before"] = 1
    # B loads the room: it subscribes (before reading the document) and gets what A writes from then on
    on_b = await _join(nodes.b, wid, owner)
    assert nodes.subscribers(wid) == 2, "the subscription is in place before the room answers its first client"
    assert value(scrape(nodes.b.base_url), "plait_fanout_workspace_channels") == 1
    await on_b.wait_for(lambda: on_b.map("m").get("before") == 1)
    on_a.map("m")["after"] = 1
    await on_b.wait_for(lambda: on_b.map("m").get("after") == 1)
    # B's last socket goes, its room idles out (PLAIT_ROOM_IDLE_SECONDS=1) and it leaves the channel
    await on_b.close()
    await async_wait_until(lambda: nodes.subscribers(wid) == 1, timeout=20)
    assert value(scrape(nodes.b.base_url), "plait_fanout_workspace_channels") == 0
    # and hears no more of it
    b0 = scrape(nodes.b.base_url)
    for i in range(10):
        on_a.map("m")[f"k{i}"] = i
    with httpx.Client(base_url=nodes.a.base_url) as http:
        add_member(http, wid, owner, register(http, "late"), "editor")
    await async_wait_moved(nodes.b.base_url, b0, RECEIVED, channel="node")
    assert delta(b0, scrape(nodes.b.base_url), RECEIVED, channel="workspace") == 0
    # it comes back: subscribed again, and nothing written meanwhile is missing
    again = await _join(nodes.b, wid, owner)
    assert nodes.subscribers(wid) == 2
    await again.wait_for(lambda: len(again.map("m").to_py() or {}) == 12)
    on_a.map("m")["last"] = 1
    await again.wait_for(lambda: again.map("m").get("last") == 1)
    await again.close()
    await on_a.close()


async def test_a_room_loaded_mid_stream_misses_nothing(nodes: Nodes) -> None:
    """B loads the room while A writes without pause: the channel is subscribed before B reads the document,
    so every update committed after the read reaches B (over Redis, or held while the room loads)."""
    with httpx.Client(base_url=nodes.a.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
    on_a = await _join(nodes.a, wid, owner)
    stop = asyncio.Event()

    async def stream() -> int:
        i = 0
        while not stop.is_set():
            on_a.map("m")[f"k{i}"] = i
            i += 1
            await asyncio.sleep(0.005)
        return i

    task = asyncio.create_task(stream())
    await asyncio.sleep(0.2)
    on_b = await _join(nodes.b, wid, owner)
    await asyncio.sleep(0.3)
    stop.set()
    n = await task
    await on_b.wait_for(lambda: len(on_b.map("m").to_py() or {}) == n, timeout=15)
    await on_a.close()
    await on_b.close()
