"""Multi-node fan-out over Redis pub/sub (when PLAIT_REDIS_URL is set).

Redis is for speed; the database is the truth. After its commit, the accepting node publishes each update's
bytes with its durable log sequence number and its node id. Every other node with the workspace loaded
applies it once (sequence numbers already applied are skipped) and forwards it to its sockets. Pub/sub is
at-most-once, so a node that sees a hole in the sequence, or loses its Redis connection, catches up from the
database. Awareness, membership changes and notification wake-ups travel the same way; presence is a Redis
hash per node and workspace that expires when the node stops refreshing it (a crashed node's users vanish).
A node that loads a room asks the others for their clients' awareness states ("awq"); each answers only the
asker ("awr") with the full set of its own clients' states, so a newcomer sees everyone present at once
instead of after their next renewal. After a Redis reconnect a node asks again with "resync" (every node
answers, even with none) and announces its own states to all ("*"): an answer replaces what the receiver held
from that node, so removals lost with the connection are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import metrics

log = logging.getLogger("plait.sync.fanout")

Handler = Callable[[str, bytes], Awaitable[None] | None]


class RedisFanout:
    def __init__(self, url: str, namespace: str, node_id: str, presence_ttl: float) -> None:
        self.url = url
        self.ns = namespace
        self.node_id = node_id
        self.presence_ttl = presence_ttl
        # A pooled connection is dead after Redis restarts: without a retry on a fresh connection, the first
        # messages published after a reconnect (the awareness resync among them) were lost. The subscriber has
        # a client of its own without that retry: it must see the loss, since messages were missed meanwhile.
        self.redis: aioredis.Redis = aioredis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self._subscriber: aioredis.Redis = aioredis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        self._handlers: dict[str, Callable[[str, bytes], Any]] = {}
        self._listener: asyncio.Task[Any] | None = None
        self._on_reconnect: Callable[[], Awaitable[None]] | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self.connected = False

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
            with contextlib.suppress(BaseException):
                await self._listener
        for t in list(self._pending):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(t, 1)
        with contextlib.suppress(Exception):
            await self.redis.aclose()
            await self._subscriber.aclose()

    def on(self, kind: str, handler: Callable[[str, bytes], Any]) -> None:
        """Handle messages of ``kind`` ("doc", "aw", "awq", "awr", "members", "notify"): ``handler(key, payload)``."""
        self._handlers[kind] = handler

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def _listen_forever(self) -> None:
        backoff = 0.1
        first = True
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(f"{self.ns}:*")
                self.connected = True
                backoff = 0.1
                if not first and self._on_reconnect is not None:
                    log.warning("redis reconnected: catching every loaded room up from the database")
                    await self._on_reconnect()
                first = False
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    await self._dispatch(msg["channel"], msg["data"])
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            except (RedisError, OSError) as exc:
                self.connected = False
                first = False
                log.warning("redis connection lost (%r); retrying in %.1fs", exc, backoff)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _dispatch(self, channel: bytes, data: bytes) -> None:
        parts = channel.decode().split(":", 2)
        if len(parts) < 2:
            return
        kind, key = parts[1], parts[2] if len(parts) > 2 else ""
        handler = self._handlers.get(kind)
        if handler is None:
            return
        try:
            result = handler(key, data)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("redis %s handler failed", kind)

    # ---- publishing (fire and forget: the database already has the truth) ------------------------------

    def publish(self, kind: str, key: str, payload: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._publish(f"{self.ns}:{kind}:{key}", payload))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, channel: str, payload: bytes) -> None:
        try:
            await self.redis.publish(channel, payload)
        except (RedisError, OSError) as exc:
            metrics.REDIS_PUBLISH_FAILURES.inc()
            log.debug("redis publish failed: %r", exc)

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

    def _presence_key(self, workspace_id: str, node: str) -> str:
        return f"{self.ns}:presence:{workspace_id}:{node}"

    async def write_presence(self, workspace_id: str, users: dict[str, dict[str, Any]]) -> None:
        """Replace this node's presence entry for a workspace (expires unless refreshed)."""
        key = self._presence_key(workspace_id, self.node_id)
        index = f"{self.ns}:presence-nodes:{workspace_id}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if users:
                    pipe.hset(key, mapping={uid: json.dumps(v) for uid, v in users.items()})
                    pipe.expire(key, int(self.presence_ttl))
                    pipe.sadd(index, self.node_id)
                    pipe.expire(index, int(self.presence_ttl) * 4)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.debug("presence write failed: %r", exc)

    async def read_presence(self, workspace_id: str, exclude_node: str | None = None) -> list[dict[str, Any]] | None:
        """Every (other) node's entries for a workspace, or None when Redis is unreachable."""
        index = f"{self.ns}:presence-nodes:{workspace_id}"
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
        except (RedisError, OSError):
            return None

    async def live_nodes(self) -> set[str] | None:
        try:
            keys = await self.redis.keys(f"{self.ns}:node:*")
            return {_text(k).rsplit(":", 1)[1] for k in keys}
        except (RedisError, OSError):
            return None

    async def heartbeat(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.set(f"{self.ns}:node:{self.node_id}", str(time.time()), ex=int(self.presence_ttl))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
