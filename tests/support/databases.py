"""Fresh, isolated databases for tests: a temporary SQLite file or a new PostgreSQL database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import pytest

if TYPE_CHECKING:
    from pycrdt import Doc

    from persistence.db import Database
    from persistence.doclog import StoredDocument

PG_URL = os.environ.get("PLAIT_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from inside a running loop (async tests): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def postgres_available() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(_dsn(PG_URL), timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return _run(probe())


def require_postgres() -> None:
    """Skip locally without PostgreSQL; in CI a missing service is a failure, never a skip."""
    if not postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but not reachable at {PG_URL}")
        pytest.skip("PostgreSQL not reachable")


def create_postgres_database() -> str:
    name = f"plait_t_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(_dsn(PG_URL))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    _run(create())
    base = PG_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(_dsn(PG_URL))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(drop())


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'plait.db'}"


def fresh_database(kind: str, tmp: Path) -> str:
    """A new empty database of ``kind`` ("sqlite" or "postgres"); caller drops postgres ones."""
    if kind == "postgres":
        require_postgres()
        return create_postgres_database()
    return sqlite_url(tmp)


@asynccontextmanager
async def migrated_database(kind: str, tmp: Path) -> AsyncIterator[Database]:
    """A fresh database of ``kind`` at the latest migration, opened; disposed (and dropped) afterwards."""
    from persistence.db import Database
    from persistence.migrate import upgrade_async

    url = fresh_database(kind, tmp)
    await upgrade_async(url)
    db = Database(url)
    try:
        yield db
    finally:
        await db.dispose()
        if kind == "postgres":
            drop_postgres_database(url)


async def stored_document(db: Database, workspace_id: str) -> StoredDocument:
    """What the database holds of a document, read through a store of its own that is closed afterwards (on
    PostgreSQL a store keeps connections checked out)."""
    from persistence.doclog import open_document_log

    store = open_document_log(db)
    try:
        return await store.load(workspace_id)
    finally:
        await store.close()


async def stored_at(url: str, workspace_id: str) -> StoredDocument:
    """What the database at ``url`` holds of a document, through an engine of its own (disposed here)."""
    from persistence.db import Database

    db = Database(url)
    try:
        return await stored_document(db, workspace_id)
    finally:
        await db.dispose()


async def stored_doc(url: str, workspace_id: str) -> Doc[Any]:
    """The document the database at ``url`` holds, rebuilt (what a room loading it would start from)."""
    return (await stored_at(url, workspace_id)).to_doc()


async def new_document(db: Database) -> str:
    """A workspace with its document head (no members): what the document store needs to append to."""
    from persistence.models import Document, Workspace

    async with db.transaction() as s:
        ws = Workspace(name="w")
        s.add(ws)
        await s.flush()
        s.add(Document(workspace_id=ws.id))
    return str(ws.id)


class MigratedTemplates:
    """Databases at the latest migration, copied from one migrated per backend and session: a server started on
    a copy finds nothing to migrate (running every migration on each test's new database was most of a test
    server's start). The template of PostgreSQL is dropped by ``drop()``."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._urls: dict[str, str] = {}

    def _template(self, kind: str) -> str:
        if kind not in self._urls:
            from persistence.migrate import upgrade_async

            url = fresh_database(kind, self._tmp / kind)
            _run(upgrade_async(url))
            self._urls[kind] = url
        return self._urls[kind]

    def copy(self, kind: str, tmp: Path) -> str:
        """A new database of ``kind`` at the latest migration; the caller drops PostgreSQL ones."""
        template = self._template(kind)
        if kind == "postgres":
            name = f"plait_t_{uuid.uuid4().hex[:12]}"

            async def create() -> None:
                conn = await asyncpg.connect(_dsn(PG_URL))
                try:
                    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template.rsplit("/", 1)[1]}"')
                finally:
                    await conn.close()

            _run(create())
            return f"{PG_URL.rsplit('/', 1)[0]}/{name}"
        url = sqlite_url(tmp)
        with (
            closing(sqlite3.connect(template.split("///", 1)[1])) as src,
            closing(sqlite3.connect(tmp / "plait.db")) as dst,
        ):
            src.backup(dst)
        return url

    def drop(self) -> None:
        if "postgres" in self._urls:
            drop_postgres_database(self._urls.pop("postgres"))
