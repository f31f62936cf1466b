"""The update log on PostgreSQL: the hot statements each ONE statement on an asyncpg connection kept checked
out of the engine's pool, the appends (``PgAppender``) and the loads (``PgLoader``) each on a connection of
their own, so a large load never holds up the update log.

The append. One statement does what SQLAlchemy did in a round trip per workspace plus an insert and
BEGIN/COMMIT (docs/performance.md#log-pg-append):

- the head update bumps ``last_seq`` by the number of updates of that workspace in the batch and returns
  ``base`` (the head before); the insert, in the same statement, gives the k-th update of the workspace in the
  batch the seq ``base + k``, so seqs are contiguous and follow batch order;
- if a workspace has no head, nothing is written: with one workspace the update matches no row, so the
  insert joins nothing; with several, the heads are only updated if every one of them was found and locked,
  otherwise the statement returns the heads it found (``base`` NULL) so the caller can name the missing one;
- with several workspaces the heads are first locked in ``workspace_id`` order (``FOR UPDATE``), so two
  batches sharing workspaces (two nodes, or a batch and ``reset_epoch``) cannot deadlock. One workspace needs
  no such pass: it is one row lock, and the common batch.

The statement runs outside an explicit transaction: PostgreSQL runs a single statement atomically (all its
CTEs or nothing), which saves the BEGIN and COMMIT round trips. Under READ COMMITTED a head changed by a
concurrent commit is re-read once its lock is free (EvalPlanQual), so the bump applies to the newest
``last_seq``.

The kept connections. A checkout per statement would cost its pre-ping and its reset on return, two more
round trips and several times the statement's own CPU (docs/performance.md#log-pg-append). Without a
pre-ping, a connection PostgreSQL closed (a restart, a terminated backend) is noticed locally: asyncpg marks
it closed when the server's FATAL message or the socket's end arrives, and the next statement checks out a
fresh one. A connection lost mid-statement fails that batch (and its rooms, which reload from what is
durable) and is never used again. asyncpg's per-connection statement cache prepares each statement once
(outside a transaction asyncpg re-prepares by itself if DDL made a cached statement stale; with
``statement_cache_size=0``, e.g. behind pgbouncer in transaction mode, it uses unnamed statements instead).

The load. One statement is one snapshot of the database, even under READ COMMITTED, so a compaction cannot
slip between the snapshot and the log rows it read (docs/performance.md#log-pg-load).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ClauseElement, ColumnElement

from persistence import snapshot_codec
from persistence.db import Database
from persistence.doclog.common import SessionReads
from persistence.doclog.types import LogClosed, PendingUpdate, StoredDocument, UnknownDocument, counts_by_workspace
from persistence.models import DocSnapshot, Document, DocUpdate, utcnow

# $1 workspace, $2 number of updates, $3 data, $4 actors (in batch order), $5 now. Returns base, or no row.
ONE_WORKSPACE_SQL = """
WITH head AS (
    UPDATE documents SET last_seq = last_seq + $2::int8, updated_at = $5
    WHERE workspace_id = $1::varchar
    RETURNING last_seq - $2::int8 AS base
), ins AS (
    INSERT INTO doc_updates (workspace_id, seq, data, actor_id, created_at)
    SELECT $1::varchar, head.base + u.k, u.data, u.actor, $5
    FROM head, unnest($3::bytea[], $4::varchar[]) WITH ORDINALITY AS u(data, actor, k)
)
SELECT base FROM head
"""

# $1 workspaces (distinct), $2 updates per workspace; per update: $3 workspace, $4 k (1..n within its
# workspace), $5 data, $6 actor; $7 now. Returns (workspace_id, base) per head, base NULL if one was missing.
MANY_WORKSPACES_SQL = """
WITH locked AS MATERIALIZED (
    SELECT workspace_id FROM documents
    WHERE workspace_id = ANY($1::varchar[])
    ORDER BY workspace_id
    FOR UPDATE
), heads AS (
    UPDATE documents AS d
    SET last_seq = d.last_seq + c.n, updated_at = $7
    FROM unnest($1::varchar[], $2::int8[]) AS c(wid, n)
    WHERE d.workspace_id = c.wid AND (SELECT count(*) FROM locked) = cardinality($1::varchar[])
    RETURNING d.workspace_id, d.last_seq - c.n AS base
), ins AS (
    INSERT INTO doc_updates (workspace_id, seq, data, actor_id, created_at)
    SELECT u.wid, h.base + u.k, u.data, u.actor, $7
    FROM unnest($3::varchar[], $4::int8[], $5::bytea[], $6::varchar[]) AS u(wid, k, data, actor)
    JOIN heads AS h ON h.workspace_id = u.wid
)
SELECT workspace_id, base FROM heads
UNION ALL
SELECT workspace_id, NULL FROM locked WHERE NOT EXISTS (SELECT FROM heads)
"""


# $1 workspace. The head (seq NULL: epoch, snapshot seq, data and codec, NULLs without a snapshot), then the
# log rows after the snapshot (seq, data); no row at all without a head.
LOAD_SQL = """
SELECT NULL::int8 AS seq, h.epoch, s.upto_seq, s.data, s.codec
FROM documents AS h LEFT JOIN doc_snapshots AS s ON s.workspace_id = h.workspace_id
WHERE h.workspace_id = $1::varchar
UNION ALL
SELECT u.seq, NULL, NULL, u.data, NULL
FROM doc_updates AS u
WHERE u.workspace_id = $1::varchar
  AND u.seq > COALESCE((SELECT upto_seq FROM doc_snapshots WHERE workspace_id = $1::varchar), 0)
"""


class KeptConnection:
    """A connection of the engine's pool, kept checked out and replaced when it is lost. Concurrent callers
    take turns."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None
        self._driver: asyncpg.Connection | None = None
        self._turn = asyncio.Lock()
        self._closed = False

    async def _connection(self) -> asyncpg.Connection:
        if self._closed:  # a fresh checkout after close would outlive the log (and the engine's disposal)
            raise LogClosed("the document log is closed")
        if self._driver is not None and not self._driver.is_closed():
            return self._driver
        await self._drop()
        self._conn = await self.engine.connect()  # the pool's checkout pre-pings it
        driver = (await self._conn.get_raw_connection()).driver_connection
        assert driver is not None  # None only for a connection that was invalidated
        self._driver = driver
        return driver

    async def _drop(self) -> None:
        """Never use this connection again (closed, or left mid-statement by a failure or a cancellation)."""
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        self._closed = True
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            await conn.close()

    async def _fetch(self, sql: str, *args: object, retry_lost: bool = False) -> list[Any]:
        """Run ``sql``. A connection that fails other than by the server refusing the statement is never used
        again; with ``retry_lost`` (reads only) the statement then runs once more, on a fresh connection."""
        async with self._turn:
            for attempt in range(2):
                driver = await self._connection()
                try:
                    rows: list[Any] = await driver.fetch(sql, *args)
                    return rows
                except BaseException as exc:
                    if isinstance(exc, asyncpg.PostgresError) and not driver.is_closed():
                        raise  # the server refused the statement: the connection itself is fine
                    await self._drop()
                    if not (retry_lost and attempt == 0 and isinstance(exc, Exception)):
                        raise
            raise AssertionError("unreachable")


class PgAppender(KeptConnection):
    """The group commit's appends (a process has one writer task, so its callers rarely wait for a turn;
    concurrency between nodes is what the SQL is built for)."""

    async def append_batch(self, batch: Sequence[PendingUpdate], counts: dict[str, int]) -> list[int]:
        """Append ``batch`` (``counts``: updates per workspace, in first-appearance order); returns the seqs.

        Raises UnknownDocument for the first workspace of ``counts`` without a head; then nothing is written.
        """
        if not batch:
            return []
        data = [item.data for item in batch]
        actors = [item.actor_id for item in batch]
        if len(counts) == 1:
            (wid,) = counts
            rows = await self._fetch(ONE_WORKSPACE_SQL, wid, len(batch), data, actors, utcnow())
            if not rows:
                raise UnknownDocument(wid)
            first = int(rows[0][0]) + 1
            return list(range(first, first + len(batch)))
        wids = [item.workspace_id for item in batch]
        ks: list[int] = []
        position = dict.fromkeys(counts, 0)
        for w in wids:
            position[w] += 1
            ks.append(position[w])
        rows = await self._fetch(
            MANY_WORKSPACES_SQL, list(counts), list(counts.values()), wids, ks, data, actors, utcnow()
        )
        base: dict[str, int] = {w: b for w, b in rows}
        if len(base) < len(counts):  # the rows are the heads that exist, base NULL: nothing was written
            raise UnknownDocument(next(w for w in counts if w not in base))
        return [base[w] + k for w, k in zip(wids, ks, strict=True)]


class PgLoader(KeptConnection):
    """Loads of documents. Loads of different rooms take turns on the connection: most take well under a ms,
    a document of megabytes a few. A load is a read, so one that lost its connection (PostgreSQL restarted)
    is tried once more on a fresh one instead of failing the join."""

    async def load(self, workspace_id: str) -> tuple[str, int, bytes | None, str | None, list[tuple[int, bytes]]]:
        """(epoch, snapshot seq, stored snapshot, its codec, log rows after it in order); UnknownDocument
        without a head."""
        head: tuple[str, int, bytes | None, str | None] | None = None
        updates: list[tuple[int, bytes]] = []
        for seq, epoch, upto, data, codec in await self._fetch(LOAD_SQL, workspace_id, retry_lost=True):
            if seq is None:
                head = (str(epoch), int(upto or 0), data, codec)
            else:
                updates.append((int(seq), data))
        if head is None:
            raise UnknownDocument(workspace_id)
        updates.sort()
        return *head, updates


class PostgresDocumentLog(SessionReads):
    """The update log in PostgreSQL, shared by every node: appends and loads on kept connections, snapshots
    through a session (several nodes may compact one document: the checks are optimistic)."""

    writes_in_log_order = False  # PostgreSQL's other writers do not block the appends

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._appends = PgAppender(db.engine)
        self._loads = PgLoader(db.engine)

    def _new_epoch(self) -> ColumnElement[str]:
        return func.gen_random_uuid().cast(Document.epoch.type)

    async def close(self) -> None:
        self._closed = True
        await self._appends.close()
        await self._loads.close()

    async def load(self, workspace_id: str) -> StoredDocument:
        epoch, since, stored, codec, updates = await self._loads.load(workspace_id)
        snapshot = None if stored is None else await snapshot_codec.decompress(stored, codec)
        return StoredDocument(epoch=epoch, snapshot=snapshot, snapshot_seq=since, updates=updates)

    async def warm_up(self) -> None:
        """Open the loads' connection and prepare its statement before the first join waits for them."""
        with contextlib.suppress(UnknownDocument):
            await self.load("00000000-0000-0000-0000-000000000000")

    async def append_batch(self, batch: Sequence[PendingUpdate]) -> list[int]:
        return await self._appends.append_batch(batch, counts_by_workspace(batch))

    async def save_snapshot(self, workspace_id: str, data: bytes, upto: int) -> tuple[int, int] | None:
        """Compressed by Plait (``snapshot_codec``), then written and the rows it covers deleted in one
        transaction; a concurrent snapshot of another node that got there first wins (None)."""
        self._check_open()
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

    async def write_among_appends(
        self, statements: Sequence[tuple[ClauseElement, Sequence[Mapping[str, Any]]]], json_params: Collection[str] = ()
    ) -> None:
        """Not here: on PostgreSQL writers do not share one lock; they write through their own sessions."""
        self._check_open()
        raise RuntimeError("writes go among the appends on SQLite only; write them in a session on PostgreSQL")

    async def store_activity_summaries(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Not here: on PostgreSQL the summaries are written in the derivation's own transaction."""
        self._check_open()
        raise RuntimeError("activity summaries go through the log on SQLite; write them in a session on PostgreSQL")
