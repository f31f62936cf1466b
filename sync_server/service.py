"""The sync layer's face to the rest of the node: the ``/sync/{workspace_id}`` socket, the in-process document
API (change, read, size), membership changes on open sockets, presence and committed-change subscriptions.

It wires the parts and owns their lifecycle: admission (admission.py), the loaded rooms (registry.py), the
group-commit writer (writer.py), compaction (compaction.py) and the other nodes (cluster.py). Rooms report back
through ``RoomEvents`` (committed, failed, awareness), implemented here."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from pycrdt import Doc
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from persistence.db import Database
from persistence.doclog import DocumentLog, UnknownDocument
from persistence.membership import find_member, user_exists
from persistence.settings import Settings

from . import close_codes, metrics
from .admission import Admission, Authenticate, Refusal, epoch_refusal, storage_unavailable
from .close_codes import CloseEvent
from .cluster import Cluster, LocalCluster, NodeHandler, RedisCluster
from .compaction import CompactionPolicy, Compactor
from .connection import Connection, Principal, TextFrame, WebSocketChannel
from .errors import STORAGE_ERRORS, DocumentTooLarge, MissingDependencies, RoomFailed
from .events import CommitListener, Committed
from .fanout import RedisFanout, RedisTarget
from .limits import RoomLimits
from .protocol import ProtocolError
from .registry import RoomRegistry
from .room import Room
from .supervisor import Supervisor
from .writer import GroupCommitWriter, WriteRequest

__all__ = ["Authenticate", "SyncService"]

T = TypeVar("T")
log = logging.getLogger("plait.sync")
NIL_UUID = "00000000-0000-0000-0000-000000000000"
SHUTDOWN_FOLD_SECONDS = 10.0
CLOSE_FRAMES_SECONDS = 0.05  # at stop: let the close frames go out


class SyncService:
    def __init__(self, db: Database, settings: Settings, authenticate: Authenticate, store: DocumentLog) -> None:
        self.db = db
        self.settings = settings
        self._store = store
        self.writer = GroupCommitWriter(
            store, max_batch=settings.group_commit_max_batch, max_wait_ms=settings.group_commit_max_wait_ms
        )
        self.admission = Admission(
            authenticate=authenticate,
            find_member=functools.partial(find_member, db),
            user_exists=functools.partial(user_exists, db),
            allowed_origins=settings.allowed_origins,
        )
        self._sup: Supervisor | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.compactor = Compactor(
            store, CompactionPolicy(settings.compaction_max_updates, settings.compaction_max_bytes), self._run_soon
        )
        self.registry = RoomRegistry(
            db,
            store,
            limits=RoomLimits.from_settings(settings),
            submit=self.writer.submit,
            events=self,
            compactor=self.compactor,
            on_load=self._room_loaded,
            loading=self._room_loading,
            unloaded=self._room_unloaded,
        )
        self._sockets = 0  # accepted and not yet ended (PLAIT_MAX_SOCKETS_PER_NODE)
        self._user_sockets: dict[str, int] = {}  # joined sockets per account (PLAIT_MAX_SOCKETS_PER_USER)
        self._listeners: list[CommitListener] = []
        node_id = settings.node_id or uuid.uuid4().hex[:12]
        self.cluster: Cluster
        if settings.redis_url:
            target = RedisTarget.from_settings(settings)
            fanout = RedisFanout(target, settings.redis_namespace, node_id, settings.presence_ttl_seconds)
            self.cluster = RedisCluster(fanout, self.registry, store)
        else:
            self.cluster = LocalCluster(node_id, self.registry)
        self._session_listeners: list[Callable[[set[str]], None]] = []
        self.cluster.on_message("sessions", self._on_remote_sessions_ended)

    @property
    def rooms(self) -> dict[str, Room]:
        """The loaded rooms (for tests and diagnostics; the API goes through the methods below)."""
        return self.registry.rooms

    @property
    def node_id(self) -> str:
        return self.cluster.node_id

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self, sup: Supervisor) -> None:
        """Start every sync loop under ``sup``: the group-commit writer, the janitor, and the cluster's."""
        self._sup = sup
        # Compile the statements of a join before the first one (docs/performance.md#cold-join).
        await self._store.warm_up()
        await find_member(self.db, NIL_UUID, NIL_UUID)
        sup.spawn("group-commit", self.writer.run())
        s = self.settings
        self._janitor = sup.spawn(
            "sync-janitor",
            self.registry.janitor(s.room_idle_seconds, s.sync_keepalive_seconds, s.awareness_timeout_seconds),
        )
        await self.cluster.start(sup)

    async def stop(self) -> None:
        """Stop taking changes: close the sockets (1012), drain the writer, fold the logs. The store and the
        cluster stay open for the workers that derive from what was committed: ``close_cluster`` and the
        store's ``close`` come after those stop."""
        for room in self.registry:
            for conn in list(room.conns):
                conn.close(close_codes.RESTARTING.code, close_codes.RESTARTING.reason)
        await self.writer.stop()
        if self._janitor is not None:
            await _cancel(self._janitor)
        await self.compactor.fold_all([r for r in self.registry if r.foldable], within=SHUTDOWN_FOLD_SECONDS)
        await self.cluster.leave()
        await asyncio.sleep(CLOSE_FRAMES_SECONDS)

    async def close_cluster(self) -> None:
        """Close the connections to the other nodes (Redis), after the derived workers stopped."""
        await self.cluster.close()

    def _run_soon(self, name: str, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A short job (a compaction) owned by the supervisor; before ``start`` (in-process tests) a plain task."""
        if self._sup is None:
            return asyncio.get_running_loop().create_task(job, name=f"plait-{name}")
        return self._sup.run_soon(name, job)

    # ---- the facade ----------------------------------------------------------------------------------

    def subscribe(self, listener: CommitListener) -> None:
        """Call ``listener(commits)`` after each batch of a workspace's changes is committed, in log order."""
        self._listeners.append(listener)

    async def change(self, workspace_id: str, user_id: str | None, fn: Callable[[Doc[Any]], T]) -> T:
        """Change a workspace document on behalf of ``user_id``; durable and broadcast when this returns."""
        async with self.registry.lease(workspace_id) as room:
            return await room.change(Principal(user_id, "rest"), fn)

    async def read_document(self, workspace_id: str) -> Doc[Any]:
        """A document to read: the live one when loaded, else rebuilt from storage without loading a room."""
        room = self.registry.loaded(workspace_id)
        if room is not None:
            return room.doc
        stored = await self._store.load(workspace_id)
        doc: Doc[Any] = Doc()
        for chunk in stored.chunks():
            doc.apply_update(chunk)
        return doc

    async def document_size(self, workspace_id: str) -> int:
        """The stored size of the document (snapshot + log tail): what the size quota counts."""
        room = self.registry.loaded(workspace_id)
        if room is not None:
            return room.size_estimate
        info = await self._store.info(workspace_id)
        return int(str(info["snapshot_bytes"])) + int(str(info["log_bytes"]))

    async def document_info(self, workspace_id: str) -> dict[str, Any]:
        """Epoch, log head and storage sizes of the stored document."""
        info: dict[str, Any] = await self._store.info(workspace_id)
        return info

    async def log_head(self, workspace_id: str) -> int:
        """The document's last committed log sequence number (0 when nothing was written)."""
        heads = await self._store.heads([workspace_id])
        return heads.get(workspace_id, 0)

    async def membership_changed(self, workspace_id: str, user_id: str, role: str | None) -> None:
        """Apply a role change (None: removed) to the user's open sockets in that workspace, at once — on
        every node."""
        self.registry.apply_membership(workspace_id, user_id, role)
        self.cluster.membership_changed(workspace_id, user_id, role)

    async def close_user(self, user_id: str, event: CloseEvent = close_codes.ACCOUNT_DISABLED) -> int:
        """Close every sync socket of an account, on every node (its account was disabled or deleted: a socket
        opened before would otherwise keep reading and writing). Returns how many were closed on this node.
        4401 by default: y-websocket stops reconnecting, and a new socket is refused by authentication."""
        closed = self.registry.close_user(user_id, event)
        self.cluster.user_closed(user_id, event)
        return closed

    def end_sessions(self, session_ids: set[str], event: CloseEvent = close_codes.SESSION_ENDED) -> int:
        """Close the sockets of revoked sessions (or deleted access tokens) on every node, and tell the
        ``on_sessions_ended`` listeners (the notification streams) on every node. Returns how many sockets
        were closed on this node."""
        if not session_ids:
            return 0
        closed = self._sessions_ended(session_ids, event)
        body = {"ids": sorted(session_ids), "code": event.code, "reason": event.reason}
        self.cluster.publish("sessions", "", json.dumps(body).encode())
        return closed

    def open_session_ids(self) -> set[str]:
        """The sessions (and personal access tokens) this node's open sockets were admitted with."""
        return self.registry.open_session_ids()

    def end_sessions_here(self, session_ids: set[str], event: CloseEvent = close_codes.SESSION_ENDED) -> int:
        """``end_sessions`` on this node only: for what each node finds itself (the session sweep)."""
        return self._sessions_ended(session_ids, event) if session_ids else 0

    def on_sessions_ended(self, listener: Callable[[set[str]], None]) -> None:
        """Call ``listener(session_ids)`` when sessions end, on this node or another."""
        self._session_listeners.append(listener)

    def _sessions_ended(self, session_ids: set[str], event: CloseEvent) -> int:
        closed = self.registry.close_sessions(session_ids, event)
        for listener in self._session_listeners:
            try:
                listener(session_ids)
            except Exception:
                log.exception("session listener failed")
        return closed

    def _on_remote_sessions_ended(self, _key: str, data: bytes) -> None:
        body = json.loads(data)
        self._sessions_ended(set(body["ids"]), CloseEvent(int(body["code"]), str(body.get("reason", ""))))

    async def presence(self, workspace_id: str) -> list[dict[str, Any]]:
        """Who is connected to the workspace now, on every node."""
        return await self.cluster.presence(workspace_id)

    def publish_to_nodes(self, kind: str, key: str, payload: bytes) -> None:
        """Tell the other nodes (nothing on a single node): fire and forget, at most once."""
        self.cluster.publish(kind, key, payload)

    def on_node_message(self, kind: str, handler: NodeHandler) -> None:
        """Handle ``publish_to_nodes`` messages of ``kind`` from the other nodes."""
        self.cluster.on_message(kind, handler)

    @property
    def clustered(self) -> bool:
        return self.cluster.clustered

    async def cluster_reachable(self) -> bool:
        """Readiness: whether the other nodes can be reached (Redis answers); True on a single node."""
        return await self.cluster.ping()

    # ---- RoomEvents ----------------------------------------------------------------------------------

    def committed(self, room: Room, requests: list[WriteRequest]) -> None:
        self.cluster.committed(room.workspace_id, requests)
        if self._listeners:
            commits = commits_of(requests)
            for listener in self._listeners:
                try:
                    listener(commits)
                except Exception:
                    log.exception("commit listener failed")
        self.compactor.committed(room)

    def failed(self, room: Room) -> None:
        self.registry.drop(room)

    def awareness(self, room: Room, payload: bytes) -> None:
        self.cluster.awareness(room.workspace_id, payload)

    def _room_loaded(self, workspace_id: str) -> None:
        self.cluster.room_loaded(workspace_id)

    async def _room_loading(self, workspace_id: str) -> None:
        await self.cluster.room_loading(workspace_id)

    def _room_unloaded(self, workspace_id: str) -> None:
        self.cluster.room_unloaded(workspace_id)

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
            await _refuse(channel, close_codes.NODE_FULL)
            return
        # One coroutine frame for the socket's life (no nested helpers: docs/performance.md#connection-memory).
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
                await _refuse(channel, close_codes.USER_FULL)
                return
            user_id = conn.user_id
            self._user_sockets[user_id] = self._user_sockets.get(user_id, 0) + 1
            conn.start()
            self.registry.add(conn)
            metrics.CONNECTIONS.labels(conn.role).inc()
            room.join(conn)
            self.cluster.presence_changed(workspace_id)
            try:
                await self._read_loop(room, conn, channel)
            finally:
                metrics.CONNECTIONS.labels(conn.role).dec()
                room.leave(conn)
                self.cluster.presence_changed(workspace_id)
                self.registry.remove(conn)
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
        """The socket's room and connection, or ``None`` once refused with a close code. Its own frame, so that
        nothing read here stays referenced for the hours a socket lives."""
        verdict = await self.admission.admit(scope, workspace_id)
        if isinstance(verdict, Refusal):
            await _refuse(channel, verdict.event)
            return None
        try:
            room = await self.registry.get(workspace_id)
        except UnknownDocument:
            await _refuse(channel, close_codes.WORKSPACE_NOT_FOUND)
            return None
        except STORAGE_ERRORS as exc:
            await _refuse(channel, storage_unavailable(workspace_id, exc).event)
            return None
        refusal = epoch_refusal(verdict, room.epoch)
        if refusal is not None:
            await _refuse(channel, refusal.event)
            return None
        conn = Connection(
            channel,
            workspace_id=workspace_id,
            user_id=verdict.user_id,
            display_name=verdict.display_name,
            role=verdict.role,
            max_queue_bytes=self.settings.send_queue_max_bytes,
            max_queue_messages=self.settings.send_queue_max_messages,
            stall_seconds=self.settings.send_stall_seconds,
            session_id=verdict.session_id,
            read_scope=verdict.read_only,
        )
        return room, conn

    async def _read_loop(self, room: Room, conn: Connection, channel: WebSocketChannel) -> None:
        """Frames to the room, until the socket ends; every failure of one socket maps to its close event here."""
        limit = self.settings.max_message_bytes
        rate = self.settings.quota_socket_bytes_per_second
        try:
            async for data in channel:
                if conn.closed:
                    return
                metrics.BYTES_IN.inc(len(data))
                if len(data) > limit:
                    return conn.end(close_codes.MESSAGE_TOO_BIG)
                if not conn.allow_bytes(len(data), rate, float(max(limit, rate))):
                    return conn.end(close_codes.RATE_QUOTA)
                if room.broken:
                    return conn.end(close_codes.STORAGE_FAILURE)
                try:
                    await room.handle(conn, data)
                except MissingDependencies as exc:
                    log.warning(
                        "closing conn=%s user=%s: update with missing dependencies: %s", conn.id, conn.user_id, exc
                    )
                    return conn.end(close_codes.MISSING_DEPENDENCIES)
                except ProtocolError as exc:
                    log.warning("closing conn=%s user=%s: malformed frame: %s", conn.id, conn.user_id, exc)
                    return conn.end(close_codes.MALFORMED)
                except RoomFailed:
                    return conn.end(close_codes.STORAGE_FAILURE)
                except DocumentTooLarge:
                    return conn.end(close_codes.DOCUMENT_QUOTA)
        except TextFrame:
            conn.end(close_codes.BINARY_ONLY)
        except WebSocketDisconnect:
            pass


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _refuse(channel: WebSocketChannel, event: CloseEvent) -> None:
    metrics.CLOSES.labels(str(event.code)).inc()
    await channel.close(event.code, event.reason)


def commits_of(requests: Sequence[WriteRequest]) -> list[Committed]:
    """The typed events listeners get for committed requests (never the requests themselves)."""
    return [Committed(r.workspace_id, r.seq or 0, r.actor_id, r.source, r.changes) for r in requests]
