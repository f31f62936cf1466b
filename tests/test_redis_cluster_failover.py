"""Two Plait nodes on a 3-master Redis Cluster with one replica per master, while npm y-websocket clients on
both nodes write: the master serving a workspace's channel is killed (its replica is promoted), and a live
workspace's channel slot is moved to another master (as ``redis-cli --cluster reshard`` does). Each time the
nodes' sharded subscribers follow the slot to its new master, nothing is lost, and updates cross between the
nodes through Redis again (not only through the database's catch-up)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from persistence.migrate import upgrade
from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.metrics import scrape, wait_moved
from tests.support.node import NodeClient, require_node, start_clients, wait_until
from tests.support.rediscluster import RedisClusterProcesses
from tests.support.server import ProcessServer, node_env, node_pair
from tests.support.users import Account, create_workspace, register

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.node]

LAG = "plait_redis_fanout_lag_seconds_count"  # moves on a node only for another node's update heard on Redis
CAUGHT_UP = "plait_redis_gap_repairs_total"  # a resubscribed node catches its rooms up from the database


@dataclass
class Plait:
    a: ProcessServer
    b: ProcessServer
    ns: str
    owner: Account


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    rc = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster")).start(replicas=1, node_timeout_ms=1000)
    try:
        yield rc
    finally:
        rc.stop()


@pytest.fixture(scope="module")
def plait(tmp_path_factory: pytest.TempPathFactory, cluster: RedisClusterProcesses) -> Iterator[Plait]:
    require_node()
    tmp = tmp_path_factory.mktemp("plait")
    url = fresh_database("postgres", tmp)
    upgrade(url)
    ns = f"t{uuid.uuid4().hex[:8]}"
    env = node_env(url, cluster.url.replace("redis://", "redis+cluster://"), tmp, PLAIT_REDIS_NAMESPACE=ns)
    try:
        with node_pair(env, tmp) as (a, b):
            with httpx.Client(base_url=a.base_url) as http:
                owner = register(http, "owner")
            yield Plait(a, b, ns, owner)
    finally:
        a.stop()
        b.stop()
        drop_postgres_database(url)


@pytest.fixture
def clients() -> Iterator[list[NodeClient]]:
    cs = start_clients(3)
    try:
        yield cs
    finally:
        for c in cs:
            c.close()


class Writers:
    """One thread per client setting ``m[prefix + i] = i`` until stopped: a live stream of updates."""

    def __init__(self, **clients: NodeClient) -> None:
        self.counts = dict.fromkeys(clients, 0)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(p, c), daemon=True) for p, c in clients.items()]
        for t in self._threads:
            t.start()

    def _write(self, prefix: str, client: NodeClient) -> None:
        while not self._stop.is_set():
            client.map_set("m", f"{prefix}{self.counts[prefix]}", self.counts[prefix])
            self.counts[prefix] += 1
            time.sleep(0.02)

    def wait_more(self, n: int) -> None:
        """Until every writer wrote ``n`` more."""
        start = dict(self.counts)
        wait_until(lambda: all(self.counts[p] >= start[p] + n for p in start), timeout=20, message="writers stuck")

    def stop(self) -> int:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        return sum(self.counts.values())


def _open(plait: Plait, clients: list[NodeClient]) -> tuple[str, NodeClient, NodeClient]:
    with httpx.Client(base_url=plait.a.base_url) as http:
        wid = create_workspace(http, plait.owner)
    on_a, on_b = clients[0], clients[1]
    on_a.connect(f"{plait.a.ws_url}/sync", wid, plait.owner.token)
    on_b.connect(f"{plait.b.ws_url}/sync", wid, plait.owner.token)
    on_a.wait_synced()
    on_b.wait_synced()
    return wid, on_a, on_b


def _subscribers(cluster: RedisClusterProcesses, port: int, channel: str) -> int:
    return int(cluster.admin(port).pubsub_shardnumsub(channel)[0][1])


def _converge(on_a: NodeClient, on_b: NodeClient, total: int) -> None:
    wait_until(
        lambda: len(on_a.map("m")) == total and on_a.map("m") == on_b.map("m"),
        timeout=30,
        message=f"both clients hold all {total} entries",
    )


def _crosses_on_redis(src: NodeClient, dst_server: ProcessServer, dst: NodeClient, tag: str, n: int = 5) -> None:
    """``n`` updates written on one node reach the other node's client, and that node heard each on Redis."""
    before = scrape(dst_server.base_url)
    for i in range(n):
        src.map_set("m", f"{tag}{i}", i)
    wait_until(lambda: all(f"{tag}{i}" in dst.map("m") for i in range(n)), message=f"{tag} crossed")
    wait_moved(dst_server.base_url, before, LAG, at_least=n)


def _presence_connections(server: ProcessServer, wid: str, owner: Account) -> int:
    r = httpx.get(f"{server.base_url}/api/workspaces/{wid}/presence", headers=owner.headers, timeout=10)
    assert r.status_code == 200, r.text
    return sum(e["connections"] for e in r.json())


def test_the_master_of_a_live_channel_killed_mid_stream(
    cluster: RedisClusterProcesses, plait: Plait, clients: list[NodeClient]
) -> None:
    wid, on_a, on_b = _open(plait, clients)
    channel = f"{plait.ns}:ws:{wid}"
    slot = cluster.keyslot(channel)
    dead = cluster.owner(slot)
    wait_until(lambda: _subscribers(cluster, dead, channel) == 2, message="both nodes subscribed on the owner")
    _crosses_on_redis(on_a, plait.b, on_b, "before")

    writers = Writers(a=on_a, b=on_b)
    writers.wait_more(10)
    before = [scrape(plait.a.base_url), scrape(plait.b.base_url)]
    killed = time.monotonic()
    cluster.kill(dead)
    cluster.wait_failover(dead)
    promoted = time.monotonic()
    successor = cluster.owner(slot)
    wait_until(
        lambda: _subscribers(cluster, successor, channel) == 2,
        timeout=30,
        message="both nodes resubscribed on the promoted replica",
    )
    resubscribed = time.monotonic()
    for server, then in zip((plait.a, plait.b), before, strict=True):
        wait_moved(server.base_url, then, CAUGHT_UP)
    writers.wait_more(10)
    total = writers.stop() + 5
    _converge(on_a, on_b, total)
    _crosses_on_redis(on_a, plait.b, on_b, "after-a")
    _crosses_on_redis(on_b, plait.a, on_a, "after-b")
    print(
        f"\nfailover: promoted {promoted - killed:.2f}s after the kill, both nodes resubscribed "
        f"{resubscribed - promoted:.2f}s after the promotion ({resubscribed - killed:.2f}s after the kill)"
    )


def test_a_live_channel_slot_moved_to_another_master(
    cluster: RedisClusterProcesses, plait: Plait, clients: list[NodeClient]
) -> None:
    wid, on_a, on_b = _open(plait, clients)
    channel = f"{plait.ns}:ws:{wid}"
    slot = cluster.keyslot(channel)
    source = cluster.owner(slot)
    target = next(p for p in cluster.masters() if p != source)
    wait_until(lambda: _subscribers(cluster, source, channel) == 2, message="both nodes subscribed on the owner")
    wait_until(lambda: _presence_connections(plait.b, wid, plait.owner) == 2, message="a's presence seen on b")

    writers = Writers(a=on_a, b=on_b)
    writers.wait_more(10)
    before = [scrape(plait.a.base_url), scrape(plait.b.base_url)]
    started = time.monotonic()
    cluster.move_slot(slot, target)
    moved = time.monotonic()
    wait_until(
        lambda: _subscribers(cluster, target, channel) == 2,
        timeout=30,
        message="both nodes resubscribed on the slot's new master",
    )
    resubscribed = time.monotonic()
    assert _subscribers(cluster, source, channel) == 0
    for server, then in zip((plait.a, plait.b), before, strict=True):
        wait_moved(server.base_url, then, CAUGHT_UP)
    writers.wait_more(10)
    total = writers.stop()
    _converge(on_a, on_b, total)
    _crosses_on_redis(on_a, plait.b, on_b, "after-a")
    _crosses_on_redis(on_b, plait.a, on_a, "after-b")

    # the workspace's presence keys (hash-tagged: one slot) move with their slot and are read and written there
    presence_slot = cluster.keyslot(f"{plait.ns}:presence:{{{wid}}}:node-a")
    holder = cluster.owner(presence_slot)
    cluster.move_slot(presence_slot, next(p for p in cluster.masters() if p != holder))
    assert _presence_connections(plait.b, wid, plait.owner) == 2
    clients[2].connect(f"{plait.a.ws_url}/sync", wid, plait.owner.token)
    clients[2].wait_synced()
    wait_until(lambda: _presence_connections(plait.b, wid, plait.owner) == 3, message="a's new socket seen on b")
    print(f"\nslot move: {moved - started:.2f}s, both nodes resubscribed {resubscribed - moved:.2f}s after it")
