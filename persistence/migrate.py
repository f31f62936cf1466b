"""Alembic, driven from code: the only way Plait's schema is created or changed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (blocking; call from a thread when a loop is running)."""
    if url.startswith("sqlite"):
        ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


def ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema is, compared with this code's migrations."""

    current: str | None  # the revision in alembic_version; None: no Plait schema (empty or foreign database)
    head: str  # what this code needs
    known: bool  # ``current`` is one of this code's revisions (False: a newer Plait migrated the database)

    @property
    def problem(self) -> str | None:
        """What is wrong, to follow "the database <url> ", and what to do; None when it is at the head."""
        if self.current is None:
            return "has no Plait schema: run `plait migrate`"
        if not self.known:
            return (
                f"is at revision {self.current}, unknown to this version of Plait (which needs {self.head}): a newer "
                "Plait has migrated it; run that version (or restore the backup taken before the upgrade)"
            )
        if self.current != self.head:
            return f"is at revision {self.current} while this version of Plait needs {self.head}: run `plait migrate`"
        return None


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """Read the database's current revision (its alembic_version table) and compare it with the head of this
    code's migration scripts."""

    def current(conn: Connection) -> tuple[str, ...]:
        # Read directly (alembic's MigrationContext would log at INFO on every start)
        if not inspect(conn).has_table("alembic_version"):
            return ()
        return tuple(row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version")))

    async with engine.connect() as conn:
        heads = await conn.run_sync(current)
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None, "no migrations"
    if not heads:
        return SchemaStatus(None, head, known=False)
    try:
        known = all(script.get_revision(h) is not None for h in heads)
    except CommandError:  # alembic's ResolutionError: a revision this code has no script for
        known = False
    return SchemaStatus(",".join(heads), head, known)
