"""The update log on SQLite: the hot statements each as ONE hop to a dedicated thread with its own connection.

Through SQLAlchemy + aiosqlite a transaction costs a round trip between the event loop and the driver's thread
per statement, and under load each waits for the busy loop. Here the whole transaction of an append (BEGIN
IMMEDIATE, head update, bulk insert, COMMIT) runs in the thread at once, and a load is one hop to a second
thread whose connection reads through a memory map (docs/performance.md#log-sqlite-threads).

SQLite has one write lock. Every write that must not hold it across event-loop turns while the appends poll
for it runs on the append thread, queued among the appends in submission order: snapshots, and the activity
summaries (:meth:`SqliteDocumentLog.store_activity_summaries`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ClauseElement, ColumnElement

from persistence import activity_summaries, snapshot_codec
from persistence.db import Database, compiled, driver_rows
from persistence.doclog.common import SessionReads
from persistence.doclog.types import LogClosed, PendingUpdate, StoredDocument, UnknownDocument, counts_by_workspace
from persistence.models import Activity, utcnow

T = TypeVar("T")
_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]

# The load thread reads the database file through a memory map instead of read() calls page by page. Only
# there: a connection with a map re-maps whenever the file has grown, and on the append and ORM connections,
# with the file growing all the time, that costs CPU on every commit (docs/performance.md#log-sqlite-threads).
LOAD_MMAP_BYTES = 256 * 1024 * 1024
# Summaries written per job on the append thread: the appends queued behind a job wait for all of it.
SUMMARIES_PER_JOB = 100


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


class _SqliteThread:
    """A dedicated thread with its own connection that runs jobs one at a time, in submission order."""

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
        """Run ``fn(*args)`` in the thread; the future resolves on the calling loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed:  # queued behind the thread's end, the job would never run and its caller never wake
            future.set_exception(LogClosed(f"the {self._thread.name} store is closed"))
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

    def exclusive(self, job: Callable[[sqlite3.Connection], T], *, derived: bool = False) -> T:
        """``job(conn)`` inside one BEGIN IMMEDIATE ... COMMIT on this thread's connection (rolled back if it
        raises): the one transaction of every write made here. A ``derived`` write (data rebuilt from the log
        at any time) commits without its own fsync: the next append's commit syncs the WAL up to it."""
        conn = self._connection()
        if derived:
            conn.execute("PRAGMA synchronous=OFF")
        _begin(conn)
        try:
            result = job(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            if derived:
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        return result

    def snapshot_read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """``job(conn)`` inside one read transaction: one consistent view of the database."""
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            return job(conn)
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        self._closed = True
        self._jobs.put(None)
        self._thread.join()
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _append(batch: Sequence[PendingUpdate], counts: dict[str, int], conn: sqlite3.Connection) -> list[int]:
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


def _save_snapshot(workspace_id: str, data: bytes, upto: int, conn: sqlite3.Connection) -> tuple[int, int] | None:
    """Under BEGIN IMMEDIATE nothing else writes, so the checks need no optimistic retry.

    The bytes go in through incremental blob I/O, not as a bound parameter: Python's sqlite3 keeps a copy of
    a statement's last bound values in its statement cache, so a bound snapshot stayed in memory until the next
    compaction (a document's size for good, growing with the document)."""
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


def _load(workspace_id: str, conn: sqlite3.Connection) -> StoredDocument:
    """Head, snapshot and the log after it, read in one transaction: a compaction cannot slip between."""
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
    return StoredDocument(
        epoch=head[0],
        snapshot=snapshot_codec.expand(bytes(snap[1]), snap[2]) if snap else None,
        snapshot_seq=since,
        updates=[(int(q), bytes(d)) for q, d in rows],
    )


def _write_summaries(
    sql: str, params: list[tuple[Any, ...]], ids: list[str], conn: sqlite3.Connection
) -> dict[str, int]:
    """The guarded summary ``UPDATE``s, then the ``doc_seq`` each row holds (ours where the guard passed)."""
    conn.executemany(sql, params)
    marks = ",".join("?" * len(ids))
    query = f"SELECT id, doc_seq FROM {Activity.__tablename__} WHERE id IN ({marks})"  # noqa: S608 (placeholders only)
    return {str(row_id): int(seq) for row_id, seq in conn.execute(query, ids)}


def _execute_all(jobs: Sequence[tuple[str, list[tuple[Any, ...]]]], conn: sqlite3.Connection) -> None:
    """Each statement's rows in turn; a constraint refused is reported as SQLAlchemy reports it."""
    for sql, params in jobs:
        try:
            conn.executemany(sql, params)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(sql, None, exc) from exc


class SqliteDocumentLog(SessionReads):
    """The update log in a SQLite file: appends and snapshots on one thread, loads on another."""

    writes_in_log_order = True

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._appends = _SqliteThread(db.sqlite_path, db.sqlite_synchronous, "append")
        self._loads = _SqliteThread(db.sqlite_path, db.sqlite_synchronous, "load", LOAD_MMAP_BYTES)

    def _new_epoch(self) -> ColumnElement[str]:
        return func.lower(func.hex(func.randomblob(16)))

    async def close(self) -> None:
        self._closed = True
        self._appends.close()
        self._loads.close()

    async def load(self, workspace_id: str) -> StoredDocument:
        return await self._loads.run(self._loads.snapshot_read, functools.partial(_load, workspace_id))

    async def warm_up(self) -> None:
        """Open the load thread's connection before the first join waits for it."""
        with contextlib.suppress(UnknownDocument):
            await self.load("00000000-0000-0000-0000-000000000000")

    async def append_batch(self, batch: Sequence[PendingUpdate]) -> list[int]:
        counts = counts_by_workspace(batch)
        return await self._appends.run(self._appends.exclusive, functools.partial(_append, batch, counts))

    async def save_snapshot(self, workspace_id: str, data: bytes, upto: int) -> tuple[int, int] | None:
        """On the append thread, so the appends queued meanwhile wait for it in order instead of polling for
        SQLite's write lock."""
        job = functools.partial(_save_snapshot, workspace_id, data, upto)
        return await self._appends.run(self._appends.exclusive, job)

    async def write_among_appends(
        self, statements: Sequence[tuple[ClauseElement, Sequence[Mapping[str, Any]]]], json_params: Collection[str] = ()
    ) -> None:
        """Module-level ``statements``, each run for its rows, in ONE transaction on the append thread, queued
        among the appends (the task index's writes, ``persistence/task_index_writes.py``)."""
        self._check_open()
        dialect = self.db.engine.dialect
        jobs = []
        for statement, rows in statements:
            sql, order = compiled(statement, dialect)
            jobs.append((sql, driver_rows(order, rows, json_params)))
        job = functools.partial(_execute_all, jobs)
        await self._appends.run(functools.partial(self._appends.exclusive, derived=True), job)

    async def store_activity_summaries(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Jobs of ``SUMMARIES_PER_JOB`` rows on the append thread, one transaction each, queued among the
        appends: through an aiosqlite session the ``UPDATE`` would hold the write lock across an event-loop
        turn per statement while every append polled for it (docs/performance.md#log-summaries)."""
        self._check_open()
        sql, order = compiled(activity_summaries.SUMMARY_UPDATE, self.db.engine.dialect)
        stored: dict[str, int] = {}
        for i in range(0, len(rows), SUMMARIES_PER_JOB):
            chunk = rows[i : i + SUMMARIES_PER_JOB]
            params = driver_rows(order, chunk, activity_summaries.JSON_PARAMS)
            job = functools.partial(_write_summaries, sql, params, [str(r["row_id"]) for r in chunk])
            stored.update(await self._appends.run(self._appends.exclusive, job))
        return stored
