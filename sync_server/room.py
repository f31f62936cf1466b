"""A workspace room: one pycrdt ``Doc``, its sockets and awareness, and the ordered durable broadcast path.

Path of one update (see docs/architecture.md): under the room lock the update is applied with the sender as
transaction origin, the *new* part (``delta``) is computed against the state vector from just before, and the
delta is queued for the group-commit writer in apply order. Only when the writer reports the commit does the
room broadcast — always the durable prefix of its pending queue, in order, merged into one frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pycrdt import Doc, create_awareness_message, create_update_message, merge_updates
from pycrdt._sync import create_sync_step1_message

from persistence.doclog import StoredDocument, UnknownDocument, doc_from_chunks

from . import metrics
from .connection import CLOSE_INTERNAL, CLOSE_NOT_FOUND, Connection, Principal, binary_frame
from .protocol import (
    EMPTY_STATE_VECTOR,
    EMPTY_UPDATE,
    MSG_AUTH,
    MSG_AWARENESS,
    MSG_QUERY_AWARENESS,
    MSG_SYNC,
    SYNC_STEP1,
    AwarenessEntry,
    ProtocolError,
    UnknownStruct,
    check_update,
    decode_state_vector,
    encode_awareness,
    parse_awareness,
    parse_message,
    shares_state,
    sync_step2,
    update_end_clocks,
)
from .schema import TaskChange, TaskTracker, apply_repairs, find_repairs
from .writer import WriteRequest

if TYPE_CHECKING:
    from persistence.settings import Settings

log = logging.getLogger("plait.sync.room")
T = TypeVar("T")
PENDING_LIMIT = 2000  # uncommitted updates per room before socket readers wait
SERVER = Principal(None, "server")

# An awareness update with no entries: the cheapest message that resets y-websocket's 30 s idle watchdog.
KEEPALIVE = create_awareness_message(b"\x00")
# Client updates larger than this are checked for missing dependencies off the event loop (decoding a few MB of
# small structs in Python takes a few hundred ms).
CHECK_IN_THREAD_BYTES = 64 * 1024


class RoomFailed(RuntimeError):
    """The room's memory may be ahead of the database (a commit failed); it is being rebuilt."""


class InvalidUpdate(ProtocolError):
    """An update pycrdt cannot apply."""


class MissingDependencies(ProtocolError):
    """A client's update refers to structs the server does not have: yrs would keep it as pending, outside the
    document and the size quota, for ever. A client cannot have sent those structs (the server has everything
    it sent before, in order), so the update is refused."""


class DocumentTooLarge(RuntimeError):
    """Applying the update would take the document past its size quota."""


class AwarenessStates(dict[int, AwarenessEntry]):
    """The room's awareness states by client id, keeping the total size of their JSON (``nbytes``): what a
    newcomer receives in one frame, bounded by ``PLAIT_MAX_AWARENESS_ROOM_BYTES``."""

    __slots__ = ("_sizes", "nbytes")

    def __init__(self) -> None:
        super().__init__()
        self._sizes: dict[int, int] = {}
        self.nbytes = 0

    @staticmethod
    def size(entry: AwarenessEntry) -> int:
        return len(json.dumps(entry.state, separators=(",", ":")))

    def __setitem__(self, client_id: int, entry: AwarenessEntry) -> None:
        size = self.size(entry)
        self.nbytes += size - self._sizes.get(client_id, 0)
        self._sizes[client_id] = size
        super().__setitem__(client_id, entry)

    def __delitem__(self, client_id: int) -> None:
        super().__delitem__(client_id)
        self.nbytes -= self._sizes.pop(client_id, 0)

    def pop(self, client_id: int, *default: Any) -> Any:
        self.nbytes -= self._sizes.pop(client_id, 0)
        return super().pop(client_id, *default)

    def fits(self, client_id: int, entry: AwarenessEntry, limit: int) -> bool:
        """Whether setting ``entry`` keeps the total within ``limit`` bytes."""
        return self.nbytes - self._sizes.get(client_id, 0) + self.size(entry) <= limit


class RoomHost(Protocol):
    settings: Settings

    def submit_write(self, request: WriteRequest) -> None: ...
    def room_failed(self, room: Room) -> None: ...
    def room_idle(self, room: Room) -> None: ...
    def updates_durable(self, room: Room, requests: list[WriteRequest]) -> None: ...
    async def member_ids(self, workspace_id: str) -> set[str]: ...
    def awareness_accepted(self, room: Room, payload: bytes) -> None: ...


class Room:
    # Slots, not a per-instance dict of 31 attributes: an empty room takes 3.2 KB of Python heap instead of 4.5.
    __slots__ = (
        "_applied_above",
        "_changes",
        "_clocks",
        "_cold",
        "_doc",
        "_drained",
        "_flush_scheduled",
        "_owners",
        "_pending",
        "_remote_aw",
        "_renewed",
        "_step1_owed",
        "_sv",
        "_tasks",
        "_tracker",
        "_whole",
        "applied_upto",
        "awareness",
        "broken",
        "compacted_for_unload",
        "compacting",
        "conns",
        "epoch",
        "gap_since",
        "host",
        "idle_since",
        "last_seq",
        "leases",
        "lock",
        "snapshot_bytes",
        "tail_bytes",
        "tail_count",
        "workspace_id",
    )

    def __init__(self, workspace_id: str, stored: StoredDocument, host: RoomHost) -> None:
        self.workspace_id = workspace_id
        self.host = host
        # The Doc is built when something first needs it (see ``doc``). Until then a room stored as one chunk
        # answers fresh joiners with that chunk, and an empty one needs no Doc at all (idle rooms stay small).
        chunks = stored.chunks()
        self._doc: Doc[Any] | None = None
        self._cold: bytes | None = chunks[0] if len(chunks) == 1 else None
        self._step1_owed: set[Connection] = set()
        # The Doc's state vector, decoded, kept current from each change's delta: decoding the Doc's own for every
        # update would cost a pass over every client that ever wrote (thousands in an old workspace).
        self._sv: dict[int, int] | None = None
        self.epoch = stored.epoch
        self.last_seq = stored.last_seq  # highest log sequence number known in memory
        self.applied_upto = stored.last_seq  # every seq <= this is applied here (multi-node gap detection)
        self._applied_above: set[int] = set()
        self.gap_since: float | None = None
        self.tail_count = len(stored.updates)
        self.tail_bytes = stored.tail_bytes()
        self.snapshot_bytes = len(stored.snapshot or b"")
        self.lock = asyncio.Lock()
        self.conns: set[Connection] = set()
        self.leases = 0
        self.idle_since = time.monotonic()
        self.broken = False
        self.compacting = False
        self.compacted_for_unload = False
        self.awareness = AwarenessStates()
        self._renewed: dict[int, float] = {}  # this node's client ids -> when their state was last renewed
        self._remote_aw: dict[int, tuple[str, float]] = {}  # client id -> (node id, last renewed) for other nodes
        self._clocks: dict[int, int] = {}
        self._owners: dict[int, Connection] = {}
        self._pending: deque[WriteRequest] = deque()
        self._drained = asyncio.Event()
        self._drained.set()
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._tracker: TaskTracker | None = None
        # Step 2 for a fresh client, keyed by a count of the document's changes (not by its state vector:
        # a deletion does not change the state vector).
        self._changes = 0
        self._whole: tuple[int, bytes] | None = None
        if len(chunks) > 1:
            self._build(chunks)

    @property
    def doc(self) -> Doc[Any]:
        if self._doc is None:
            self._build([self._cold] if self._cold is not None else [])
        assert self._doc is not None
        return self._doc

    @property
    def size_estimate(self) -> int:
        """Bytes stored for this document (snapshot + log tail): what the size quota counts."""
        return self.snapshot_bytes + self.tail_bytes

    @property
    def built(self) -> bool:
        return self._doc is not None

    @property
    def foldable(self) -> bool:
        """Its memory holds log rows not yet in the stored snapshot (a Doc that was never built changed nothing)."""
        return bool(self.tail_count) and self._doc is not None and not self.broken

    def _build(self, chunks: list[bytes]) -> None:
        """Apply the stored document (5 MB: ~80 ms); then send the sync step 1 owed to sockets that joined
        before, so they send back what they have that the server lacks."""
        started = time.perf_counter()
        doc = doc_from_chunks(chunks)
        self._doc, self._cold = doc, None
        self._sv = None
        if chunks:
            log.info(
                "built %s from %d chunk(s) in %.1f ms",
                self.workspace_id,
                len(chunks),
                (time.perf_counter() - started) * 1000,
            )
        if self._step1_owed:
            message = create_sync_step1_message(doc.get_state())
            for conn in self._step1_owed:
                conn.send(message)
            self._step1_owed.clear()

    @property
    def tracker(self) -> TaskTracker:
        """Built before the first change, not at load: reading every task (10,000 tasks: a few hundred ms) must
        not delay the first join of a room loaded from the database. Take it *before* a transaction whose
        events it must see."""
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
            if self._doc is None:
                return None
            return self._doc.get_update(), self.applied_upto

    def close(self) -> None:
        """The room is unloaded: release the document observer."""
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    # ---- membership of sockets -------------------------------------------------------------------------

    def join(self, conn: Connection) -> None:
        self.conns.add(conn)
        if self._doc is not None:
            conn.send(create_sync_step1_message(self._doc.get_state()))
        elif self._cold is None:
            conn.send(create_sync_step1_message(EMPTY_STATE_VECTOR))  # empty stored document
        else:
            # Step 1 needs the state vector, which needs the Doc: it is sent when the Doc is built — unless the
            # client's own step 1 shows it has nothing (a fresh client), then it is not needed at all.
            self._step1_owed.add(conn)
        if self.awareness:
            conn.send(self._awareness_message(list(self.awareness.values())))

    def leave(self, conn: Connection) -> None:
        self.conns.discard(conn)
        self._step1_owed.discard(conn)
        removed = []
        for cid in list(conn.controlled):
            if self._owners.get(cid) is conn:
                clock = self._clocks.get(cid, 0) + 1
                self._clocks[cid] = clock
                self.awareness.pop(cid, None)
                self._owners.pop(cid, None)
                removed.append(AwarenessEntry(cid, clock, None))
        conn.controlled.clear()
        if removed:
            payload = encode_awareness(removed)
            self._broadcast(create_awareness_message(payload), include_unsynced=True)
            self.host.awareness_accepted(self, payload)
        self.touch()

    def touch(self) -> None:
        self.idle_since = time.monotonic()
        if not self.conns and self.leases == 0:
            self.host.room_idle(self)

    @property
    def unloadable(self) -> bool:
        return not self.conns and self.leases == 0 and not self._pending and not self.compacting and not self._tasks

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
                pass  # every client's step 2 when it has nothing new: no need to wake the room for it
            else:
                await self.apply(conn.principal, msg.payload, received=time.perf_counter(), wait=False)
        elif msg.type == MSG_AWARENESS:
            self._on_awareness(conn, msg.payload)
        elif msg.type == MSG_QUERY_AWARENESS:
            conn.send(self._awareness_message(list(self.awareness.values())))
        elif msg.type == MSG_AUTH:
            pass  # authentication happens before joining; nothing to do

    async def _answer_step1(self, conn: Connection, state_vector: bytes) -> None:
        async with self.lock:
            self._check_usable()
            # Only durable state goes out: wait for what is already applied to be committed.
            await self._drained.wait()
            self._check_usable()
            if state_vector == EMPTY_STATE_VECTOR:
                self._step1_owed.discard(conn)  # a fresh client has nothing the server lacks
            try:
                message, shared = self._step2(state_vector)
            except Exception as exc:
                raise ProtocolError("invalid state vector") from exc
            if conn.send(message, shared=shared, fragment=True):
                conn.synced = True

    def _step2(self, state_vector: bytes) -> tuple[bytes, bool]:
        """Sync step 2 for a state vector, and whether it is the room's shared encoding (True) or this socket's
        own. A fresh client (empty state vector) gets the whole document, encoded once per document state: ten
        clients joining a 5 MB workspace cost one encoding, not ten, and hold references to it, not copies (a
        large message goes out in fragments as the socket drains: ``Connection.send``). Until the first change
        that encoding is the stored chunk itself: a fresh client joining a room just loaded from the database
        does not wait for the Doc to be built.

        A state vector that shares nothing with the document's is a fresh client too, and so is one whose
        difference is larger than half the socket's send limit: the whole document is a valid step 2 for any
        client (it ignores what it has), and a socket's own copy of a large difference is what ten sockets that
        never read would each hold."""
        if state_vector != EMPTY_STATE_VECTOR:
            if shares_state(state_vector, self._state_vector()):
                diff = self.doc.get_update(state_vector)
                if len(diff) <= self.host.settings.send_queue_max_bytes // 2:
                    return sync_step2(diff), False
        if self._whole is None or self._whole[0] != self._changes:
            # No change can happen before the Doc is built, so until then the stored chunk is the document.
            whole = self._doc.get_update() if self._doc is not None else (self._cold or EMPTY_UPDATE)
            self._whole = (self._changes, sync_step2(whole))
        return self._whole[1], True

    # ---- applying changes ----------------------------------------------------------------------------

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
            if self.size_estimate + len(update) > self.host.settings.quota_max_document_bytes:
                raise DocumentTooLarge(self.workspace_id)
            tracker = self.tracker
            reached = await self._check_dependencies(update)
            before = self.doc.get_state()
            try:
                self._changes += 1
                with self.doc.transaction(origin=principal):
                    self.doc.apply_update(update)
            except BaseException as exc:  # pyo3 PanicException is a BaseException
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise
                raise InvalidUpdate(f"update cannot be applied: {exc}") from exc
            delta = self.doc.get_update(before)
            self._advance(delta, reached if delta == update else None)
            self._check_nothing_pending(reached)
            changes, touched = tracker.collect()
            request = self._submit(delta, principal, received, changes)
        if request is None:
            metrics.UPDATES_DROPPED.labels("duplicate").inc()
            return None
        if not wait:
            if touched:
                self._spawn(self._guard_when_durable(request, touched))
            if len(self._pending) > PENDING_LIMIT:
                await asyncio.wait([self._pending[0].done])  # backpressure: let the database catch up
            return None
        try:
            seq = await request.done
        except RoomFailed:
            raise
        except Exception as exc:  # the commit failed (the writer reports the raw database error)
            raise RoomFailed(self.workspace_id) from exc
        if touched:
            await self.guard(touched)
        return seq

    async def _check_dependencies(self, update: bytes) -> dict[int, int] | None:
        """Refuse a client's update with missing dependencies (``MissingDependencies``) before it is applied;
        returns the clock each of its clients reaches (None if its encoding is one this decoder does not know).
        Checked against the cached state vector; a refusal is confirmed against the Doc's own, so that a stale
        cache can never refuse a valid update."""
        for attempt in range(2):
            try:
                state = self._state_vector()
                if len(update) > CHECK_IN_THREAD_BYTES:
                    # A copy: updates from other nodes are applied meanwhile (they only add to it, so what
                    # passes here still passes after).
                    problem, reached = await asyncio.to_thread(check_update, update, dict(state))
                    self._check_usable()
                else:
                    problem, reached = check_update(update, state)
            except UnknownStruct:
                return None  # an encoding this decoder does not know: yrs decides
            except ProtocolError as exc:
                raise InvalidUpdate(f"update cannot be decoded: {exc}") from exc
            except Exception:
                log.exception("dependency check failed in %s; left to yrs", self.workspace_id)
                return None
            if problem is None:
                return reached
            if attempt == 0:
                self._sv = None
        metrics.UPDATES_DROPPED.labels("missing_dependencies").inc()
        raise MissingDependencies(problem)

    def _check_nothing_pending(self, reached: dict[int, int] | None) -> None:
        """After applying a client's update: every client's clock reached what the check says it would, or yrs
        kept some structs as pending (a case the check missed). Those cannot be taken out of the Doc again, and
        what was integrated is not durable: rebuild the room from the database, as after a failed commit."""
        if reached is None:
            return
        for attempt in range(2):
            sv = self._state_vector()
            if all(sv.get(client, 0) >= clock for client, clock in reached.items()):
                return
            if attempt == 0:
                self._sv = None  # confirm against the Doc's own
        metrics.UPDATES_DROPPED.labels("missing_dependencies").inc()
        self.fail(MissingDependencies("structs left pending"))
        raise MissingDependencies("structs left pending")

    def _state_vector(self) -> dict[int, int]:
        """The Doc's state vector, decoded. Cached: decoding it for every update would cost a pass over every
        client that ever wrote to the workspace (4.6 ms for 2,000)."""
        if self._sv is None:
            self._sv = decode_state_vector(self.doc.get_state())
        return self._sv

    def _advance(self, delta: bytes, reached: dict[int, int] | None = None) -> None:
        """Keep the cached state vector current after a change whose new part is ``delta`` (``reached``: its end
        clocks, when known already)."""
        sv = self._sv
        if sv is None or delta == EMPTY_UPDATE:
            return
        if reached is None:
            try:
                reached = update_end_clocks(delta)
            except ProtocolError:
                self._sv = None  # decoded again when next needed
                return
        for client, clock in reached.items():
            if clock > sv.get(client, 0):
                sv[client] = clock

    async def change(self, principal: Principal, fn: Callable[[Doc[Any]], T], *, guard: bool = True) -> T:
        """Run ``fn(doc)`` in one transaction attributed to ``principal``; persisted and broadcast like a client
        update. Returns after the change is durable. A partial change from a failing ``fn`` is kept (a CRDT
        cannot roll back) and persisted before the error is re-raised."""
        async with self.lock:
            self._check_usable()
            tracker = self.tracker
            before = self.doc.get_state()
            try:
                self._changes += 1
                with self.doc.transaction(origin=principal):
                    result = fn(self.doc)
            finally:
                changes, touched = tracker.collect()
                delta = self.doc.get_update(before)
                self._advance(delta)
                request = self._submit(delta, principal, time.perf_counter(), changes)
        if request is not None:
            await request.done
        if guard and touched:
            await self.guard(touched)
        return result

    async def _guard_when_durable(self, request: WriteRequest, touched: set[str]) -> None:
        try:
            await request.done
            await self.guard(touched)
        except (RoomFailed, DocumentTooLarge):
            pass
        except Exception:
            if not self.broken:
                log.exception("schema guard failed in %s", self.workspace_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def guard(self, task_ids: set[str]) -> int:
        """Schema guard: repair invalid values of the touched tasks with a server-authored change that every
        client receives (rejecting the update instead would break convergence)."""
        members = await self.host.member_ids(self.workspace_id)
        repairs = find_repairs(self.doc, task_ids, members)
        if not repairs:
            return 0
        fixed = await self.change(SERVER, lambda doc: apply_repairs(doc, repairs), guard=False)
        metrics.SCHEMA_REPAIRS.inc(fixed)
        log.warning("schema guard repaired %d field(s) in workspace %s: %s", fixed, self.workspace_id, repairs)
        return fixed

    def _submit(
        self, delta: bytes, principal: Principal, received: float | None, changes: list[TaskChange]
    ) -> WriteRequest | None:
        if delta == EMPTY_UPDATE:
            return None
        request = WriteRequest(
            self.workspace_id,
            delta,
            principal.user_id,
            self._on_written,
            received=received,
            source=principal.source,
            changes=changes,
        )
        self._pending.append(request)
        self._drained.clear()
        metrics.UPDATES_IN.inc()
        self.host.submit_write(request)
        return request

    def _on_written(self, request: WriteRequest) -> None:
        if request.error is not None:
            self.fail(request.error)
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Broadcast the durable prefix of the pending queue, in apply order, as one merged frame."""
        self._flush_scheduled = False
        ready: list[WriteRequest] = []
        while self._pending and self._pending[0].seq is not None:
            ready.append(self._pending.popleft())
        if not self._pending:
            self._drained.set()
        if not ready or self.broken:
            return
        for r in ready:
            self.mark_applied(r.seq or 0)
        self.tail_count += len(ready)
        self.tail_bytes += sum(len(r.data) for r in ready)
        payload = ready[0].data if len(ready) == 1 else merge_updates(*(r.data for r in ready))
        # Not back to a socket that wrote all of it: it has it already. (A REST or server source is no socket's.)
        source = ready[0].source
        writer = source if all(r.source == source for r in ready) else None
        metrics.UPDATES_OUT.inc(self._broadcast(create_update_message(payload), skip_source=writer))
        now = time.perf_counter()
        for r in ready:
            if r.received is not None:
                metrics.FANOUT_SECONDS.observe(now - r.received)
        self.host.updates_durable(self, ready)

    def mark_applied(self, seq: int) -> bool:
        """Record that log entry ``seq`` is in memory; False if it already was."""
        if seq <= self.applied_upto or seq in self._applied_above:
            return False
        self._applied_above.add(seq)
        while self.applied_upto + 1 in self._applied_above:
            self.applied_upto += 1
            self._applied_above.discard(self.applied_upto)
        self.last_seq = max(self.last_seq, seq)
        self.gap_since = (self.gap_since or time.monotonic()) if self._applied_above else None
        return True

    @property
    def has_gap(self) -> bool:
        return bool(self._applied_above)

    def apply_remote(self, update: bytes, seq: int | None) -> None:
        """Updates another node already made durable (multi-node fan-out, or a catch-up read from the
        database): apply and forward the new part to this node's sockets. Idempotent."""
        if seq is not None and (seq <= self.applied_upto or seq in self._applied_above):
            return
        tracker = self.tracker
        before = self.doc.get_state()
        self._changes += 1
        with self.doc.transaction(origin=Principal(None, "remote")):
            self.doc.apply_update(update)
        tracker.collect()  # the accepting node derives notifications; here only keep the cache current
        if seq is not None:
            self.mark_applied(seq)
        delta = self.doc.get_update(before)
        self._advance(delta)
        if delta != EMPTY_UPDATE:
            metrics.UPDATES_OUT.inc(self._broadcast(create_update_message(delta)))

    def catch_up(self, stored: StoredDocument) -> None:
        """Merge everything durable (after a Redis gap or disconnect): the database is the truth."""
        for chunk in stored.chunks():
            self.apply_remote(chunk, None)
        if stored.last_seq > self.applied_upto:
            self.applied_upto = stored.last_seq
            self._applied_above = {s for s in self._applied_above if s > stored.last_seq}
            self.last_seq = max(self.last_seq, stored.last_seq)
            self.gap_since = time.monotonic() if self._applied_above else None

    def apply_remote_awareness(self, node: str, payload: bytes) -> None:
        """Awareness accepted (and identity-checked) by another node: track it and forward it here."""
        self._apply_remote_entries(node, parse_awareness(payload))

    def _apply_remote_entries(self, node: str, entries: list[AwarenessEntry]) -> None:
        now = time.monotonic()
        accepted = []
        for entry in entries:
            known = self._clocks.get(entry.client_id)
            if (known is not None and entry.clock < known) or entry.client_id in self._owners:
                continue
            self._clocks[entry.client_id] = entry.clock
            if entry.state is None:
                self.awareness.pop(entry.client_id, None)
                self._remote_aw.pop(entry.client_id, None)
            else:
                self.awareness[entry.client_id] = entry
                self._remote_aw[entry.client_id] = (node, now)
            accepted.append(entry)
        if accepted:
            self._broadcast(self._awareness_message(accepted), include_unsynced=True)

    def own_awareness(self) -> bytes:
        """The states of this node's own sockets, encoded: the answer to another node's query."""
        return encode_awareness([entry for cid, entry in self.awareness.items() if cid in self._owners])

    def replace_remote_awareness(self, node: str, payload: bytes) -> None:
        """``node``'s full set of its clients' states: drop what this room holds from that node beyond it."""
        entries = parse_awareness(payload)
        present = {entry.client_id for entry in entries}
        self._drop_remote([cid for cid, (owner, _) in self._remote_aw.items() if owner == node and cid not in present])
        self._apply_remote_entries(node, entries)

    def expire_remote_awareness(self, max_age: float, live_nodes: set[str] | None = None) -> None:
        """Drop states of other nodes not renewed in ``max_age`` seconds or whose node is gone (crash)."""
        now = time.monotonic()
        self._drop_remote(
            [
                cid
                for cid, (node, seen) in self._remote_aw.items()
                if now - seen > max_age or (live_nodes is not None and node not in live_nodes)
            ]
        )

    def _drop_remote(self, gone: list[int]) -> None:
        removed = []
        for cid in gone:
            del self._remote_aw[cid]
            if self.awareness.pop(cid, None) is not None:
                clock = self._clocks.get(cid, 0) + 1
                self._clocks[cid] = clock
                removed.append(AwarenessEntry(cid, clock, None))
        if removed:
            self._broadcast(self._awareness_message(removed), include_unsynced=True)

    def fail(self, error: BaseException) -> None:
        """A commit failed: memory may be ahead of the database. Close every socket (1011) and unload, so the
        next connection rebuilds the room from what is durable."""
        if self.broken:
            return
        self.broken = True
        if isinstance(error, UnknownDocument):  # deleted meanwhile: its sockets were told (4403), nothing is lost
            log.info("room %s: the workspace was deleted; unloading", self.workspace_id)
            code, reason = CLOSE_NOT_FOUND, "workspace not found"
        else:
            log.error(
                "room %s failed (%r): closing its sockets and reloading from the database", self.workspace_id, error
            )
            code, reason = CLOSE_INTERNAL, "storage failure, reconnect"
        for r in self._pending:
            r.cancelled = True
            if not r.done.done():
                r.done.set_exception(RoomFailed(self.workspace_id))
                r.done.exception()
        self._pending.clear()
        self._drained.set()
        for conn in list(self.conns):
            conn.close(code, reason)
            metrics.CLOSES.labels(str(code)).inc()
        self.host.room_failed(self)

    def _check_usable(self) -> None:
        if self.broken:
            raise RoomFailed(self.workspace_id)

    # ---- awareness -----------------------------------------------------------------------------------

    def _on_awareness(self, conn: Connection, payload: bytes) -> None:
        settings = self.host.settings
        if len(payload) > settings.max_awareness_bytes:
            metrics.AWARENESS_DROPPED.labels("size").inc()
            return
        if not conn.allow_awareness(settings.max_awareness_per_second):
            metrics.AWARENESS_DROPPED.labels("rate").inc()
            return
        accepted: list[AwarenessEntry] = []
        for entry in parse_awareness(payload):
            owner = self._owners.get(entry.client_id)
            if owner is not None and owner is not conn:
                metrics.AWARENESS_DROPPED.labels("foreign_client_id").inc()
                continue
            if entry.client_id in self._remote_aw:
                remote = self.awareness.get(entry.client_id)
                remote_user = (remote.state or {}).get("user", {}) if remote else {}
                if isinstance(remote_user, dict) and remote_user.get("id") not in (None, conn.user_id):
                    metrics.AWARENESS_DROPPED.labels("foreign_client_id").inc()
                    continue
                del self._remote_aw[entry.client_id]  # the same user moved here from another node
            known = self._clocks.get(entry.client_id)
            if known is not None and entry.clock < known:
                continue
            state = None if entry.state is None else self._enforce_identity(conn, entry.state)
            if state is not None and not self._awareness_fits(
                conn, AwarenessEntry(entry.client_id, entry.clock, state)
            ):
                continue
            self._clocks[entry.client_id] = entry.clock
            if state is None:
                self.awareness.pop(entry.client_id, None)
                self._owners.pop(entry.client_id, None)
                conn.controlled.pop(entry.client_id, None)
            else:
                self.awareness[entry.client_id] = AwarenessEntry(entry.client_id, entry.clock, state)
                self._owners[entry.client_id] = conn
                conn.controlled[entry.client_id] = entry.clock
                self._renewed[entry.client_id] = time.monotonic()
            accepted.append(AwarenessEntry(entry.client_id, entry.clock, state))
        if accepted:
            # Echo to the sender too: y-websocket closes a socket that hears nothing for 30 s.
            payload = encode_awareness(accepted)
            self._broadcast(create_awareness_message(payload), include_unsynced=True)
            self.host.awareness_accepted(self, payload)

    def _awareness_fits(self, conn: Connection, entry: AwarenessEntry) -> bool:
        """Bounds on what awareness a socket can make the room hold: a few client ids per socket (a y-websocket
        client has one) and a total size per room (a newcomer receives every state in one frame)."""
        settings = self.host.settings
        if entry.client_id not in conn.controlled and len(conn.controlled) >= settings.max_awareness_clients_per_socket:
            metrics.AWARENESS_DROPPED.labels("client_ids").inc()
            return False
        if not self.awareness.fits(entry.client_id, entry, settings.max_awareness_room_bytes):
            metrics.AWARENESS_DROPPED.labels("room_bytes").inc()
            return False
        return True

    def expire_local_awareness(self, max_age: float) -> None:
        """Remove states of this node's sockets not renewed for ``max_age`` seconds (y-protocols' outdated
        timeout: clients renew every 15 s, and drop other clients' states after 30 s themselves)."""
        now = time.monotonic()
        removed = []
        for cid, renewed in list(self._renewed.items()):
            owner = self._owners.get(cid)
            if owner is None:
                del self._renewed[cid]
            elif now - renewed > max_age:
                del self._renewed[cid]
                clock = self._clocks.get(cid, 0) + 1
                self._clocks[cid] = clock
                self.awareness.pop(cid, None)
                del self._owners[cid]
                owner.controlled.pop(cid, None)
                removed.append(AwarenessEntry(cid, clock, None))
        if removed:
            payload = encode_awareness(removed)
            self._broadcast(create_awareness_message(payload), include_unsynced=True)
            self.host.awareness_accepted(self, payload)

    @staticmethod
    def _enforce_identity(conn: Connection, state: dict[str, Any]) -> dict[str, Any]:
        """The server's account decides who a state belongs to, whatever the client claims."""
        user = state.get("user")
        user = dict(user) if isinstance(user, dict) else {}
        if user.get("id") != conn.user_id or user.get("name") != conn.display_name:
            if user:
                metrics.AWARENESS_REWRITTEN.inc()
            user["id"] = conn.user_id
            user["name"] = conn.display_name
        return {**state, "user": user}

    @staticmethod
    def _awareness_message(entries: list[AwarenessEntry]) -> bytes:
        return create_awareness_message(encode_awareness(entries))

    def _broadcast(self, message: bytes, *, include_unsynced: bool = False, skip_source: str | None = None) -> int:
        """Queue ``message`` to the room's sockets; returns to how many."""
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
