"""Async engine and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Insert, Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from persistence.settings import StartupError


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
    bare, tls = postgres_tls(url)
    return create_async_engine(bare, pool_size=pool_size, max_overflow=20, pool_pre_ping=True, connect_args=tls)


# libpq's TLS parameters (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS), which
# people put in PLAIT_DATABASE_URL: SQLAlchemy's asyncpg dialect hands every query parameter to asyncpg.connect()
# as a keyword, and asyncpg knows none of these there (TypeError), so they become its one ``ssl`` argument.
LIBPQ_TLS_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def postgres_tls(url: str) -> tuple[URL, dict[str, Any]]:
    """A PostgreSQL URL without libpq's TLS parameters, and the connect arguments they mean (``{"ssl": ...}``;
    ``{}`` without them: asyncpg's default, ``prefer``). For every engine of a node (the pool the update log's kept
    connections come from, the start-up checks, the migrations), so all connect alike.

    As libpq: ``disable``/``allow``/``prefer`` never verify; ``require`` encrypts without verifying unless
    ``sslrootcert`` is given (then it verifies the chain, as libpq does when a root certificate is present);
    ``verify-ca`` verifies the chain, ``verify-full`` the chain and the host name. ``sslrootcert=system`` trusts
    the system's CAs; ``sslcert``/``sslkey``(/``sslpassword``) present a client certificate. The files are read
    once, when the engine is made (rotating them needs a restart). A bad mode or an unreadable file is a
    StartupError naming it."""
    parsed = make_url(url)
    params = {k: v for k, v in parsed.query.items() if k in LIBPQ_TLS_PARAMS}
    if not params:
        return parsed, {}
    bare = parsed.difference_update_query(LIBPQ_TLS_PARAMS)
    values = {k: v if isinstance(v, str) else v[-1] for k, v in params.items()}
    mode = values.get("sslmode", "prefer")
    if mode not in SSL_MODES:
        raise StartupError(f"PLAIT_DATABASE_URL: sslmode={mode} is not one of {', '.join(SSL_MODES)}")
    root, cert = values.get("sslrootcert"), values.get("sslcert")
    verify = mode in ("verify-ca", "verify-full") or (mode == "require" and root is not None)
    if mode == "disable":
        return bare, {"ssl": False}
    if not verify and cert is None:
        return bare, {"ssl": mode}  # asyncpg's own: encrypted (require) or attempted (allow, prefer), unverified
    try:
        if verify and root not in (None, "system"):
            context = ssl.create_default_context(cafile=root)
        else:
            context = ssl.create_default_context()  # the system's CAs (sslrootcert=system, or none given)
        context.check_hostname = mode == "verify-full"
        if not verify:
            context.verify_mode = ssl.CERT_NONE
        if cert is not None:
            context.load_cert_chain(cert, values.get("sslkey"), values.get("sslpassword"))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(
            f"PLAIT_DATABASE_URL: cannot load the TLS files (sslrootcert={root}, sslcert={cert}): {exc}"
        ) from exc
    return bare, {"ssl": context}


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
