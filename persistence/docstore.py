"""The Yjs document store: an append-only update log per workspace plus one compacted snapshot.

Invariants that make it crash-safe:
- ``documents.last_seq`` is bumped in the same transaction that inserts log rows, so the log's sequence
  numbers are contiguous per workspace and a committed row is never renumbered;
- a snapshot is written together with the deletion of exactly the rows it covers, in one transaction, so at
  any instant ``snapshot + rows after snapshot.upto_seq`` is the whole document (no hole: yrs and Yjs disagree
  on how to integrate across holes, see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from persistence import pg_direct, snapshot_codec
from persistence.db import Database
from persistence.models import DocSnapshot, Document, DocUpdate, utcnow


@dataclass(frozen=True)
class PendingUpdate:
    workspace_id: str
    data: bytes
    actor_id: str | None


@dataclass(frozen=True)
class StoredDocument:
    """Everything needed to rebuild a document: snapshot, then the log after it, in order."""

    epoch: str
    snapshot: bytes | None
    snapshot_seq: int
    updates: list[tuple[int, bytes]]

    @property
    def last_seq(self) -> int:
        return self.updates[-1][0] if self.updates else self.snapshot_seq

    def chunks(self) -> list[bytes]:
        return ([self.snapshot] if self.snapshot else []) + [u for _, u in self.updates]

    def tail_bytes(self) -> int:
        return sum(len(u) for _, u in self.updates)


class UnknownDocument(LookupError):
    """No ``documents`` row: the workspace does not exist (or was deleted)."""


async def _log_after(session: AsyncSession, workspace_id: str, seq: int) -> list[tuple[int, bytes]]:
    """The log rows of a workspace after ``seq``, in order."""
    rows = await session.execute(
        select(DocUpdate.seq, DocUpdate.data)
        .where(DocUpdate.workspace_id == workspace_id, DocUpdate.seq > seq)
        .order_by(DocUpdate.seq)
    )
    return [(int(q), bytes(d)) for q, d in rows]


T = TypeVar("T")
_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _resolve(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _begin(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
    """BEGIN IMMEDIATE, polling every 0.5 ms while another writer (the derivation worker, a compaction) holds
    the lock. SQLite's own busy handler backs off in steps of up to 100 ms, so a few ms of contention cost the
    update log (and every peer waiting for fan-out) tens of ms."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.0005)


# The load thread reads the database file through a memory map instead of read() calls page by page: a 5 MB
# snapshot loads in 1-3 ms instead of 5-13 ms. Only there: a connection with a map re-maps whenever the file
# has grown, and on the append and ORM connections, with the file growing all the time, that cost s6 (200
# workspaces writing) about 10 points of a core.
LOAD_MMAP_BYTES = 256 * 1024 * 1024


class _SqliteThread:
    """The document store's hot statements on SQLite, each as ONE hop to a dedicated thread with its own
    connection: the group commit's append, and the load of a document.

    Through SQLAlchemy + aiosqlite a transaction costs several round trips between the event loop and the
    driver's thread; under load each waits for the busy loop, which made commits ~25 ms. Here the whole
    transaction (BEGIN IMMEDIATE, head update, bulk insert, COMMIT) runs in the thread at once. A load
    through aiosqlite took 10-12 ms for a 5 MB snapshot; here, memory-mapped, 1-3 ms.
    """

    def __init__(self, path: str, synchronous: str, name: str, mmap_bytes: int = 0) -> None:
        self.path = path
        self.mmap_bytes = mmap_bytes
        self.synchronous = synchronous
        self.conn: sqlite3.Connection | None = None
        # A plain thread and queue rather than an executor: the hop is on every commit, and run_in_executor's
        # two chained futures cost more than this whole hand-off.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"plait-sqlite-{name}", daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in the append thread; the future resolves on the calling loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed:  # queued behind the thread's end, the job would never run and its caller never wake
            future.set_exception(RuntimeError(f"the {self._thread.name} store is closed"))
        else:
            self._jobs.put((loop, future, fn, args))
        return future

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, fn, args = job
            try:
                result = fn(*args)
            except BaseException as exc:  # reported to the caller, which owns the error
                loop.call_soon_threadsafe(_resolve, future, None, exc)
            else:
                loop.call_soon_threadsafe(_resolve, future, result, None)

    def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=0")  # see _begin
            conn.execute(f"PRAGMA mmap_size={self.mmap_bytes}")
            self.conn = conn
        return self.conn

    def exclusive(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """``job(conn)`` inside one BEGIN IMMEDIATE ... COMMIT on this thread's connection (rolled back if it
        raises): the one transaction of every write made here."""
        conn = self._connection()
        _begin(conn)
        try:
            result = job(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def append(self, batch: Sequence[PendingUpdate], counts: dict[str, int]) -> list[int]:
        return self.exclusive(lambda conn: _append(conn, batch, counts))

    def save_snapshot(self, workspace_id: str, data: bytes, upto: int) -> tuple[int, int] | None:
        """``DocumentStore.save_snapshot`` in one transaction on this thread. Under BEGIN IMMEDIATE nothing else
        writes, so the checks need no optimistic retry; and the appends, queued on the same thread, wait for
        it in order instead of polling for SQLite's write lock."""
        return self.exclusive(lambda conn: _save_snapshot(conn, workspace_id, data, upto))

    def load(self, workspace_id: str) -> StoredDocument:
        conn = self._connection()
        conn.execute("BEGIN")  # one consistent view: a compaction must not slip between the reads
        try:
            head = conn.execute("SELECT epoch FROM documents WHERE workspace_id = ?", (workspace_id,)).fetchone()
            if head is None:
                raise UnknownDocument(workspace_id)
            snap = conn.execute(
                "SELECT upto_seq, data, codec FROM doc_snapshots WHERE workspace_id = ?", (workspace_id,)
            ).fetchone()
            since = int(snap[0]) if snap else 0
            rows = conn.execute(
                "SELECT seq, data FROM doc_updates WHERE workspace_id = ? AND seq > ? ORDER BY seq",
                (workspace_id, since),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return StoredDocument(
            epoch=head[0],
            snapshot=snapshot_codec.expand(bytes(snap[1]), snap[2]) if snap else None,
            snapshot_seq=since,
            updates=[(int(q), bytes(d)) for q, d in rows],
        )

    def close(self) -> None:
        self._closed = True
        self._jobs.put(None)
        self._thread.join()
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _append(conn: sqlite3.Connection, batch: Sequence[PendingUpdate], counts: dict[str, int]) -> list[int]:
    now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite DateTime format
    next_seq: dict[str, int] = {}
    for wid, n in counts.items():
        row = conn.execute(
            "UPDATE documents SET last_seq = last_seq + ?, updated_at = ? WHERE workspace_id = ? RETURNING last_seq",
            (n, now, wid),
        ).fetchone()
        if row is None:
            raise UnknownDocument(wid)
        next_seq[wid] = int(row[0]) - n + 1
    seqs: list[int] = []
    rows = []
    for item in batch:
        seq = next_seq[item.workspace_id]
        next_seq[item.workspace_id] = seq + 1
        seqs.append(seq)
        rows.append((item.workspace_id, seq, item.data, item.actor_id, now))
    conn.executemany(
        "INSERT INTO doc_updates (workspace_id, seq, data, actor_id, created_at) VALUES (?, ?, ?, ?, ?)", rows
    )
    return seqs


def _save_snapshot(conn: sqlite3.Connection, workspace_id: str, data: bytes, upto: int) -> tuple[int, int] | None:
    """The bytes go in through incremental blob I/O, not as a bound parameter: Python's sqlite3 keeps a copy of
    a statement's last bound values in its statement cache, so a bound snapshot stayed in memory until the next
    compaction (a document's size for good, and growing with it: the soak)."""
    now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
    head = conn.execute("SELECT last_seq FROM documents WHERE workspace_id = ?", (workspace_id,)).fetchone()
    if head is None:
        raise UnknownDocument(workspace_id)
    if upto > int(head[0]):
        raise ValueError(f"snapshot of {workspace_id} at seq {upto} is past the log head {head[0]}")
    snap = conn.execute("SELECT upto_seq, rowid FROM doc_snapshots WHERE workspace_id = ?", (workspace_id,)).fetchone()
    if snap is not None and upto <= int(snap[0]):
        return None  # not newer: nothing written
    rowid: int | None
    if snap is None:
        rowid = conn.execute(
            "INSERT INTO doc_snapshots (workspace_id, upto_seq, data, created_at) VALUES (?, ?, zeroblob(?), ?)",
            (workspace_id, upto, len(data), now),
        ).lastrowid
    else:
        rowid = snap[1]
        conn.execute(
            "UPDATE doc_snapshots SET upto_seq = ?, data = zeroblob(?), codec = NULL, raw_bytes = NULL, "
            "created_at = ? WHERE rowid = ?",
            (upto, len(data), now, rowid),
        )
    if data:
        assert rowid is not None  # an INSERT that succeeded has a rowid
        with conn.blobopen("doc_snapshots", "data", rowid) as blob:
            blob.write(data)
    removed = conn.execute("DELETE FROM doc_updates WHERE workspace_id = ? AND seq <= ?", (workspace_id, upto)).rowcount
    return upto, removed


class DocumentStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._sqlite = _SqliteThread(db.sqlite_path, db.sqlite_synchronous, "append") if db.is_sqlite else None
        self._pg = None if db.is_sqlite else pg_direct.PgAppender(db.engine)
        self._pg_reads = None if db.is_sqlite else pg_direct.PgLoader(db.engine)
        self._sqlite_reads = (
            _SqliteThread(db.sqlite_path, db.sqlite_synchronous, "load", LOAD_MMAP_BYTES) if db.is_sqlite else None
        )

    async def close(self) -> None:
        for thread in (self._sqlite, self._sqlite_reads):
            if thread is not None:
                thread.close()
        for kept in (self._pg, self._pg_reads):
            if kept is not None:
                await kept.close()

    async def ensure(self, session: AsyncSession, workspace_id: str) -> None:
        """Create the document head for a new workspace (inside the caller's transaction)."""
        session.add(Document(workspace_id=workspace_id))

    async def load(self, workspace_id: str) -> StoredDocument:
        if self._sqlite_reads is not None:
            return await self._sqlite_reads.run(self._sqlite_reads.load, workspace_id)
        assert self._pg_reads is not None
        epoch, since, stored, codec, updates = await self._pg_reads.load(workspace_id)
        snapshot = None if stored is None else await snapshot_codec.decompress(stored, codec)
        return StoredDocument(epoch=epoch, snapshot=snapshot, snapshot_seq=since, updates=updates)

    async def warm_up(self) -> None:
        """Run ``load`` once before the first join: its connection is opened (and on PostgreSQL its statement
        prepared) before anyone waits for it."""
        with contextlib.suppress(UnknownDocument):
            await self.load("00000000-0000-0000-0000-000000000000")

    async def updates_after(self, workspace_id: str, seq: int) -> list[tuple[int, bytes]]:
        """Log rows after ``seq`` (for gap repair); empty when compaction already folded them in."""
        async with self.db.session() as s:
            return await _log_after(s, workspace_id, seq)

    async def append_batch(self, batch: Sequence[PendingUpdate]) -> list[int]:
        """Append every update of ``batch`` in ONE transaction (group commit); returns their sequence numbers.

        Order inside a workspace is the order of ``batch``. Raises UnknownDocument (nothing written) if a
        workspace has no document head.
        """
        counts: dict[str, int] = {}
        for item in batch:
            counts[item.workspace_id] = counts.get(item.workspace_id, 0) + 1
        if self._sqlite is not None:
            return await self._sqlite.run(self._sqlite.append, batch, counts)
        assert self._pg is not None
        return await self._pg.append_batch(batch, counts)

    @property
    def writes_in_log_order(self) -> bool:
        """Whether :meth:`write_in_log_order` is available (SQLite)."""
        return self._sqlite is not None

    async def write_in_log_order(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """SQLite only: run ``job(conn)`` in one transaction on the update log's own thread and connection,
        queued among its appends.

        SQLite has one write lock. A transaction through an aiosqlite session holds it from its first write
        to its commit, across an event-loop round trip per statement, and every append polls for it
        meanwhile (a 500-row summary write held s6's appends 5-9 ms). Queued here, the job holds it only while
        its SQL runs, and the appends wait in order instead of polling. ``job`` must be short: the update log
        waits for it. On PostgreSQL, whose writers do not block the log, write through a session instead."""
        if self._sqlite is None:
            raise RuntimeError("write_in_log_order is for SQLite; write through a session on PostgreSQL")
        return await self._sqlite.run(self._sqlite.exclusive, job)

    async def save_snapshot(self, workspace_id: str, data: bytes, upto: int) -> tuple[int, int] | None:
        """Store ``data`` as the snapshot and delete the log rows up to ``upto``; returns (upto, rows_removed).

        ``data`` is the room's document as it is in memory, which holds every row up to ``upto`` (it may hold
        later ones too: applying those again on load is harmless). Taking it from memory costs one encoding;
        rebuilding it from the database would cost a read and an apply of the whole document, on the event
        loop. Appends go on meanwhile (they only add rows after ``upto``); a snapshot that is not newer than
        the stored one (another node's, or a concurrent one) is dropped: None.
        """
        if self._sqlite is not None:
            return await self._sqlite.run(self._sqlite.save_snapshot, workspace_id, data, upto)
        raw_bytes = len(data)
        data, codec = await snapshot_codec.compress(data)
        async with self.db.transaction() as s:
            head = await s.scalar(select(Document.last_seq).where(Document.workspace_id == workspace_id))
            if head is None:
                raise UnknownDocument(workspace_id)
            since = await s.scalar(select(DocSnapshot.upto_seq).where(DocSnapshot.workspace_id == workspace_id))
            if upto > head:
                raise ValueError(f"snapshot of {workspace_id} at seq {upto} is past the log head {head}")
            if upto <= (since or 0):
                return None
            if since is None:
                try:
                    async with s.begin_nested():
                        s.add(
                            DocSnapshot(
                                workspace_id=workspace_id,
                                upto_seq=upto,
                                data=data,
                                codec=codec,
                                raw_bytes=raw_bytes,
                                created_at=utcnow(),
                            )
                        )
                except IntegrityError:
                    return None  # another snapshot got there first
            else:
                result = await s.execute(
                    update(DocSnapshot)
                    .where(DocSnapshot.workspace_id == workspace_id, DocSnapshot.upto_seq == since)
                    .values(upto_seq=upto, data=data, codec=codec, raw_bytes=raw_bytes, created_at=utcnow())
                )
                if getattr(result, "rowcount", 0) != 1:
                    return None
            removed = await s.execute(
                delete(DocUpdate).where(DocUpdate.workspace_id == workspace_id, DocUpdate.seq <= upto)
            )
            return upto, int(getattr(removed, "rowcount", 0))

    async def reset_epoch(self, workspace_id: str | None = None) -> int:
        """Give documents a new epoch (after storage was reset or restored from a backup), so clients holding
        history from before are refused instead of merging it back as duplicates. Returns rows changed."""
        async with self.db.transaction() as s:
            q = update(Document).values(
                epoch=func.lower(func.hex(func.randomblob(16)))
                if self.db.is_sqlite
                else func.gen_random_uuid().cast(Document.epoch.type)
            )
            if workspace_id is not None:
                q = q.where(Document.workspace_id == workspace_id)
            result = await s.execute(q)
        return int(getattr(result, "rowcount", 0))

    async def info(self, workspace_id: str) -> dict[str, object]:
        """Epoch, log head and storage figures of one document."""
        async with self.db.session() as s:
            head = await s.get(Document, workspace_id)
            if head is None:
                raise UnknownDocument(workspace_id)
            # The document's size, not the stored one (the quota counts what a client would download).
            snap = (
                await s.execute(
                    select(
                        DocSnapshot.upto_seq,
                        func.coalesce(DocSnapshot.raw_bytes, func.length(DocSnapshot.data)),
                    ).where(DocSnapshot.workspace_id == workspace_id)
                )
            ).one_or_none()
        rows, size = await self.log_size(workspace_id)
        return {
            "epoch": head.epoch,
            "last_seq": head.last_seq,
            "snapshot_seq": int(snap[0]) if snap else 0,
            "snapshot_bytes": int(snap[1]) if snap else 0,
            "log_rows": rows,
            "log_bytes": size,
        }

    async def heads(self, workspace_ids: list[str]) -> dict[str, int]:
        """The durable log head (last_seq) of each workspace."""
        async with self.db.session() as s:
            rows = await s.execute(
                select(Document.workspace_id, Document.last_seq).where(Document.workspace_id.in_(workspace_ids))
            )
        return {wid: int(seq) for wid, seq in rows}

    async def log_size(self, workspace_id: str) -> tuple[int, int]:
        """(rows, bytes) in the log tail: what compaction would fold."""
        async with self.db.session() as s:
            n, size = (
                await s.execute(
                    select(func.count(), func.coalesce(func.sum(func.length(DocUpdate.data)), 0)).where(
                        DocUpdate.workspace_id == workspace_id
                    )
                )
            ).one()
        return int(n), int(size)
