"""Two Plait nodes on a real 3-master Redis Cluster (sharded pub/sub): npm y-websocket clients on both nodes
converge, the workspaces' channels spread over the shards, and a node subscribes only on the shard that owns
a hosted workspace's channel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from persistence.migrate import upgrade
from sync_server.fanout import RedisFanout, RedisTarget
from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.node import require_node, start_clients, wait_until
from tests.support.rediscluster import RedisClusterProcesses
from tests.support.server import ProcessServer, node_env
from tests.support.users import create_workspace, register

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.node]


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    rc = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield rc
    finally:
        rc.stop()


def test_two_nodes_on_a_redis_cluster_converge(tmp_path: Path, redis_cluster: RedisClusterProcesses) -> None:
    require_node()
    url = fresh_database("postgres", tmp_path)
    upgrade(url)
    ns = f"t{uuid.uuid4().hex[:8]}"
    env = node_env(url, redis_cluster.url, tmp_path, PLAIT_REDIS_NAMESPACE=ns)
    seed = redis_cluster.url
    # both ways of saying "cluster": the URL scheme, and the setting
    a = ProcessServer(
        {**env, "PLAIT_NODE_ID": "node-a", "PLAIT_REDIS_URL": seed.replace("redis://", "redis+cluster://")},
        log_path=tmp_path / "a.log",
    )
    b = ProcessServer(
        {**env, "PLAIT_NODE_ID": "node-b", "PLAIT_REDIS_URL": seed, "PLAIT_REDIS_CLUSTER": "1"},
        log_path=tmp_path / "b.log",
    )
    clients = []
    try:
        a.start()
        b.start()
        clients = start_clients(4)
        with httpx.Client(base_url=a.base_url) as http:
            owner = register(http, "owner")
            wids = [create_workspace(http, owner, f"ws{i}") for i in range(2)]
        for i, wid in enumerate(wids):
            clients[2 * i].connect(f"{a.ws_url}/sync", wid, owner.token)
            clients[2 * i + 1].connect(f"{b.ws_url}/sync", wid, owner.token)
        for c in clients:
            c.wait_synced()
        # concurrent edits on both nodes, in both workspaces
        for i in range(len(wids)):
            on_a, on_b = clients[2 * i], clients[2 * i + 1]
            tid = on_a.create_task("Plan", description="")
            on_b.wait_for(f"state().tasks['{tid}'] !== undefined")
            for _ in range(10):
                on_a.insert_text(tid, 0, "A")
                on_b.insert_text(tid, 0, "B")
            try:
                wait_until(
                    lambda on_a=on_a, on_b=on_b, tid=tid: (
                        on_a.tasks()[tid]["description"] == on_b.tasks()[tid]["description"]
                        and sorted(on_a.tasks()[tid]["description"]) == sorted("A" * 10 + "B" * 10)
                    ),
                    timeout=20,
                    message="clients on two nodes converge over the Redis Cluster",
                )
            except AssertionError as exc:
                seen = (on_a.tasks()[tid]["description"], on_b.tasks()[tid]["description"])
                raise AssertionError(f"{exc}; on a, on b: {seen}") from None
        # each workspace channel is subscribed by both nodes, on the shard that owns its slot
        rc = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
        for wid in wids:
            ch = f"{ns}:ws:{wid}"
            owner_node = rc.get_node_from_key(ch)
            counts = redis.Redis(host=owner_node.host, port=owner_node.port).pubsub_shardnumsub(ch)
            assert counts[0][1] == 2, (ch, counts)
        rc.close()
    finally:
        for c in clients:
            c.close()
        a.stop()
        b.stop()
        drop_postgres_database(url)


async def test_a_node_publishes_a_channels_messages_in_the_order_it_committed_them(
    redis_cluster: RedisClusterProcesses,
) -> None:
    """Another node applies a document update before the one it depends on only as a pending update (pycrdt did
    not always integrate it once the missing one came, and its seq counted as applied): updates of one workspace
    must reach Redis in commit order, however many are in flight."""
    fanout = RedisFanout(RedisTarget(redis_cluster.url, cluster=True), f"t{uuid.uuid4().hex[:8]}", "node-x", 30)
    channel = fanout.channel("w")
    with redis_cluster.client() as rc:
        node = rc.get_node_from_key(channel)
    listener = aioredis.Redis(host=node.host, port=node.port)
    sub = listener.pubsub()
    await sub.ssubscribe(channel)
    assert (await sub.get_message(timeout=5))["type"] == "ssubscribe"
    try:
        n = 2000
        for seq in range(1, n + 1):
            fanout.publish_update("w", seq, b"update")
        seqs: list[int] = []
        while len(seqs) < n:
            msg = await sub.get_message(timeout=10)
            assert msg is not None, f"{len(seqs)} of {n} messages heard"
            seqs.append(RedisFanout.split_update(msg["data"].split(b"|", 1)[1])[1])
        assert seqs == list(range(1, n + 1))
    finally:
        await sub.aclose()
        await listener.aclose()
        await fanout.stop()
