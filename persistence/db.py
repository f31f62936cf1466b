"""Async engine and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Insert, Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


# Python's sqlite3 keeps each cached statement's last bound values, a copy of every blob among them, until the
# statement runs again. A connection that bound one this large (a version's state: the whole document) is
# replaced at its next checkout, so the copy does not stay in memory for the life of the pool.
LARGE_BINDING_BYTES = 256 * 1024


def _binds_large_blob(parameters: Any) -> bool:
    values = parameters.values() if isinstance(parameters, Mapping) else parameters or ()
    return any(isinstance(v, bytes | bytearray | memoryview) and len(v) >= LARGE_BINDING_BYTES for v in values)


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 10) -> AsyncEngine:
    """Create the engine; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def _recycle_after_large_blob(
            conn: Any, _cursor: Any, _statement: str, parameters: Any, _context: Any, executemany: bool
        ) -> None:
            if not executemany and _binds_large_blob(parameters):  # executemany: the small rows of the feed
                conn.connection.invalidate(soft=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = url
        self.sqlite_synchronous = sqlite_synchronous
        self.engine = make_engine(url, sqlite_synchronous=sqlite_synchronous)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    @property
    def sqlite_path(self) -> str:
        return self.url.split("///", 1)[1]

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one committed transaction (rolled back on error)."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


_COMPILED: dict[tuple[int, str], tuple[ClauseElement, str, tuple[str, ...]]] = {}


def compiled(statement: ClauseElement, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """The SQL text of a module-level ``statement`` for ``dialect`` and the order of its positional
    parameters, compiled once (the statement is kept with it: its id() is never reused for another one)."""
    key = (id(statement), dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        done = cast(SQLCompiler, statement.compile(dialect=dialect))
        found = _COMPILED[key] = (statement, str(done), tuple(done.positiontup or ()))
    return found[1], found[2]


def driver_rows(
    order: Sequence[str], rows: Sequence[Mapping[str, Any]], json_params: Collection[str] = ()
) -> list[tuple[Any, ...]]:
    """``rows`` as the driver's parameter tuples, in ``order``, the ``json_params`` serialized."""
    return [tuple(json.dumps(row[n]) if n in json_params else row[n] for n in order) for row in rows]


async def execute_many(
    session: AsyncSession,
    statement: ClauseElement,
    rows: Sequence[Mapping[str, Any]],
    *,
    json_params: Collection[str] = (),
) -> None:
    """``executemany`` of a module-level statement, compiled once per dialect, with each row passed to the
    driver as a tuple (the ``json_params`` serialized here). SQLAlchemy's own executemany processes every row's
    bind parameters on the event loop: 15 µs a row, so a derivation window of 250 rows blocked it 4 ms.
    Only for parameters the driver takes as they are (strings, numbers, JSON); not for dates."""
    if not rows:
        return
    conn = await session.connection()
    sql, order = compiled(statement, conn.dialect)
    await conn.exec_driver_sql(sql, driver_rows(order, rows, json_params))


@functools.cache
def _insert_ignoring(dialect: str, table: Table, conflict: tuple[str, ...]) -> Insert:
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=conflict)
    return pg_insert(table).on_conflict_do_nothing(index_elements=conflict)


async def insert_ignoring_conflicts(
    session: AsyncSession, db: Database, table: Table, rows: list[dict[str, Any]], conflict: list[str]
) -> None:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING``: the unique key makes derivation idempotent."""
    if rows:
        statement = _insert_ignoring("sqlite" if db.is_sqlite else "postgresql", table, tuple(conflict))
        await session.execute(statement, rows)
