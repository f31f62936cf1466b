"""The sync layer's face to the API: the ``/sync/{workspace_id}`` socket handler, the room registry (load,
idle unload, failure rebuild), membership changes on open sockets, and the in-process document API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from pycrdt import Doc
from starlette.datastructures import Headers, QueryParams
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from persistence.db import Database
from persistence.doclog import UnknownDocument, open_document_log
from persistence.membership import find_member, member_ids, user_exists
from persistence.settings import Settings

from . import metrics
from .connection import (
    CLOSE_DOCUMENT_TOO_LARGE,
    CLOSE_EPOCH_CHANGED,
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL,
    CLOSE_NOT_FOUND,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY_SOCKETS,
    CLOSE_UNAUTHENTICATED,
    CLOSE_UNSUPPORTED,
    Connection,
    Principal,
    TextFrame,
    WebSocketChannel,
)
from .fanout import RedisFanout
from .protocol import ProtocolError, encode_awareness
from .room import KEEPALIVE, DocumentTooLarge, MissingDependencies, Room, RoomFailed
from .writer import GroupCommitWriter, WriteRequest

log = logging.getLogger("plait.sync")
NO_STATES = encode_awareness([])
NIL_UUID = "00000000-0000-0000-0000-000000000000"
COMPACTION_SNAPSHOT_RATIO = 8  # a tail of 1/8 of the snapshot's bytes is worth re-encoding the document
COMPACTION_ROWS_CAP = 20  # ... and so is one of 20 x compaction_max_updates rows, whatever their size

Authenticate = Callable[[str], str | None]  # token -> the user id it speaks for, if valid and unexpired
DurableListener = Callable[[Room, list[WriteRequest]], None]


class SyncService:
    def __init__(self, db: Database, settings: Settings, authenticate: Authenticate) -> None:
        self.db = db
        self.settings = settings
        self.authenticate = authenticate
        self.store = open_document_log(db)
        self.writer = GroupCommitWriter(
            self.store, max_batch=settings.group_commit_max_batch, max_wait_ms=settings.group_commit_max_wait_ms
        )
        self.rooms: dict[str, Room] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._user_conns: dict[tuple[str, str], set[Connection]] = {}
        self._sockets = 0  # accepted and not yet ended (PLAIT_MAX_SOCKETS_PER_NODE)
        self._user_sockets: dict[str, int] = {}  # joined sockets per account (PLAIT_MAX_SOCKETS_PER_USER)
        self._durable_listeners: list[DurableListener] = []
        self._janitor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._members: dict[str, tuple[float, set[str]]] = {}
        self.node_id = settings.node_id or uuid.uuid4().hex[:12]
        self.fanout: RedisFanout | None = None
        if settings.redis_url:
            self.fanout = RedisFanout(
                settings.redis_url, settings.redis_namespace, self.node_id, settings.presence_ttl_seconds
            )
        self._presence_dirty: set[str] = set()
        self._cluster: asyncio.Task[None] | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        # Compile the statements of a join before the first one (a cold join right after a restart paid
        # ~20 ms for it).
        await self.store.warm_up()
        await find_member(self.db, NIL_UUID, NIL_UUID)
        self.writer.start()
        self._janitor = asyncio.create_task(self._janitor_loop(), name="plait-sync-janitor")
        if self.fanout is not None:
            self.fanout.on("doc", self._on_remote_update)
            self.fanout.on("aw", self._on_remote_awareness)
            self.fanout.on("awq", self._on_awareness_query)
            self.fanout.on("awr", self._on_awareness_answer)
            self.fanout.on("members", self._on_remote_membership)
            self.fanout.on("users", self._on_remote_user_closed)
            self.fanout.start(on_reconnect=self._redis_reconnected)
            await self.fanout.heartbeat()
            self._cluster = asyncio.create_task(self._cluster_loop(), name="plait-cluster")

    async def stop(self) -> None:
        """Stop taking changes: close the sockets, drain the writer, fold the logs. The store and Redis stay
        open for the workers that derive from what was committed; ``close`` ends them after those stop."""
        for room in list(self.rooms.values()):
            for conn in list(room.conns):
                conn.close(CLOSE_SERVICE_RESTART, "server restarting, reconnect")
        await self.writer.stop()
        for task in (self._janitor, self._cluster):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._compact_all(within=10.0)
        if self.fanout is not None:
            for wid in list(self.rooms):
                await self.fanout.write_presence(wid, {})
        await asyncio.sleep(0.05)  # let close frames go out

    async def close(self) -> None:
        """Close the document store and the Redis connections (after ``stop`` and the derived workers)."""
        await self.store.close()
        if self.fanout is not None:
            await self.fanout.stop()

    async def _compact_all(self, within: float) -> None:
        """At shutdown: snapshot every room with a log tail, so the next start loads each as one chunk."""
        for room in self.rooms.values():
            if room.foldable:
                self._compact_soon(room)
        pending = [t for t in self._tasks if not t.done()]  # compactions are the only tasks spawned here
        if pending:
            _, late = await asyncio.wait(pending, timeout=within)
            if late:
                log.warning(
                    "shutdown: %d compaction(s) still running after %.0f s, left to the next start", len(late), within
                )

    def on_durable(self, listener: DurableListener) -> None:
        """Call ``listener(room, requests)`` after updates are committed (multi-node fan-out, notifications)."""
        self._durable_listeners.append(listener)

    # ---- the socket ----------------------------------------------------------------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send, workspace_id: str) -> None:
        """One sync socket (an ASGI ``websocket`` scope), from the upgrade to its close."""
        channel = WebSocketChannel(receive, send, f"/sync/{workspace_id}")
        # Accept first, then refuse with a close code: a refusal before the upgrade reaches y-websocket as
        # 1006, and it would retry for ever.
        try:
            await channel.accept()
        except (WebSocketDisconnect, OSError):
            return
        most = self.settings.max_sockets_per_node
        if most and self._sockets >= most:
            await self._refuse(channel, CLOSE_TOO_MANY_SOCKETS, "server at its socket limit, retry later")
            return
        # One coroutine frame for the socket's life (no nested helpers: s5 counts memory per idle connection).
        self._sockets += 1
        user_id: str | None = None
        try:
            admitted = await self._admit(scope, channel, workspace_id)
            if admitted is None:
                return
            room, conn = admitted
            # Counted with no await between the check and the count: sockets admitted concurrently cannot all
            # pass it (admission holds nothing once it returns).
            most = self.settings.max_sockets_per_user
            if most and self._user_sockets.get(conn.user_id, 0) >= most:
                await self._refuse(channel, CLOSE_TOO_MANY_SOCKETS, "too many sockets for this account, retry later")
                return
            user_id = conn.user_id
            self._user_sockets[user_id] = self._user_sockets.get(user_id, 0) + 1
            conn.start()
            key = (workspace_id, user_id)
            self._user_conns.setdefault(key, set()).add(conn)
            metrics.CONNECTIONS.labels(conn.role).inc()
            room.join(conn)
            self._presence_changed(workspace_id)
            try:
                await self._read_loop(room, conn, channel)
            finally:
                metrics.CONNECTIONS.labels(conn.role).dec()
                room.leave(conn)
                self._presence_changed(workspace_id)
                conns = self._user_conns.get(key)
                if conns is not None:
                    conns.discard(conn)
                    if not conns:
                        del self._user_conns[key]
                await conn.stop()
        finally:
            self._sockets -= 1
            if user_id is not None:
                left = self._user_sockets.pop(user_id, 1) - 1
                if left:
                    self._user_sockets[user_id] = left

    async def _admit(
        self, scope: Scope, channel: WebSocketChannel, workspace_id: str
    ) -> tuple[Room, Connection] | None:
        """Who is asking, for which room: the socket's room and connection, or ``None`` once refused with a
        close code. Its own frame, so that nothing read here (the token, the query, the membership row) stays
        referenced for the hours a socket lives."""
        headers = Headers(scope=scope)
        if not self._origin_allowed(headers):
            await self._refuse(channel, CLOSE_FORBIDDEN, "origin not allowed")
            return None
        query = QueryParams(scope.get("query_string", b""))
        try:
            token = _token(query, headers)
            user_id = self.authenticate(token) if token else None
            if user_id is None:
                await self._refuse(channel, CLOSE_UNAUTHENTICATED, "missing, invalid or expired token")
                return None
            # One query on the way in: the membership lookup joins the account, so a member's account exists.
            member = await find_member(self.db, workspace_id, user_id) if _is_uuid(workspace_id) else None
            if member is None:
                if not await user_exists(self.db, user_id):
                    await self._refuse(channel, CLOSE_UNAUTHENTICATED, "account no longer exists")
                else:
                    await self._refuse(channel, CLOSE_NOT_FOUND, "workspace not found")
                return None
            room = await self.get_room(workspace_id)
        except UnknownDocument:
            await self._refuse(channel, CLOSE_NOT_FOUND, "workspace not found")
            return None
        except Exception as exc:  # database unreachable: a clean, retryable close instead of a dead socket
            log.warning("refusing socket to %s: storage unavailable (%r)", workspace_id, exc)
            await self._refuse(channel, CLOSE_INTERNAL, "storage unavailable, reconnect")
            return None
        epoch = query.get("epoch")
        if epoch and epoch != room.epoch:
            # The client's history belongs to a previous life of this document (storage reset or restored from
            # a backup): merging it would duplicate content. It must drop its local copy and reload.
            await self._refuse(channel, CLOSE_EPOCH_CHANGED, f"workspace was restored, reload (epoch {room.epoch})")
            return None
        conn = Connection(
            channel,
            workspace_id=workspace_id,
            user_id=user_id,
            display_name=member.display_name,
            role=member.role,
            max_queue_bytes=self.settings.send_queue_max_bytes,
            max_queue_messages=self.settings.send_queue_max_messages,
            stall_seconds=self.settings.send_stall_seconds,
        )
        return room, conn

    async def _read_loop(self, room: Room, conn: Connection, channel: WebSocketChannel) -> None:
        limit = self.settings.max_message_bytes
        rate = self.settings.quota_socket_bytes_per_second
        try:
            async for data in channel:
                if conn.closed:
                    return
                metrics.BYTES_IN.inc(len(data))
                if len(data) > limit:
                    return self._close(conn, CLOSE_TOO_BIG, "message too big")
                if not conn.allow_bytes(len(data), rate, float(max(limit, rate))):
                    return self._close(conn, CLOSE_RATE_LIMITED, "rate quota exceeded, retry later")
                if room.broken:
                    return self._close(conn, CLOSE_INTERNAL, "storage failure, reconnect")
                try:
                    await room.handle(conn, data)
                except MissingDependencies as exc:
                    log.warning(
                        "closing conn=%s user=%s: update with missing dependencies: %s", conn.id, conn.user_id, exc
                    )
                    return self._close(conn, CLOSE_UNSUPPORTED, "update with missing dependencies")
                except ProtocolError as exc:
                    log.warning("closing conn=%s user=%s: malformed frame: %s", conn.id, conn.user_id, exc)
                    return self._close(conn, CLOSE_UNSUPPORTED, "malformed message")
                except RoomFailed:
                    return self._close(conn, CLOSE_INTERNAL, "storage failure, reconnect")
                except DocumentTooLarge:
                    return self._close(conn, CLOSE_DOCUMENT_TOO_LARGE, "document size quota reached")
        except TextFrame:
            self._close(conn, CLOSE_UNSUPPORTED, "binary frames only")
        except WebSocketDisconnect:
            pass

    def _close(self, conn: Connection, code: int, reason: str) -> None:
        metrics.CLOSES.labels(str(code)).inc()
        conn.close(code, reason)

    async def _refuse(self, channel: WebSocketChannel, code: int, reason: str) -> None:
        metrics.CLOSES.labels(str(code)).inc()
        await channel.close(code, reason)

    def _origin_allowed(self, headers: Headers) -> bool:
        """Browsers send Origin; only the server's own origin and configured ones may open a socket."""
        origin = headers.get("origin")
        if not origin:
            return True  # not a browser: authentication decides
        if origin in self.settings.allowed_origins or "*" in self.settings.allowed_origins:
            return True
        host = headers.get("host", "")
        return urlsplit(origin).netloc == host

    # ---- rooms ---------------------------------------------------------------------------------------

    async def get_room(self, workspace_id: str) -> Room:
        """The loaded room, or load it. One lock per workspace: concurrent first joins all get the same room
        (pycrdt-websocket's first-join race cannot happen)."""
        room = self.rooms.get(workspace_id)
        if room is not None and not room.broken:
            return room
        lock = self._load_locks.setdefault(workspace_id, asyncio.Lock())
        async with lock:
            room = self.rooms.get(workspace_id)
            if room is not None and not room.broken:
                return room
            started = time.perf_counter()
            stored = await self.store.load(workspace_id)
            room = Room(workspace_id, stored, self)
            self.rooms[workspace_id] = room
            metrics.ROOMS.set(len(self.rooms))
            if self.fanout is not None:
                self.fanout.query_awareness(workspace_id)
            log.info(
                "loaded room %s (%d log rows after snapshot) in %.1f ms",
                workspace_id,
                len(stored.updates),
                (time.perf_counter() - started) * 1000,
            )
        if not lock.locked():
            self._load_locks.pop(workspace_id, None)
        return room

    @asynccontextmanager
    async def document(self, workspace_id: str) -> AsyncIterator[Room]:
        """The live room for server-side reads and changes (``await room.change(principal, fn)``); kept
        loaded while in use."""
        room = await self.get_room(workspace_id)
        room.leases += 1
        try:
            yield room
        finally:
            room.leases -= 1
            room.touch()

    async def change(self, workspace_id: str, user_id: str | None, fn: Callable[[Doc[Any]], object]) -> object:
        """Change a workspace document on behalf of ``user_id``; durable and broadcast when this returns."""
        async with self.document(workspace_id) as room:
            return await room.change(Principal(user_id, "rest"), fn)

    async def read_document(self, workspace_id: str) -> Doc[Any]:
        """A document to read: the live one when loaded, else rebuilt from storage without loading a room."""
        room = self.rooms.get(workspace_id)
        if room is not None and not room.broken:
            return room.doc
        return (await self.store.load(workspace_id)).to_doc()

    async def membership_changed(self, workspace_id: str, user_id: str, role: str | None) -> None:
        """Apply a role change (None: removed) to the user's open sockets in that workspace, at once — on
        every node."""
        self._apply_membership(workspace_id, user_id, role)
        if self.fanout is not None:
            body = {"workspace_id": workspace_id, "user_id": user_id, "role": role, "node": self.node_id}
            self.fanout.publish("members", workspace_id, json.dumps(body).encode())

    async def close_user(
        self, user_id: str, code: int = CLOSE_UNAUTHENTICATED, reason: str = "account disabled or deleted"
    ) -> int:
        """Close every sync socket of an account, on every node (its account was disabled or deleted: a socket
        opened before would otherwise keep reading and writing). Returns how many were closed on this node.
        4401 by default: y-websocket stops reconnecting, and a new socket is refused by authentication."""
        closed = self._close_user_sockets(user_id, code, reason)
        if self.fanout is not None:
            body = {"user_id": user_id, "code": code, "reason": reason, "node": self.node_id}
            self.fanout.publish("users", user_id, json.dumps(body).encode())
        return closed

    def _close_user_sockets(self, user_id: str, code: int, reason: str) -> int:
        conns = [c for (_, uid), cs in self._user_conns.items() if uid == user_id for c in cs if not c.closed]
        for conn in conns:
            self._close(conn, code, reason)
        if conns:
            log.info("closed %d socket(s) of user %s (%d %s)", len(conns), user_id, code, reason)
        return len(conns)

    def _on_remote_user_closed(self, _key: str, data: bytes) -> None:
        body = json.loads(data)
        if body.get("node") != self.node_id:
            self._close_user_sockets(body["user_id"], int(body["code"]), str(body.get("reason", "")))

    def _apply_membership(self, workspace_id: str, user_id: str, role: str | None) -> None:
        self._members.pop(workspace_id, None)
        for conn in list(self._user_conns.get((workspace_id, user_id), ())):
            if role is None:
                self._close(conn, CLOSE_FORBIDDEN, "access withdrawn")
            else:
                metrics.CONNECTIONS.labels(conn.role).dec()
                conn.role = role
                metrics.CONNECTIONS.labels(conn.role).inc()

    def connections(self, workspace_id: str) -> list[Connection]:
        room = self.rooms.get(workspace_id)
        return list(room.conns) if room else []

    # ---- RoomHost --------------------------------------------------------------------------------------

    def submit_write(self, request: WriteRequest) -> None:
        self.writer.submit(request)

    async def member_ids(self, workspace_id: str) -> set[str]:
        """Member ids (cached briefly; membership changes on this node invalidate at once)."""
        cached = self._members.get(workspace_id)
        if cached is not None and time.monotonic() - cached[0] < 5:
            return cached[1]
        ids = await member_ids(self.db, workspace_id)
        self._members[workspace_id] = (time.monotonic(), ids)
        return ids

    def room_failed(self, room: Room) -> None:
        if self.rooms.get(room.workspace_id) is room:
            del self.rooms[room.workspace_id]
            metrics.ROOMS.set(len(self.rooms))

    def room_idle(self, room: Room) -> None:
        return None  # the janitor unloads rooms idle for longer than room_idle_seconds

    def awareness_accepted(self, room: Room, payload: bytes) -> None:
        if self.fanout is not None:
            self.fanout.publish_awareness(room.workspace_id, payload)

    def updates_durable(self, room: Room, requests: list[WriteRequest]) -> None:
        room.compacted_for_unload = False
        if self.fanout is not None:
            for r in requests:
                self.fanout.publish_update(room.workspace_id, r.seq or 0, r.data)
        for listener in self._durable_listeners:
            try:
                listener(room, requests)
            except Exception:
                log.exception("durable-update listener failed")
        if self._compaction_due(room):
            self._compact_soon(room)

    def _compaction_due(self, room: Room) -> bool:
        """Fold the log tail once it is worth an encoding of the whole document: at least
        ``compaction_max_updates`` rows holding an eighth of the snapshot's bytes, so that the encodings' cost
        per update stays bounded as a workspace grows (a 1.5 MB document typed into at 100 updates/s was
        encoded every 5 s, and those large short-lived buffers fragmented the heap: most of the soak's memory
        drift). ``compaction_max_bytes`` or 20 times the row count fold it in any case (bounded replay after
        a crash; unload and shutdown fold it too)."""
        most = self.settings.compaction_max_updates
        if room.tail_bytes >= self.settings.compaction_max_bytes or room.tail_count >= COMPACTION_ROWS_CAP * most:
            return True
        return room.tail_count >= most and room.tail_bytes * COMPACTION_SNAPSHOT_RATIO >= room.snapshot_bytes

    async def _compact(self, room: Room) -> None:
        """Fold the log into a snapshot of the room's memory (one encoding; no read and rebuild of the whole
        document from the database)."""
        try:
            taken = await room.snapshot()
            if taken is None:
                return
            data, upto = taken
            result = await self.store.save_snapshot(room.workspace_id, data, upto)
            if result is not None:
                _, removed = result
                metrics.COMPACTIONS.inc()
                room.snapshot_bytes = len(data)
                room.tail_count = max(0, room.last_seq - upto)
                room.tail_bytes = 0 if room.tail_count == 0 else room.tail_bytes // 2
                log.info(
                    "compacted %s: %d rows folded into the snapshot (upto seq %d)", room.workspace_id, removed, upto
                )
        except RoomFailed:
            pass  # the room is being rebuilt from the database; its log stays as it is
        except UnknownDocument:
            log.info("compaction of %s skipped: the workspace was deleted", room.workspace_id)
        except Exception:
            log.exception("compaction of %s failed (nothing lost; retried later)", room.workspace_id)
        finally:
            room.compacting = False

    def _compact_soon(self, room: Room) -> None:
        if not room.compacting:
            room.compacting = True
            self._spawn(self._compact(room))

    # ---- cluster (Redis) -----------------------------------------------------------------------------

    def _on_remote_update(self, workspace_id: str, data: bytes) -> None:
        node, seq, sent, update = RedisFanout.split_update(data)
        room = self.rooms.get(workspace_id)
        if node == self.node_id or room is None or room.broken:
            return
        try:
            room.apply_remote(update, seq)
        except Exception:
            log.exception("remote update %s/%d could not be applied; catching up from the database", workspace_id, seq)
            room.gap_since = 0.0
            return
        metrics.REDIS_LAG.observe(max(0.0, time.time() - sent))

    def _on_remote_awareness(self, workspace_id: str, data: bytes) -> None:
        node, payload = RedisFanout.split_awareness(data)
        room = self.rooms.get(workspace_id)
        if node != self.node_id and room is not None:
            room.apply_remote_awareness(node, payload)

    def _on_awareness_query(self, workspace_id: str, data: bytes) -> None:
        asker, resync = RedisFanout.split_query(data)
        if asker == self.node_id or self.fanout is None:
            return
        room = self.rooms.get(workspace_id)
        payload = room.own_awareness() if room is not None else NO_STATES
        if resync or payload != NO_STATES:
            self.fanout.answer_awareness(workspace_id, asker, payload)

    def _on_awareness_answer(self, workspace_id: str, data: bytes) -> None:
        to_node, node, payload = RedisFanout.split_answer(data)
        room = self.rooms.get(workspace_id)
        if to_node in (self.node_id, "*") and node != self.node_id and room is not None:
            room.replace_remote_awareness(node, payload)

    def _on_remote_membership(self, _key: str, data: bytes) -> None:
        body = json.loads(data)
        if body.get("node") != self.node_id:
            self._apply_membership(body["workspace_id"], body["user_id"], body.get("role"))

    async def catch_up(self, room: Room) -> None:
        stored = await self.store.load(room.workspace_id)
        if self.rooms.get(room.workspace_id) is room and not room.broken:
            room.catch_up(stored)
            metrics.REDIS_GAP_REPAIRS.inc()

    async def catch_up_all(self) -> None:
        for room in list(self.rooms.values()):
            try:
                await self.catch_up(room)
            except Exception:
                log.exception("catch-up of %s failed", room.workspace_id)

    async def _redis_reconnected(self) -> None:
        """Messages published while Redis was away are lost: documents catch up from the database; awareness
        is asked for again (every node answers with its full set, which replaces what this node held, so a
        removal lost in the outage is dropped) and this node's own states are announced to all."""
        await self.catch_up_all()
        assert self.fanout is not None
        for wid, room in list(self.rooms.items()):
            self.fanout.query_awareness(wid, resync=True)
            self.fanout.answer_awareness(wid, "*", room.own_awareness())

    def _presence_changed(self, workspace_id: str) -> None:
        self._presence_dirty.add(workspace_id)

    def local_presence(self, workspace_id: str) -> dict[str, dict[str, Any]]:
        users: dict[str, dict[str, Any]] = {}
        for conn in self.connections(workspace_id):
            if conn.closed:
                continue
            entry = users.setdefault(
                conn.user_id,
                {
                    "user_id": conn.user_id,
                    "display_name": conn.display_name,
                    "connections": 0,
                    "since": conn.connected_at,
                    "last_active": conn.last_active,
                },
            )
            entry["connections"] += 1
            entry["since"] = min(entry["since"], conn.connected_at)
            entry["last_active"] = max(entry["last_active"], conn.last_active)
        return users

    async def presence(self, workspace_id: str) -> list[dict[str, Any]]:
        """Who is connected to the workspace now, on every node."""
        merged = {uid: dict(v) for uid, v in self.local_presence(workspace_id).items()}
        if self.fanout is not None:
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

    async def _cluster_loop(self) -> None:
        """Heartbeat, presence refresh, gap repair and the periodic database check of loaded rooms."""
        assert self.fanout is not None
        tick = 0
        while True:
            await asyncio.sleep(0.25)
            tick += 1
            try:
                if tick % 20 == 0:
                    await self.fanout.heartbeat()
                refresh_all = tick % 40 == 0
                for wid in list(self.rooms) if refresh_all else list(self._presence_dirty):
                    self._presence_dirty.discard(wid)
                    await self.fanout.write_presence(wid, self.local_presence(wid))
                self._presence_dirty -= set(self._presence_dirty) - set(self.rooms)
                now = time.monotonic()
                for room in list(self.rooms.values()):
                    if room.gap_since is not None and now - room.gap_since > 0.5:
                        await self.catch_up(room)
                if tick % 8 == 0 and self.rooms:
                    await self._check_heads()
                if tick % 20 == 0:
                    live = await self.fanout.live_nodes()
                    for room in list(self.rooms.values()):
                        room.expire_remote_awareness(45.0, live)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster maintenance failed")

    async def _check_heads(self) -> None:
        """Pub/sub is at-most-once: a room whose log head in the database is ahead of memory catches up."""
        heads = await self.store.heads(list(self.rooms))
        for wid, last_seq in heads.items():
            room = self.rooms.get(wid)
            if room is not None and last_seq > room.applied_upto and not room.has_gap:
                await self.catch_up(room)

    def _spawn(self, coro: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _janitor_loop(self) -> None:
        """Unload idle rooms and keep quiet sockets alive."""
        interval = max(0.2, min(5.0, self.settings.room_idle_seconds / 2, self.settings.sync_keepalive_seconds / 2))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for wid, room in list(self.rooms.items()):
                if room.unloadable and now - room.idle_since >= self.settings.room_idle_seconds:
                    if room.foldable and not room.compacted_for_unload:
                        # Leave one stored chunk behind: the next load answers fresh joiners with it at once.
                        room.compacted_for_unload = True
                        self._compact_soon(room)
                        continue
                    del self.rooms[wid]
                    room.close()
                    log.info("unloaded idle room %s", wid)
                room.expire_local_awareness(self.settings.awareness_timeout_seconds)
                for conn in list(room.conns):
                    if now - conn.last_sent > self.settings.sync_keepalive_seconds:
                        conn.send(KEEPALIVE)
                        conn.last_sent = now
            metrics.ROOMS.set(len(self.rooms))


def _token(query: QueryParams, headers: Headers) -> str | None:
    token = query.get("token")
    if token:
        return token
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
