"""Alembic migrations on fresh SQLite and PostgreSQL databases: empty -> head, round trips, no drift."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from persistence.db import make_engine
from persistence.migrate import alembic_config, downgrade, upgrade
from persistence.models import FULLTEXT_OBJECTS, Base
from tests.support.databases import drop_postgres_database, fresh_database

EXPECTED_TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = fresh_database(str(request.param), tmp_path)
    try:
        yield url
    finally:
        if request.param == "postgres":
            drop_postgres_database(url)


def _inspect(url: str, fn: Any) -> Any:
    async def run() -> Any:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _fulltext(name: str) -> bool:
    """The task index's full-text objects, which only the migration describes (SQLite's FTS5 table and its
    shadow tables, PostgreSQL's tsvector column and GIN index)."""
    return any(name == o or name.startswith(f"{o}_") for objs in FULLTEXT_OBJECTS.values() for o in objs)


def tables(url: str) -> set[str]:
    names = set(_inspect(url, lambda conn: inspect(conn).get_table_names())) - {"alembic_version"}
    return {n for n in names if not _fulltext(n)}


def current_revision(url: str) -> str | None:
    return _inspect(url, lambda conn: MigrationContext.configure(conn).get_current_revision())  # type: ignore[no-any-return]


def drift(url: str) -> list[Any]:
    """Differences between the models and the migrated schema (must be none: migrations own the schema)."""

    def compare(conn: Connection) -> list[Any]:
        def include(_obj: Any, name: str | None, _type: str, reflected: bool, compare_to: Any) -> bool:
            return not (reflected and compare_to is None and name is not None and _fulltext(name))

        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include})
        return list(compare_metadata(ctx, Base.metadata))

    return _inspect(url, compare)  # type: ignore[no-any-return]


def revisions() -> list[str]:
    """All revisions, oldest first."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_upgrade_empty_to_head(empty_db: str) -> None:
    assert tables(empty_db) == set()
    upgrade(empty_db)
    assert tables(empty_db) == EXPECTED_TABLES
    assert current_revision(empty_db) == revisions()[-1]
    assert drift(empty_db) == []


def test_downgrade_to_base_and_upgrade_again(empty_db: str) -> None:
    upgrade(empty_db)
    downgrade(empty_db, "base")
    assert tables(empty_db) == set()
    assert current_revision(empty_db) is None
    upgrade(empty_db)
    assert tables(empty_db) == EXPECTED_TABLES
    assert drift(empty_db) == []


def test_each_migration_steps_up_and_down(empty_db: str) -> None:
    """Every revision's downgrade undoes exactly its upgrade (checked one step at a time)."""
    seen: list[set[str]] = [tables(empty_db)]
    for rev in revisions():
        upgrade(empty_db, rev)
        assert current_revision(empty_db) == rev
        seen.append(tables(empty_db))
    for expected in reversed(seen[:-1]):
        downgrade(empty_db, "-1")
        assert tables(empty_db) == expected
    assert current_revision(empty_db) is None


def test_plait_migrate_command(empty_db: str, tmp_path: Path) -> None:
    env = {**os.environ, "PLAIT_DATABASE_URL": empty_db, "PLAIT_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "api", "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert tables(empty_db) == EXPECTED_TABLES
    # Running it again is a no-op.
    again = subprocess.run(
        [sys.executable, "-m", "api", "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr
    assert current_revision(empty_db) == revisions()[-1]


def test_downgrading_0005_expands_compressed_snapshots(tmp_path: Path) -> None:
    """The revision before 0005 reads a snapshot's bytes as the document: going back expands the rows that
    Plait compressed, so nothing stored becomes unreadable."""
    from pycrdt import Doc, Map
    from sqlalchemy import text

    from persistence.db import Database
    from persistence.doclog import PendingUpdate, open_document_log
    from tests.support.databases import new_document

    url = fresh_database("postgres", tmp_path)
    try:
        upgrade(url)
        doc = Doc()
        doc["m"] = Map({str(i): "compressible " * 8 for i in range(500)})
        update = doc.get_update()

        async def write() -> str:
            db = Database(url)
            store = open_document_log(db)
            try:
                wid = await new_document(db)
                await store.append_batch([PendingUpdate(wid, update, None)])
                assert await store.save_snapshot(wid, update, 1) is not None
                return wid
            finally:
                await store.close()
                await db.dispose()

        wid = asyncio.run(write())
        downgrade(url, "0004")
        stored = _inspect(
            url,
            lambda conn: conn.execute(
                text("SELECT data FROM doc_snapshots WHERE workspace_id = :w"), {"w": wid}
            ).scalar_one(),
        )
        assert bytes(stored) == update
    finally:
        drop_postgres_database(url)
