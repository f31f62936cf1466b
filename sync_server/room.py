"""A workspace room: the order and durability of changes to one document, and its sockets.

Path of one update (see docs/architecture.md): under the room lock the update is applied with the sender as
transaction origin, the *new* part (``delta``) is computed against the state vector from just before, and the
delta is queued for the group-commit writer in apply order. Only when the writer reports the commit does the
room broadcast — always the durable prefix of its pending queue, in order, merged into one frame.

Collaborators: the document (built or cold, the handshake) in ``document.py``, awareness in ``awareness.py``,
the multi-node seq bookkeeping in ``applied.py`` and the log counters in ``compaction.py``. The room reaches
the rest of the node only through what it was built with: ``submit`` (the writer), ``events`` (the service),
``members`` (for the schema guard) and its ``RoomLimits``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from pycrdt import Doc, create_awareness_message, create_update_message, merge_updates

from persistence.doclog import StoredDocument, UnknownDocument

from . import close_codes, metrics
from . import guard as schema_guard
from .applied import AppliedSeqs
from .awareness import RoomAwareness
from .compaction import LogStats
from .connection import Connection, Principal, binary_frame
from .document import RoomDocument
from .errors import DocumentTooLarge, InvalidUpdate, MissingDependencies, RoomFailed
from .limits import RoomLimits
from .protocol import (
    EMPTY_STATE_VECTOR,
    EMPTY_UPDATE,
    MSG_AUTH,
    MSG_AWARENESS,
    MSG_QUERY_AWARENESS,
    MSG_SYNC,
    SYNC_STEP1,
    SYNC_STEP2,
    ProtocolError,
    parse_awareness,
    parse_message,
)
from .schema import SCHEMA_VERSION, TaskChange, apply_upgrade, plan_upgrade
from .tracker import TaskTracker, Touched
from .writer import WriteRequest

__all__ = ["KEEPALIVE", "PENDING_LIMIT", "SERVER", "DocumentTooLarge", "MissingDependencies", "Room", "RoomFailed"]

log = logging.getLogger("plait.sync.room")
T = TypeVar("T")
PENDING_LIMIT = 2000  # uncommitted updates per room before socket readers wait
SERVER = Principal(None, "server")
REMOTE = Principal(None, "remote")

# An awareness update with no entries: the cheapest message that resets y-websocket's 30 s idle watchdog.
KEEPALIVE = create_awareness_message(b"\x00")

Submit = Callable[[WriteRequest], None]
Members = Callable[[str], Awaitable[Mapping[str, str]]]  # user id -> role


class RoomEvents(Protocol):
    """What a room tells its owner (the service): synchronous and cheap, called from the room's own paths."""

    def committed(self, room: Room, requests: list[WriteRequest]) -> None: ...
    def failed(self, room: Room) -> None: ...
    def awareness(self, room: Room, payload: bytes) -> None: ...


class _Transacted(NamedTuple):
    delta: bytes
    changes: tuple[object, ...]
    touched: Touched
    result: Any
    error: BaseException | None


class Room:
    # Slots, not a per-instance dict: an empty room stays small (docs/performance.md#room-memory).
    __slots__ = (
        "_drained",
        "_events",
        "_members",
        "_pending",
        "_submit",
        "_tasks",
        "_tracker",
        "_upgraded",
        "applied",
        "awareness",
        "broken",
        "conns",
        "document",
        "epoch",
        "idle_since",
        "leases",
        "limits",
        "lock",
        "log",
        "workspace_id",
    )

    def __init__(
        self,
        workspace_id: str,
        stored: StoredDocument,
        *,
        submit: Submit,
        events: RoomEvents,
        members: Members,
        limits: RoomLimits,
    ) -> None:
        self.workspace_id = workspace_id
        self._submit = submit
        self._events = events
        self._members = members
        self.limits = limits
        # The Doc is built when something first needs it (see ``RoomDocument.doc``).
        self.document = RoomDocument(workspace_id, stored.chunks())
        self.epoch = stored.epoch
        self.applied = AppliedSeqs(stored.last_seq)
        self.log = LogStats(len(stored.updates), stored.tail_bytes(), len(stored.snapshot or b""))
        self.lock = asyncio.Lock()
        self.conns: set[Connection] = set()
        self.leases = 0
        self.idle_since = time.monotonic()
        self.broken = False
        self.awareness = RoomAwareness(limits)
        self._pending: deque[WriteRequest] = deque()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: set[asyncio.Task[None]] = set()  # schema guards waiting for their change's commit
        self._tracker: TaskTracker | None = None
        self._upgraded = False  # whether the document was checked for an upgrade (on its first guarded change)

    @property
    def doc(self) -> Doc[Any]:
        return self.document.doc

    @property
    def built(self) -> bool:
        return self.document.built

    @property
    def last_seq(self) -> int:
        return self.applied.last_seq

    @property
    def size_estimate(self) -> int:
        """Bytes stored for this document (snapshot + log tail): what the size quota counts."""
        return self.log.stored_bytes

    @property
    def foldable(self) -> bool:
        """Its memory holds log rows not yet in the stored snapshot (a Doc that was never built changed nothing)."""
        return bool(self.log.tail_count) and self.document.built and not self.broken

    @property
    def tracker(self) -> TaskTracker:
        """Built before the first change, not at load: reading every task (a large workspace: a few hundred
        ms) must not delay the first join of a room loaded from the database. Take it *before* a transaction
        whose events it must see."""
        if self._tracker is None:
            self._tracker = TaskTracker(self.doc)
        return self._tracker

    async def snapshot(self) -> tuple[bytes, int] | None:
        """The durable document as one update and the log seq it covers at least (for the store's snapshot);
        None if the Doc was never built (nothing changed since it was loaded)."""
        async with self.lock:
            self._check_usable()
            await self._drained.wait()  # only durable state: nothing applied here is still uncommitted
            self._check_usable()
            data = self.document.whole_update()
            return None if data is None else (data, self.applied.upto)

    def close(self) -> None:
        """The room is unloaded: release the document observer."""
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    # ---- membership of sockets -------------------------------------------------------------------------

    def join(self, conn: Connection) -> None:
        self.conns.add(conn)
        step1 = self.document.step1_for(conn)
        if step1 is not None:
            conn.send(step1)
            conn.step2_due = True
        if self.awareness:
            conn.send(create_awareness_message(self.awareness.everyone()))

    def leave(self, conn: Connection) -> None:
        self.conns.discard(conn)
        self.document.forget(conn)
        self._local_awareness(self.awareness.remove_owned_by(conn))
        self.touch()

    def touch(self) -> None:
        self.idle_since = time.monotonic()

    @property
    def unloadable(self) -> bool:
        return not self.conns and self.leases == 0 and not self._pending and not self.log.compacting and not self._tasks

    # ---- messages from a socket ----------------------------------------------------------------------

    async def handle(self, conn: Connection, data: bytes) -> None:
        msg = parse_message(data)
        conn.last_active = time.time()
        if msg.type == MSG_SYNC:
            if msg.sync_type == SYNC_STEP1:
                await self._answer_step1(conn, msg.payload)
            elif conn.read_only:
                metrics.UPDATES_DROPPED.labels("viewer").inc()
            elif msg.payload == EMPTY_UPDATE:
                # every client's step 2 when it has nothing new: no need to wake the room for it
                if msg.sync_type == SYNC_STEP2:
                    await self._step2_arrived(conn)
            else:
                try:
                    await self.apply(conn.principal, msg.payload, received=time.perf_counter(), wait=False)
                except MissingDependencies:
                    # A client reconnecting (a node restarted, a network blip) may have sent edits the server
                    # never read; what it edits next depends on them, and reaches the server before its step 2
                    # (the answer to our step 1) brings them. Hold those until then instead of closing the
                    # socket (1003) again and again while its user types; still missing after it: refused.
                    if self.broken or msg.sync_type == SYNC_STEP2 or not conn.hold(msg.payload):
                        raise
                    return
                if msg.sync_type == SYNC_STEP2:
                    await self._step2_arrived(conn)
        elif msg.type == MSG_AWARENESS:
            # Echo to the sender too: y-websocket closes a socket that hears nothing for 30 s.
            self._local_awareness(self.awareness.accept(conn, msg.payload))
        elif msg.type == MSG_QUERY_AWARENESS:
            conn.send(create_awareness_message(self.awareness.everyone()))
        elif msg.type == MSG_AUTH:
            pass  # authentication happens before joining; nothing to do

    async def _step2_arrived(self, conn: Connection) -> None:
        for update in conn.step2_arrived():
            await self.apply(conn.principal, update, received=time.perf_counter(), wait=False)

    async def _answer_step1(self, conn: Connection, state_vector: bytes) -> None:
        async with self.lock:
            self._check_usable()
            # Only durable state goes out: wait for what is already applied to be committed.
            await self._drained.wait()
            self._check_usable()
            if state_vector == EMPTY_STATE_VECTOR:
                self.document.forget(conn)  # a fresh client has nothing the server lacks
            try:
                message, shared = self.document.step2(state_vector, self.limits.send_queue_max_bytes // 2)
            except Exception as exc:
                raise ProtocolError("invalid state vector") from exc
            if conn.send(message, shared=shared, fragment=True):
                conn.synced = True

    # ---- applying changes ----------------------------------------------------------------------------

    def _transact(self, origin: Principal, fn: Callable[[Doc[Any]], object]) -> _Transacted:
        """Run ``fn(doc)`` in one transaction attributed to ``origin``: the new part of the document (``delta``),
        the task changes the tracker recorded and the tasks touched, ``fn``'s result or its error. The shared
        preamble of every writer (a client, the server, another node)."""
        tracker = self.tracker
        doc = self.doc
        before = doc.get_state()
        self.document.changing()
        result: object = None
        error: BaseException | None = None
        try:
            with doc.transaction(origin=origin):
                result = fn(doc)
        except BaseException as exc:  # pyo3 PanicException is a BaseException
            error = exc
        changes, touched = tracker.collect()
        return _Transacted(doc.get_update(before), tuple(changes), touched, result, error)

    async def apply(
        self, principal: Principal, update: bytes, *, received: float | None = None, wait: bool = True
    ) -> int | None:
        """Apply a client's update; returns its log sequence number once durable (None if nothing new).

        With ``wait=False`` (socket readers) it returns as soon as the update is queued for the group commit, so
        one socket can have many updates in flight (pipelining: throughput is not one commit per update per
        client). Ordering and durability-before-broadcast are kept by the room's pending queue; a failed commit
        fails the whole room. Readers still slow down when the room has PENDING_LIMIT updates uncommitted."""
        async with self.lock:
            self._check_usable()
            if self.size_estimate + len(update) > self.limits.max_document_bytes:
                raise DocumentTooLarge(self.workspace_id)
            self.tracker  # noqa: B018  (built before the check: its events must include this transaction)
            reached = await self.document.check_dependencies(update)
            self._check_usable()  # (a large update is checked in a thread: the room may have failed meanwhile)
            t = self._transact(principal, lambda doc: doc.apply_update(update))
            if t.error is not None:
                if isinstance(t.error, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise t.error
                raise InvalidUpdate(f"update cannot be applied: {t.error}") from t.error
            self.document.advance(t.delta, reached if t.delta == update else None)
            self._check_nothing_pending(reached)
            request = self._queue(t.delta, principal, received, t.changes)
        if request is None:
            metrics.UPDATES_DROPPED.labels("duplicate").inc()
            return None
        if not wait:
            if t.touched:
                self._spawn(self._guard_when_durable(request, t.touched, principal, t.changes))
            if len(self._pending) > PENDING_LIMIT:
                await asyncio.wait([self._pending[0].done])  # backpressure: let the database catch up
            return None
        try:
            seq = await request.done
        except RoomFailed:
            raise
        except Exception as exc:  # the commit failed (the writer reports the raw database error)
            raise RoomFailed(self.workspace_id) from exc
        if t.touched:
            await self.guard(t.touched, principal, t.changes)
        return seq

    def _check_nothing_pending(self, reached: dict[int, int] | None) -> None:
        """After applying a client's update: yrs kept none of its structs as pending (a case the dependency
        check missed). Those cannot be taken out of the Doc again, and what was integrated is not durable:
        rebuild the room from the database, as after a failed commit."""
        if reached is None or self.document.reaches(reached):
            return
        metrics.UPDATES_DROPPED.labels("missing_dependencies").inc()
        self.fail(MissingDependencies("structs left pending"))
        raise MissingDependencies("structs left pending")

    async def change(self, principal: Principal, fn: Callable[[Doc[Any]], T], *, guard: bool = True) -> T:
        """Run ``fn(doc)`` in one transaction attributed to ``principal``; persisted and broadcast like a client
        update. Returns after the change is durable. A partial change from a failing ``fn`` is kept (a CRDT
        cannot roll back) and queued for the commit before the error is re-raised."""
        async with self.lock:
            self._check_usable()
            t = self._transact(principal, fn)
            self.document.advance(t.delta)
            request = self._queue(t.delta, principal, time.perf_counter(), t.changes)
            if t.error is not None:
                raise t.error
        if request is not None:
            await request.done
        if guard and t.touched:
            await self.guard(t.touched, principal, t.changes)
        result: T = t.result
        return result

    async def _guard_when_durable(
        self, request: WriteRequest, touched: Touched, principal: Principal, changes: tuple[object, ...]
    ) -> None:
        try:
            await request.done
            await self.guard(touched, principal, changes)
        except (RoomFailed, DocumentTooLarge):
            pass
        except Exception:
            if not self.broken:
                log.exception("schema guard failed in %s", self.workspace_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def guard(self, touched: Touched, principal: Principal = SERVER, changes: tuple[object, ...] = ()) -> int:
        """Schema guard: repair invalid values of what a change touched with a server-authored change that every
        client receives (rejecting the update instead would break convergence). ``principal`` and ``changes``
        say who did what to which comment: authorship is the server's truth."""
        if not self._upgraded:
            self._upgraded = True
            await self.upgrade()
        members = await self._members(self.workspace_id)
        ctx = schema_guard.Context(members, principal.user_id, [c for c in changes if isinstance(c, TaskChange)])
        if not schema_guard.check(self.doc, touched, ctx, fix=False):
            return 0
        found = await self.change(SERVER, lambda doc: schema_guard.check(doc, touched, ctx, fix=True), guard=False)
        if found:
            metrics.SCHEMA_REPAIRS.inc(len(found))
            log.warning("schema guard repaired %d field(s) in workspace %s: %s", len(found), self.workspace_id, found)
        return len(found)

    async def upgrade(self) -> int:
        """Bring a document written before the current schema version up to it (defaults for missing fields),
        as a server change every client receives. Returns fields written."""
        if plan_upgrade(self.doc) is None:
            return 0

        def fn(doc: Doc[Any]) -> int:
            plan = plan_upgrade(doc)
            return 0 if plan is None else apply_upgrade(doc, plan)

        written = await self.change(SERVER, fn, guard=False)
        log.info("upgraded workspace %s to schema version %d (%d fields)", self.workspace_id, SCHEMA_VERSION, written)
        return written

    # ---- the durable pipeline --------------------------------------------------------------------------

    def _queue(
        self, delta: bytes, principal: Principal, received: float | None, changes: tuple[object, ...]
    ) -> WriteRequest | None:
        """Append the change to the pending queue (apply order) and hand it to the writer."""
        if delta == EMPTY_UPDATE:
            return None
        request = WriteRequest(
            self.workspace_id, delta, principal.user_id, received=received, source=principal.source, changes=changes
        )
        request.done.add_done_callback(self._on_written)
        self._pending.append(request)
        self._drained.clear()
        metrics.UPDATES_IN.inc()
        self._submit(request)
        return request

    def _on_written(self, done: asyncio.Future[int]) -> None:
        if done.cancelled():
            self.fail(RoomFailed(self.workspace_id))
        elif (error := done.exception()) is not None:
            self.fail(error)
        elif self._pending and self._pending[0].seq is not None:
            # Every request of the commit batch has its seq before the first callback runs: that one flushes
            # them all, and the others find nothing new.
            self._flush()

    def _flush(self) -> None:
        """Broadcast the durable prefix of the pending queue, in apply order, as one merged frame."""
        ready: list[WriteRequest] = []
        while self._pending and self._pending[0].seq is not None:
            ready.append(self._pending.popleft())
        if not self._pending:
            self._drained.set()
        if not ready or self.broken:
            return
        # A remote update kept past a hole that a local commit closes needs nothing: it cannot depend on a change
        # of this node that was not published yet.
        for r in ready:
            self.applied.mark(r.seq or 0)
        self.log.appended(len(ready), sum(len(r.data) for r in ready))
        payload = ready[0].data if len(ready) == 1 else merge_updates(*(r.data for r in ready))
        # Not back to a socket that wrote all of it: it has it already. (A REST or server source is no socket's.)
        source = ready[0].source
        writer = source if all(r.source == source for r in ready) else None
        metrics.UPDATES_OUT.inc(self._broadcast(create_update_message(payload), skip_source=writer))
        now = time.perf_counter()
        for r in ready:
            if r.received is not None:
                metrics.FANOUT_SECONDS.observe(now - r.received)
        self._events.committed(self, ready)

    def fail(self, error: BaseException) -> None:
        """A commit failed: memory may be ahead of the database. Close every socket (1011) and unload, so the
        next connection rebuilds the room from what is durable."""
        if self.broken:
            return
        self.broken = True
        if isinstance(error, UnknownDocument):  # deleted meanwhile: its sockets were told (4403), nothing is lost
            log.info("room %s: the workspace was deleted; unloading", self.workspace_id)
            event = close_codes.WORKSPACE_NOT_FOUND
        else:
            log.error(
                "room %s failed (%r): closing its sockets and reloading from the database", self.workspace_id, error
            )
            event = close_codes.STORAGE_FAILURE
        pending, self._pending = self._pending, deque()
        for r in pending:  # never written after an earlier update of the room was lost
            r.fail(RoomFailed(self.workspace_id))
        self._drained.set()
        for conn in list(self.conns):
            conn.end(event)
        self._events.failed(self)

    def _check_usable(self) -> None:
        if self.broken:
            raise RoomFailed(self.workspace_id)

    # ---- other nodes ---------------------------------------------------------------------------------

    def apply_remote(self, update: bytes, seq: int | None) -> None:
        """Updates another node already made durable (multi-node fan-out, or a catch-up read from the
        database): apply and forward the new part to this node's sockets. Idempotent."""
        if seq is not None and self.applied.has(seq):
            return
        self._integrate(update)
        if seq is not None:
            for again in self.applied.mark(seq, update):  # applied past a hole this one closed (applied.py)
                self._integrate(again)

    def _integrate(self, update: bytes) -> None:
        t = self._transact(REMOTE, lambda doc: doc.apply_update(update))
        if t.error is not None:
            raise t.error
        # (the accepting node derives notifications from the tracker's changes; here they only keep it current)
        self.document.advance(t.delta)
        if t.delta != EMPTY_UPDATE:
            metrics.UPDATES_OUT.inc(self._broadcast(create_update_message(t.delta)))

    def catch_up(self, stored: StoredDocument) -> None:
        """Merge everything durable (after a Redis gap or disconnect): the database is the truth."""
        for chunk in stored.chunks():
            self.apply_remote(chunk, None)
        self.applied.advance_to(stored.last_seq)

    def apply_remote_awareness(self, node: str, payload: bytes) -> None:
        """Awareness accepted (and identity-checked) by another node: track it and forward it here."""
        self._remote_awareness(self.awareness.accept_remote(node, parse_awareness(payload)))

    def replace_remote_awareness(self, node: str, payload: bytes) -> None:
        for message in self.awareness.replace_remote(node, payload):
            self._remote_awareness(message)

    def expire_remote_awareness(self, max_age: float, live_nodes: set[str] | None = None) -> None:
        self._remote_awareness(self.awareness.expire_remote(max_age, live_nodes))

    def expire_local_awareness(self, max_age: float) -> None:
        self._local_awareness(self.awareness.expire_local(max_age))

    # ---- broadcast -----------------------------------------------------------------------------------

    def _local_awareness(self, payload: bytes | None) -> None:
        """Awareness that changed through this node's sockets: to every socket here, and to the other nodes."""
        if payload is not None:
            self._broadcast(create_awareness_message(payload), include_unsynced=True)
            self._events.awareness(self, payload)

    def _remote_awareness(self, payload: bytes | None) -> None:
        if payload is not None:
            self._broadcast(create_awareness_message(payload), include_unsynced=True)

    def _broadcast(self, message: bytes, *, include_unsynced: bool = False, skip_source: str | None = None) -> int:
        """Send ``message`` to the room's sockets; returns to how many."""
        sent = 0
        frame: bytes | None = None  # encoded once for every socket that takes it as it is
        for conn in list(self.conns):
            if (conn.synced or include_unsynced) and conn.principal.source != skip_source:
                if frame is None:
                    frame = binary_frame(message)
                if conn.send(message, frame):
                    sent += 1
        metrics.MESSAGES_OUT.inc(sent)
        metrics.BYTES_OUT.inc(sent * len(message))
        return sent
