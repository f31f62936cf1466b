"""Multi-node fan-out over Redis pub/sub (when PLAIT_REDIS_URL is set).

Redis is for speed; the database is the truth. After its commit, the accepting node publishes each update's
bytes with its durable log sequence number and its node id. Every other node with the workspace loaded
applies it once (sequence numbers already applied are skipped) and forwards it to its sockets. Pub/sub is
at-most-once, so a node that sees a hole in the sequence, or loses its Redis connection, catches up from the
database.

Channels. Each workspace has a channel of its own (``{ns}:ws:{id}``: updates, awareness and awareness
queries/answers), which a node subscribes to when it loads the room (before it reads the document, so nothing
committed after that read can be missed) and leaves when it unloads it: a node receives the traffic of the
rooms it hosts, not of the whole cluster. Messages every node must hear (membership changes, account and
session closes, notification wake-ups) travel on one node-wide channel (``{ns}:nodes``). With Redis 7 the
channels are *sharded* (``SSUBSCRIBE``/``SPUBLISH``): on a Redis Cluster each channel lives on the shard that
owns its hash slot, and a node keeps one subscriber connection per shard it needs. Plain ``SUBSCRIBE``/``PUBLISH``
on an older single Redis. Every node of a deployment picks the same kind (it depends on the server only).

Presence is a Redis hash per node and workspace that expires when the node stops refreshing it (a crashed
node's users vanish). A node that loads a room asks the others for their clients' awareness states ("awq");
each answers only the asker ("awr") with the full set of its own clients' states, so a newcomer sees everyone
present at once instead of after their next renewal. After a Redis reconnect a node asks again with "resync"
(every node hosting the room answers, even with none) and announces its own states to all ("*"): an answer
replaces what the receiver held from that node, so removals lost with the connection are dropped. A node that
unloads a room announces an empty set before it leaves the channel.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import metrics

log = logging.getLogger("plait.sync.fanout")

Handler = Callable[[str, bytes], Awaitable[None] | None]
WORKSPACE_KINDS = frozenset({"doc", "aw", "awq", "awr"})  # on the workspace's own channel; the rest node-wide
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
SUBSCRIBE_SECONDS = 2.0  # a room load waits this long for its channel; then the reconnect's catch-up covers it
LOADING_BUFFER_MAX = 10_000  # updates held for a room between its subscription and the end of its load
# what Redis being away or a cluster changing its slot map raises (the cluster client's own errors are no RedisError)
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)
STOP_SECONDS = 2.0  # a node's stop waits this long for the subscriber: a stuck connection is left behind
PUBLISH_BATCH_MAX = 256  # messages sent in one pipeline (one round trip per server)
PUBLISH_QUEUE_MAX = 100_000  # messages waiting for Redis; past that they are dropped (the database has them)


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is and how to reach it: one server or a Redis Cluster, plain or TLS (``rediss://``)."""

    url: str
    cluster: bool = False
    ssl: dict[str, Any] = field(default_factory=dict)
    pubsub: str = "auto"  # "auto" (sharded on Redis >= 7), "sharded" or "plain"
    sentinel: tuple[tuple[tuple[str, int], ...], str] | None = None  # (sentinel addresses, service name)

    @classmethod
    def from_settings(cls, settings: Any) -> RedisTarget:
        url = str(settings.redis_url)
        scheme = urlsplit(url).scheme
        cluster = bool(settings.redis_cluster)
        if scheme in CLUSTER_SCHEMES:
            cluster = True
            url = urlunsplit((CLUSTER_SCHEMES[scheme], *urlsplit(url)[1:]))
        sentinel = None
        if scheme in SENTINEL_SCHEMES:
            sentinel, url = _sentinel(url)
        ssl: dict[str, Any] = {}
        if urlsplit(url).scheme == "rediss":
            ssl["ssl_cert_reqs"] = settings.redis_ssl_cert_reqs
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
                value = getattr(settings, f"redis_{name}")
                if value:
                    ssl[name] = str(value)
        return cls(url, cluster, ssl, settings.redis_pubsub, sentinel)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    def client(self, **kw: Any) -> aioredis.Redis | AsyncRedisCluster:
        """A command client: a cluster client (routes by slot, follows MOVED) or a single-server one."""
        if self.cluster:
            kw.pop("retry_on_error", None)
            return AsyncRedisCluster.from_url(self.url, **self.ssl, **kw)
        return self.single(**kw)

    def single(self, **kw: Any) -> aioredis.Redis:
        """A client of the one server (with Sentinel: of the current master, looked up on each connect)."""
        if self.sentinel is None:
            return aioredis.from_url(self.url, **self.ssl, **kw)
        parts = urlsplit(self.url)
        sentinels, service = self.sentinel
        db = int(parts.path.strip("/") or 0)
        kw.update(self.ssl)
        kw["username"] = unquote(parts.username) if parts.username else None
        kw["password"] = unquote(parts.password) if parts.password else None
        if self.tls:
            kw["ssl"] = True
        watch = Sentinel(list(sentinels), socket_connect_timeout=2, socket_timeout=2)
        client: aioredis.Redis = watch.master_for(service, db=db, **kw)
        return client

    def server_client(self, host: str, port: int, **kw: Any) -> aioredis.Redis:
        """A single-server client to one shard of the cluster (for its subscriber connection)."""
        parts = urlsplit(self.url)
        return aioredis.Redis(
            host=host,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ssl=self.tls,
            **self.ssl,
            **kw,
        )


class _Moved(Exception):
    """The server dropped a subscription we did not ask to drop (its slot moved to another shard)."""


SUBSCRIBER_LOST = (RedisError, RedisClusterException, OSError, _Moved)  # (TimeoutError is an OSError)


class _Shard:
    """One subscriber connection to one Redis server and the channels subscribed on it."""

    def __init__(self, client: aioredis.Redis, sharded: bool, deliver: Callable[[bytes, bytes], Awaitable[None]]):
        self.client = client
        self.sharded = sharded
        self._deliver = deliver
        self.pubsub = client.pubsub()
        self.channels: set[str] = set()
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._leaving: dict[str, int] = {}  # unsubscribes sent and not yet confirmed, by channel
        self._send = asyncio.Lock()
        self.closing = False  # the reader ends at its next turn even if a cancellation was lost in redis-py

    async def subscribe(self, channels: list[str]) -> None:
        """Subscribe and wait for the server's confirmations (the subscription is in place on return)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for ch in channels:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiting.setdefault(ch, []).append(fut)
            futures.append(fut)
            self.channels.add(ch)
        async with self._send:
            for ch in channels:  # one per command: a sharded SSUBSCRIBE may not span hash slots
                if self.sharded:
                    await self.pubsub.ssubscribe(ch)
                else:
                    await self.pubsub.subscribe(ch)
        await asyncio.gather(*futures)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        self._leaving[channel] = self._leaving.get(channel, 0) + 1
        async with self._send:
            if self.sharded:
                await self.pubsub.sunsubscribe(channel)
            else:
                await self.pubsub.unsubscribe(channel)

    async def run(self) -> None:
        """Read until the connection fails (raises), a subscription is moved away (raises ``_Moved``), or the
        shard is closing."""
        while not self.closing:
            if not self.pubsub.subscribed:
                await asyncio.sleep(0.05)
                continue
            msg = await self.pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            if msg is None:
                continue
            kind = _text(msg["type"])
            channel = _text(msg["channel"])
            if kind in ("message", "smessage"):
                await self._deliver(msg["channel"], msg["data"])
            elif kind in ("subscribe", "ssubscribe"):
                for fut in self._waiting.pop(channel, []):
                    if not fut.done():
                        fut.set_result(None)
            elif kind in ("unsubscribe", "sunsubscribe"):
                pending = self._leaving.pop(channel, 0)
                if pending > 1:
                    self._leaving[channel] = pending - 1
                elif not pending and channel in self.channels:
                    raise _Moved(channel)

    def fail(self, exc: BaseException) -> None:
        for futures in self._waiting.values():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # its waiter may be gone (timed out): no "never retrieved" warning
        self._waiting.clear()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()


class RedisFanout:
    def __init__(
        self, target: RedisTarget | str, namespace: str, node_id: str, presence_ttl: float, *, fail_fast: bool = True
    ) -> None:
        self.target = target if isinstance(target, RedisTarget) else RedisTarget(target)
        self.url = self.target.url
        self.ns = namespace
        self.node_id = node_id
        self.presence_ttl = presence_ttl
        self.node_channel = f"{namespace}:nodes"
        # A pooled connection is dead after Redis restarts: without a retry on a fresh connection, the first
        # messages published after a reconnect (the awareness resync among them) were lost. The subscriber has
        # connections of its own without that retry: it must see the loss, since messages were missed meanwhile.
        self.redis: Any = self.target.client(
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self._handlers: dict[str, Callable[[str, bytes], Any]] = {}
        self._listener: asyncio.Task[Any] | None = None
        self._on_reconnect: Callable[[], Awaitable[None]] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._outboxes: dict[int, collections.deque[tuple[str, bytes]]] = {}  # by hash slot (see _enqueue)
        self._publishers: dict[int, asyncio.Future[None]] = {}
        self._queued = 0
        self.connected = False
        self.sharded: bool | None = {"sharded": True, "plain": False}.get(self.target.pubsub)
        self._wanted: set[str] = {self.node_channel}  # the channels this node must hear
        self._shards: dict[str, _Shard] = {}
        self._shard_tasks: dict[str, asyncio.Task[None]] = {}
        self._ready = asyncio.Event()  # the subscriber is up (cleared while it reconnects)
        self._ever_ready = False
        self._lost: asyncio.Future[BaseException] | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def listen(self, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        """The subscriber loop (run it under the node's supervisor; ``stop`` ends it): reconnects for ever, and
        calls ``on_reconnect`` after a reconnect, since messages were missed meanwhile."""
        self._on_reconnect = on_reconnect
        self._listener = asyncio.current_task()
        await self._listen_forever()

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
            # bounded: a redis-py connection that does not give its reader back must not hold the node's stop
            await asyncio.wait({self._listener}, timeout=STOP_SECONDS)
        if self._pending:  # the last publishes and unsubscribes: a second for all of them, then dropped
            _, late = await asyncio.wait(set(self._pending), timeout=1)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=1)
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    def on(self, kind: str, handler: Callable[[str, bytes], Any]) -> None:
        """Handle messages of ``kind`` ("doc", "aw", "awq", "awr", "members", "notify"): ``handler(key, payload)``."""
        self._handlers[kind] = handler

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except REDIS_FAILURES:
            return False

    async def _detect(self) -> bool:
        """Sharded pub/sub when the server has it (Redis 7): the same answer on every node of a deployment."""
        if self.sharded is None:
            if self.target.cluster:
                self.sharded = True
            else:
                info = await self.redis.info("server")
                self.sharded = int(str(info.get("redis_version", "0")).split(".")[0]) >= 7
            log.info("redis fan-out: %s pub/sub", "sharded" if self.sharded else "plain")
        return self.sharded

    async def _listen_forever(self) -> None:
        backoff = 0.1
        first = True
        while True:
            self._lost = asyncio.get_running_loop().create_future()
            try:
                await self._build()
                self.connected = True
                self._ready.set()
                self._ever_ready = True
                backoff = 0.1
                if not first and self._on_reconnect is not None:
                    log.warning("redis reconnected: catching every loaded room up from the database")
                    await self._on_reconnect()
                first = False
                raise await self._lost
            except asyncio.CancelledError:
                # the node is stopping: a connection that does not give its reader back is left behind, not
                # waited for (the supervisor waits for this task; a sticky-routing test's node hung in it)
                await asyncio.wait({asyncio.ensure_future(self._teardown())}, timeout=STOP_SECONDS)
                raise
            except SUBSCRIBER_LOST as exc:
                self.connected = False
                first = False
                log.warning("redis subscriber lost (%r); resubscribing in %.1fs", exc, backoff)
                await self._teardown()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _build(self) -> None:
        """One subscriber connection per server owning a wanted channel, every wanted channel subscribed."""
        sharded = await self._detect()
        if self.target.cluster:
            await self.redis.initialize()
            await self.redis.nodes_manager.initialize()  # the current slot map (after a failover or a resharding)
        groups: dict[str, list[str]] = {}
        for ch in list(self._wanted):
            groups.setdefault(self._server_of(ch), []).append(ch)
        for name in groups:
            self._open_shard(name, sharded)
        await asyncio.wait_for(
            asyncio.gather(*(self._shards[n].subscribe(chs) for n, chs in groups.items())), SUBSCRIBE_SECONDS * 5
        )

    def _server_of(self, channel: str) -> str:
        if not self.target.cluster:
            return ""
        node = self.redis.get_node_from_key(channel)
        return f"{node.host}:{node.port}"

    def _open_shard(self, name: str, sharded: bool) -> _Shard:
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        kw: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 5, "retry": Retry(NoBackoff(), 0)}
        if name:
            host, port = name.rsplit(":", 1)
            client = self.target.server_client(host, int(port), **kw)
        else:
            client = self.target.single(**kw)
        shard = _Shard(client, sharded, self._dispatch)
        self._shards[name] = shard
        task = asyncio.get_running_loop().create_task(self._run_shard(shard), name=f"plait-redis-shard-{name}")
        self._shard_tasks[name] = task
        return shard

    async def _run_shard(self, shard: _Shard) -> None:
        try:
            await shard.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever ends a reader, the subscriber is rebuilt (and rooms caught up)
            if not isinstance(exc, SUBSCRIBER_LOST):
                log.exception("redis subscriber failed")
            shard.fail(exc)
            self._lose(exc)

    def _lose(self, exc: BaseException) -> None:
        """Tear the subscriber down and build it again: messages may have been missed."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(exc if isinstance(exc, RedisError | OSError | _Moved) else RedisError(repr(exc)))

    async def _teardown(self) -> None:
        self._ready.clear()
        for shard in self._shards.values():
            shard.closing = True
        for task in self._shard_tasks.values():
            task.cancel()
        for task in self._shard_tasks.values():
            with contextlib.suppress(BaseException):
                await task
        for shard in self._shards.values():
            shard.fail(RedisConnectionError("subscriber closed"))
            await shard.close()
            with contextlib.suppress(Exception):
                await shard.client.aclose()
        self._shards.clear()
        self._shard_tasks.clear()

    # ---- per-workspace subscriptions -------------------------------------------------------------------

    def channel(self, workspace_id: str) -> str:
        return f"{self.ns}:ws:{workspace_id}"

    async def join(self, workspace_id: str) -> bool:
        """Subscribe to a workspace's channel; True once the subscription is confirmed. False at once while the
        subscriber reconnects, or when the subscription is not confirmed within ``SUBSCRIBE_SECONDS``: the
        channel stays wanted, and the subscriber's (re)connect subscribes it and catches every loaded room up
        from the database."""
        ch = self.channel(workspace_id)
        self._wanted.add(ch)
        metrics.FANOUT_CHANNELS.set(len(self._wanted) - 1)
        if self._ever_ready and not self._ready.is_set():
            return False  # Redis is away: no wait; the reconnect subscribes the channel and catches the room up
        try:
            await asyncio.wait_for(self._ready.wait(), SUBSCRIBE_SECONDS)
            shard = self._open_shard(self._server_of(ch), bool(self.sharded))
            await asyncio.wait_for(shard.subscribe([ch]), SUBSCRIBE_SECONDS)
            return True
        except SUBSCRIBER_LOST as exc:
            log.warning("subscription to %s not confirmed (%r): resubscribing everything, then catching up", ch, exc)
            self._lose(exc)
            return False

    def leave(self, workspace_id: str) -> None:
        """Leave a workspace's channel (the room was unloaded)."""
        ch = self.channel(workspace_id)
        self._wanted.discard(ch)
        metrics.FANOUT_CHANNELS.set(len(self._wanted) - 1)
        if not self._ready.is_set():
            return
        with contextlib.suppress(*REDIS_FAILURES):
            shard = self._shards.get(self._server_of(ch))
            if shard is not None and ch in shard.channels:
                self._spawn(self._unsubscribe(shard, ch))

    async def _unsubscribe(self, shard: _Shard, ch: str) -> None:
        if ch in self._wanted:  # loaded again meanwhile
            return
        try:
            await shard.unsubscribe(ch)
        except REDIS_FAILURES as exc:
            log.debug("unsubscribe of %s failed: %r", ch, exc)

    async def _dispatch(self, channel: bytes, data: bytes) -> None:
        ch = channel.decode()
        try:
            if ch == self.node_channel:
                metrics.FANOUT_RECEIVED.labels("node").inc()
                kind_b, key_b, payload = data.split(b"|", 2)
                kind, key = kind_b.decode(), key_b.decode()
            else:
                metrics.FANOUT_RECEIVED.labels("workspace").inc()
                kind_b, payload = data.split(b"|", 1)
                kind, key = kind_b.decode(), ch.rsplit(":", 1)[1]
        except ValueError:
            log.warning("malformed message on %s dropped", ch)
            return
        handler = self._handlers.get(kind)
        if handler is None:
            return
        try:
            result = handler(key, payload)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("redis %s handler failed", kind)

    # ---- publishing (fire and forget: the database already has the truth) ------------------------------

    def _spawn(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def publish(self, kind: str, key: str, payload: bytes) -> None:
        """A workspace's kinds on its own channel (``key`` is the workspace), the others on the node-wide one."""
        if kind in WORKSPACE_KINDS:
            self._enqueue(self.channel(key), kind.encode() + b"|" + payload)
        else:
            self._enqueue(self.node_channel, b"%s|%s|%s" % (kind.encode(), key.encode(), payload))

    def _enqueue(self, channel: str, payload: bytes) -> None:
        """A channel's messages reach Redis in the order they were handed over. Each in its own task, concurrent
        publishes went out on several pooled connections in any order, and another node then applied an update
        before the one it depends on: pycrdt holds such an update pending and did not always integrate it when
        the missing one came, while its seq counted as applied, so no catch-up repaired the room. One queue per
        hash slot: a channel is in one slot, and a shard that is failing over holds up only its own slots."""
        if self._queued >= PUBLISH_QUEUE_MAX:
            metrics.REDIS_PUBLISH_FAILURES.inc()
            log.debug("redis publish queue full: message to %s dropped", channel)
            return
        slot = key_slot(channel.encode())
        self._outboxes.setdefault(slot, collections.deque()).append((channel, payload))
        self._queued += 1
        if slot not in self._publishers:
            task = asyncio.ensure_future(self._drain(slot))
            self._publishers[slot] = task
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _drain(self, slot: int) -> None:
        """One batch at a time, in order (a pipeline keeps the order of its commands on each server)."""
        outbox = self._outboxes[slot]
        try:
            while outbox:
                batch = [outbox.popleft() for _ in range(min(len(outbox), PUBLISH_BATCH_MAX))]
                self._queued -= len(batch)
                await self._publish_batch(batch)
        finally:
            del self._publishers[slot]
            if not outbox:
                del self._outboxes[slot]
            else:  # cancelled (the node stops): what is left is dropped
                self._queued -= len(outbox)
                del self._outboxes[slot]

    async def _publish_batch(self, batch: list[tuple[str, bytes]]) -> None:
        try:
            sharded = await self._detect()
            if len(batch) == 1:
                channel, payload = batch[0]
                await (self.redis.spublish if sharded else self.redis.publish)(channel, payload)
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, payload in batch:
                        (pipe.spublish if sharded else pipe.publish)(channel, payload)
                    await pipe.execute()
            metrics.FANOUT_PUBLISHED.inc(len(batch))
        except REDIS_FAILURES as exc:
            metrics.REDIS_PUBLISH_FAILURES.inc(len(batch))
            log.debug("redis publish of %d messages failed: %r", len(batch), exc)

    def publish_update(self, workspace_id: str, seq: int, update: bytes) -> None:
        header = b"%s|%d|%.6f|" % (self.node_id.encode(), seq, time.time())
        self.publish("doc", workspace_id, header + update)

    def publish_awareness(self, workspace_id: str, payload: bytes) -> None:
        self.publish("aw", workspace_id, self.node_id.encode() + b"|" + payload)

    def query_awareness(self, workspace_id: str, *, resync: bool = False) -> None:
        """Ask every other node for its own clients' awareness states in a workspace."""
        self.publish("awq", workspace_id, b"%s|%d" % (self.node_id.encode(), resync))

    @staticmethod
    def split_query(data: bytes) -> tuple[str, bool]:
        """(asking node, whether every node must answer)."""
        node, resync = data.rsplit(b"|", 1)
        return node.decode(), resync == b"1"

    def answer_awareness(self, workspace_id: str, to_node: str, payload: bytes) -> None:
        """This node's full set of its own clients' states, to one node or to all (``"*"``)."""
        self.publish("awr", workspace_id, b"%s|%s|%s" % (to_node.encode(), self.node_id.encode(), payload))

    @staticmethod
    def split_answer(data: bytes) -> tuple[str, str, bytes]:
        """(asking node, answering node, awareness payload)."""
        to_node, node, payload = data.split(b"|", 2)
        return to_node.decode(), node.decode(), payload

    @staticmethod
    def split_update(data: bytes) -> tuple[str, int, float, bytes]:
        node, seq, sent, update = data.split(b"|", 3)
        return node.decode(), int(seq), float(sent), update

    @staticmethod
    def split_awareness(data: bytes) -> tuple[str, bytes]:
        node, payload = data.split(b"|", 1)
        return node.decode(), payload

    # ---- presence ----------------------------------------------------------------------------------------
    # A workspace's keys share a hash tag (one slot on a Redis Cluster: the pipeline below may not span slots).

    def _presence_key(self, workspace_id: str, node: str) -> str:
        return f"{self.ns}:presence:{{{workspace_id}}}:{node}"

    def _presence_index(self, workspace_id: str) -> str:
        return f"{self.ns}:presence-nodes:{{{workspace_id}}}"

    async def write_presence(self, workspace_id: str, users: dict[str, dict[str, Any]]) -> None:
        """Replace this node's presence entry for a workspace (expires unless refreshed)."""
        key = self._presence_key(workspace_id, self.node_id)
        index = self._presence_index(workspace_id)
        try:
            async with self.redis.pipeline(transaction=not self.target.cluster) as pipe:
                pipe.delete(key)
                if users:
                    pipe.hset(key, mapping={uid: json.dumps(v) for uid, v in users.items()})
                    pipe.expire(key, int(self.presence_ttl))
                    pipe.sadd(index, self.node_id)
                    pipe.expire(index, int(self.presence_ttl) * 4)
                await pipe.execute()
        except REDIS_FAILURES as exc:
            log.debug("presence write failed: %r", exc)

    async def read_presence(self, workspace_id: str, exclude_node: str | None = None) -> list[dict[str, Any]] | None:
        """Every (other) node's entries for a workspace, or None when Redis is unreachable."""
        index = self._presence_index(workspace_id)
        try:
            nodes = [_text(n) for n in await self.redis.smembers(index)]
            out: list[dict[str, Any]] = []
            for node in nodes:
                if node == exclude_node:
                    continue
                entries = await self.redis.hgetall(self._presence_key(workspace_id, node))
                if not entries:
                    await self.redis.srem(index, node)
                    continue
                out.extend(json.loads(v) for v in entries.values())
            return out
        except REDIS_FAILURES:
            return None

    async def live_nodes(self) -> set[str] | None:
        """The nodes whose heartbeat is younger than the presence TTL (one sorted set: no KEYS scan, one slot)."""
        key = f"{self.ns}:nodes-alive"
        try:
            await self.redis.zremrangebyscore(key, "-inf", time.time() - self.presence_ttl)
            return {_text(n) for n in await self.redis.zrange(key, 0, -1)}
        except REDIS_FAILURES:
            return None

    async def heartbeat(self) -> None:
        with contextlib.suppress(*REDIS_FAILURES):
            await self.redis.zadd(f"{self.ns}:nodes-alive", {self.node_id: time.time()})


def _sentinel(url: str) -> tuple[tuple[tuple[tuple[str, int], ...], str], str]:
    """``redis+sentinel://[user:pass@]host:port[,host:port]/service[/db]`` -> (sentinels, service), and the
    master's URL (``redis://[user:pass@]/db``; its address comes from the sentinels)."""
    parts = urlsplit(url)
    creds, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple((h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]) if ":" in h else 26379) for h in hosts.split(","))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a Sentinel URL names the service: redis+sentinel://host:26379/mymaster")
    db = path[1] if len(path) > 1 else "0"
    netloc = f"{creds}@localhost" if creds else "localhost"
    return (sentinels, path[0]), urlunsplit((SENTINEL_SCHEMES[parts.scheme], netloc, f"/{db}", "", ""))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
