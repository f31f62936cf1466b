"""The other nodes of a cluster, behind one protocol: ``LocalCluster`` (a single node: nothing to tell anyone)
and ``RedisCluster`` (pub/sub fan-out, catch-up from the database, presence shared through Redis).

Redis is for speed; the database is the truth (the wire format and its guarantees: fanout.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from persistence.doclog import DocumentLog

from . import metrics
from .close_codes import CloseEvent
from .fanout import LOADING_BUFFER_MAX, RedisFanout
from .protocol import encode_awareness
from .registry import RoomRegistry
from .room import Room
from .supervisor import Supervisor
from .writer import WriteRequest

log = logging.getLogger("plait.sync.cluster")
NO_STATES = encode_awareness([])
TICK_SECONDS = 0.25  # the cluster loop's step; the periods below are in ticks
HEARTBEAT_TICKS = 20  # node liveness key and the sweep of awareness from dead nodes (5 s)
PRESENCE_REFRESH_TICKS = 40  # every loaded room's presence entry rewritten (10 s), dirty ones every tick
HEAD_CHECK_TICKS = 8  # log heads compared with memory (2 s): pub/sub is at-most-once
GAP_REPAIR_SECONDS = 0.5  # a hole in the applied seqs open this long is repaired from the database
REMOTE_AWARENESS_MAX_AGE = 45.0  # another node's state not renewed for this long is dropped

NodeHandler = Callable[[str, bytes], None]  # (key, payload) of a message from another node


class Cluster(Protocol):
    node_id: str

    @property
    def clustered(self) -> bool: ...
    async def start(self, sup: Supervisor) -> None: ...
    async def leave(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...
    async def room_loading(self, workspace_id: str) -> None: ...
    def room_loaded(self, workspace_id: str) -> None: ...
    def room_unloaded(self, workspace_id: str) -> None: ...
    def committed(self, workspace_id: str, requests: Sequence[WriteRequest]) -> None: ...
    def awareness(self, workspace_id: str, payload: bytes) -> None: ...
    def membership_changed(self, workspace_id: str, user_id: str, role: str | None) -> None: ...
    def user_closed(self, user_id: str, event: CloseEvent) -> None: ...
    def presence_changed(self, workspace_id: str) -> None: ...
    async def presence(self, workspace_id: str) -> list[dict[str, Any]]: ...
    def publish(self, kind: str, key: str, payload: bytes) -> None: ...
    def on_message(self, kind: str, handler: NodeHandler) -> None: ...


class LocalCluster:
    """One node: every change is already everywhere it needs to be."""

    def __init__(self, node_id: str, registry: RoomRegistry) -> None:
        self.node_id = node_id
        self._registry = registry

    @property
    def clustered(self) -> bool:
        return False

    async def start(self, sup: Supervisor) -> None:
        return None

    async def leave(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def room_loading(self, workspace_id: str) -> None:
        return None

    def room_loaded(self, workspace_id: str) -> None:
        return None

    def room_unloaded(self, workspace_id: str) -> None:
        return None

    def committed(self, workspace_id: str, requests: Sequence[WriteRequest]) -> None:
        return None

    def awareness(self, workspace_id: str, payload: bytes) -> None:
        return None

    def membership_changed(self, workspace_id: str, user_id: str, role: str | None) -> None:
        return None

    def user_closed(self, user_id: str, event: CloseEvent) -> None:
        return None

    def presence_changed(self, workspace_id: str) -> None:
        return None

    async def presence(self, workspace_id: str) -> list[dict[str, Any]]:
        return sorted(self._registry.local_presence(workspace_id).values(), key=lambda e: e["since"])

    def publish(self, kind: str, key: str, payload: bytes) -> None:
        return None

    def on_message(self, kind: str, handler: NodeHandler) -> None:
        return None


class RedisCluster:
    """Several nodes sharing a database and a Redis."""

    def __init__(self, fanout: RedisFanout, registry: RoomRegistry, store: DocumentLog) -> None:
        self.node_id = fanout.node_id
        self.fanout = fanout
        self._registry = registry
        self._store = store
        self._presence_dirty: set[str] = set()
        self._loop_task: asyncio.Task[None] | None = None
        # Updates heard on a workspace's channel while its room loads: the subscription comes before the
        # database read, and what arrives in between is applied once the room exists (already-applied seqs skip).
        self._loading: dict[str, list[bytes]] = {}
        fanout.on("doc", self._on_remote_update)
        fanout.on("aw", self._on_remote_awareness)
        fanout.on("awq", self._on_awareness_query)
        fanout.on("awr", self._on_awareness_answer)
        fanout.on("members", self._on_remote_membership)
        fanout.on("users", self._on_remote_user_closed)

    @property
    def clustered(self) -> bool:
        return True

    async def start(self, sup: Supervisor) -> None:
        sup.spawn("redis-listener", self.fanout.listen(on_reconnect=self._redis_reconnected))
        await self.fanout.heartbeat()
        self._loop_task = sup.spawn("cluster", self._loop())

    async def leave(self) -> None:
        """The node stops: the maintenance loop ends, and its presence entries go at once (not when they
        expire). The subscriber keeps running until ``close`` (the derived workers may still publish)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for wid in list(self._registry.rooms):
            await self.fanout.write_presence(wid, {})

    async def close(self) -> None:
        await self.fanout.stop()

    async def ping(self) -> bool:
        return await self.fanout.ping()

    # ---- to the other nodes --------------------------------------------------------------------------

    async def room_loading(self, workspace_id: str) -> None:
        """Subscribe to the workspace's channel before its document is read: an update committed after that
        read is published after it, so it is heard (or, when the subscription could not be confirmed, the
        subscriber's reconnect catches the room up from the database)."""
        self._loading[workspace_id] = []
        await self.fanout.join(workspace_id)

    def room_loaded(self, workspace_id: str) -> None:
        for data in self._loading.pop(workspace_id, []):
            self._on_remote_update(workspace_id, data)
        self.fanout.query_awareness(workspace_id)

    def room_unloaded(self, workspace_id: str) -> None:
        """The room is gone from this node (idle, failed, or never loaded): say it holds no states there, then
        leave the channel."""
        self._loading.pop(workspace_id, None)
        self.fanout.answer_awareness(workspace_id, "*", NO_STATES)
        self.fanout.leave(workspace_id)

    def committed(self, workspace_id: str, requests: Sequence[WriteRequest]) -> None:
        for r in requests:
            self.fanout.publish_update(workspace_id, r.seq or 0, r.data)

    def awareness(self, workspace_id: str, payload: bytes) -> None:
        self.fanout.publish_awareness(workspace_id, payload)

    def membership_changed(self, workspace_id: str, user_id: str, role: str | None) -> None:
        body = {"workspace_id": workspace_id, "user_id": user_id, "role": role, "node": self.node_id}
        self.fanout.publish("members", workspace_id, json.dumps(body).encode())

    def user_closed(self, user_id: str, event: CloseEvent) -> None:
        body = {"user_id": user_id, "code": event.code, "reason": event.reason, "node": self.node_id}
        self.fanout.publish("users", user_id, json.dumps(body).encode())

    def presence_changed(self, workspace_id: str) -> None:
        self._presence_dirty.add(workspace_id)

    def publish(self, kind: str, key: str, payload: bytes) -> None:
        """A message of the node's other services (e.g. notification wake-ups), tagged with this node."""
        self.fanout.publish(kind, key, self.node_id.encode() + b"|" + payload)

    def on_message(self, kind: str, handler: NodeHandler) -> None:
        """Handle ``publish``-ed messages of ``kind`` from the *other* nodes."""
        node = self.node_id.encode()

        def receive(key: str, data: bytes) -> None:
            origin, body = data.split(b"|", 1)
            if origin != node:
                handler(key, body)

        self.fanout.on(kind, receive)

    async def presence(self, workspace_id: str) -> list[dict[str, Any]]:
        """Who is connected to the workspace now, on every node."""
        merged = {uid: dict(v) for uid, v in self._registry.local_presence(workspace_id).items()}
        remote = await self.fanout.read_presence(workspace_id, exclude_node=self.node_id)
        for entry in remote or []:
            mine = merged.get(entry["user_id"])
            if mine is None:
                merged[entry["user_id"]] = entry
            else:
                mine["connections"] += entry["connections"]
                mine["since"] = min(mine["since"], entry["since"])
                mine["last_active"] = max(mine["last_active"], entry["last_active"])
        return sorted(merged.values(), key=lambda e: e["since"])

    # ---- from the other nodes ------------------------------------------------------------------------

    def _on_remote_update(self, workspace_id: str, data: bytes) -> None:
        node, seq, sent, update = RedisFanout.split_update(data)
        room = self._registry.rooms.get(workspace_id)
        loading = self._loading.get(workspace_id)
        if room is None and loading is not None and node != self.node_id and len(loading) < LOADING_BUFFER_MAX:
            loading.append(data)
            return
        if node == self.node_id or room is None or room.broken:
            return
        try:
            room.apply_remote(update, seq)
        except Exception:
            log.exception("remote update %s/%d could not be applied; catching up from the database", workspace_id, seq)
            room.applied.repair_soon()
            return
        metrics.REDIS_LAG.observe(max(0.0, time.time() - sent))

    def _on_remote_awareness(self, workspace_id: str, data: bytes) -> None:
        node, payload = RedisFanout.split_awareness(data)
        room = self._registry.rooms.get(workspace_id)
        if node != self.node_id and room is not None:
            room.apply_remote_awareness(node, payload)

    def _on_awareness_query(self, workspace_id: str, data: bytes) -> None:
        asker, resync = RedisFanout.split_query(data)
        if asker == self.node_id:
            return
        room = self._registry.rooms.get(workspace_id)
        payload = room.awareness.own() if room is not None else NO_STATES
        if resync or payload != NO_STATES:
            self.fanout.answer_awareness(workspace_id, asker, payload)

    def _on_awareness_answer(self, workspace_id: str, data: bytes) -> None:
        to_node, node, payload = RedisFanout.split_answer(data)
        room = self._registry.rooms.get(workspace_id)
        if to_node in (self.node_id, "*") and node != self.node_id and room is not None:
            room.replace_remote_awareness(node, payload)

    def _on_remote_membership(self, _key: str, data: bytes) -> None:
        body = json.loads(data)
        if body.get("node") != self.node_id:
            self._registry.apply_membership(body["workspace_id"], body["user_id"], body.get("role"))

    def _on_remote_user_closed(self, _key: str, data: bytes) -> None:
        body = json.loads(data)
        if body.get("node") != self.node_id:
            self._registry.close_user(body["user_id"], CloseEvent(int(body["code"]), str(body.get("reason", ""))))

    # ---- repair ----------------------------------------------------------------------------------------

    async def catch_up(self, room: Room) -> None:
        stored = await self._store.load(room.workspace_id)
        if self._registry.rooms.get(room.workspace_id) is room and not room.broken:
            room.catch_up(stored)
            metrics.REDIS_GAP_REPAIRS.inc()

    async def _redis_reconnected(self) -> None:
        """Messages published while Redis was away are lost: documents catch up from the database; awareness
        is asked for again (every node answers with its full set, which replaces what this node held, so a
        removal lost in the outage is dropped) and this node's own states are announced to all."""
        for room in self._registry:
            try:
                await self.catch_up(room)
            except Exception:
                log.exception("catch-up of %s failed", room.workspace_id)
        for wid, room in list(self._registry.rooms.items()):
            self.fanout.query_awareness(wid, resync=True)
            self.fanout.answer_awareness(wid, "*", room.awareness.own())

    async def _loop(self) -> None:
        """Heartbeat, presence refresh, gap repair and the periodic database check of loaded rooms."""
        rooms = self._registry.rooms
        tick = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            tick += 1
            try:
                if tick % HEARTBEAT_TICKS == 0:
                    await self.fanout.heartbeat()
                refresh_all = tick % PRESENCE_REFRESH_TICKS == 0
                for wid in list(rooms) if refresh_all else list(self._presence_dirty):
                    self._presence_dirty.discard(wid)
                    await self.fanout.write_presence(wid, self._registry.local_presence(wid))
                self._presence_dirty -= set(self._presence_dirty) - set(rooms)
                now = time.monotonic()
                for room in list(rooms.values()):
                    gap_since = room.applied.gap_since
                    if gap_since is not None and now - gap_since > GAP_REPAIR_SECONDS:
                        await self.catch_up(room)
                if tick % HEAD_CHECK_TICKS == 0 and rooms:
                    await self._check_heads()
                if tick % HEARTBEAT_TICKS == 0:
                    live = await self.fanout.live_nodes()
                    for room in list(rooms.values()):
                        room.expire_remote_awareness(REMOTE_AWARENESS_MAX_AGE, live)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster maintenance failed")

    async def _check_heads(self) -> None:
        """Pub/sub is at-most-once: a room whose log head in the database is ahead of memory catches up."""
        rooms = self._registry.rooms
        heads = await self._store.heads(list(rooms))
        for wid, last_seq in heads.items():
            room = rooms.get(wid)
            if room is not None and last_seq > room.applied.upto and not room.applied.has_gap:
                await self.catch_up(room)
