"""Start-up checks: a wrong deployment is refused with one line saying what is wrong and what to do.

The same checks serve ``plait serve`` (before uvicorn starts), the application's lifespan (any other way of
running it, e.g. ``uvicorn --factory api.app:create_app``) and ``plait check`` (which reports each one and
changes nothing). See docs/deployment.md, "Start-up checks and `plait check`".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from persistence.db import is_sqlite, postgres_tls
from persistence.migrate import SchemaStatus, ensure_sqlite_dir, schema_status, upgrade_async
from persistence.settings import Settings, StartupError
from sync_server.fanout import RedisTarget

log = logging.getLogger("plait.startup")
CONNECT_TIMEOUT = 10.0
SECRET_QUERY_PARAMETERS = {"password", "pass", "passwd", "pwd"}


@dataclass(frozen=True)
class Check:
    """One line of ``plait check``: ``<name>: <detail>``."""

    name: str  # "settings", "database" or "redis"
    ok: bool
    detail: str  # "ok (...)", "warning: ..." or the problem and what to do

    @property
    def line(self) -> str:
        return f"{self.name}: {self.detail}"


def redact_url(url: str) -> str:
    """``url`` with its password (and any password query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    netloc, query = parts.netloc, parts.query
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_QUERY_PARAMETERS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in SECRET_QUERY_PARAMETERS else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _describe(exc: BaseException) -> str:
    """The root cause of a connection failure, on one line: ``ConnectionRefusedError: [Errno 111] ...``."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    message = " ".join(str(exc).split()) or "no detail"
    if len(message) > 200:
        message = message[:200] + "..."
    return f"{type(exc).__name__}: {message}"


def migrates_on_start(settings: Settings) -> bool:
    url = settings.resolved_database_url()
    return settings.migrate_on_start if settings.migrate_on_start is not None else is_sqlite(url)


# ---- settings ------------------------------------------------------------------------------------------------


def settings_checks(settings: Settings) -> list[Check]:
    refused, warned = settings.production_problems()
    checks = [Check("settings", False, reason) for reason in refused]
    if not refused:
        checks.append(Check("settings", True, f"ok (PLAIT_ENV={settings.env})"))
    checks += [Check("settings", True, f"warning: {reason}") for reason in warned]
    return checks


def check_settings(settings: Settings) -> None:
    """Refuse settings unsafe in production (StartupError, the first reason); log the ones only warned about."""
    for check in settings_checks(settings):
        if not check.ok:
            raise StartupError(check.detail)
        if check.detail.startswith("warning: "):
            log.warning("%s", check.detail.removeprefix("warning: "))


# ---- database ------------------------------------------------------------------------------------------------


def _check_engine(url: str) -> AsyncEngine:
    """An engine of its own, without a pool, and (PostgreSQL) a bounded connect time."""
    if is_sqlite(url):
        return create_async_engine(url, poolclass=NullPool)
    bare, tls = postgres_tls(url)  # sslmode/sslrootcert/... as asyncpg's ssl argument, as every engine of the node
    return create_async_engine(bare, poolclass=NullPool, connect_args={"timeout": CONNECT_TIMEOUT, **tls})


async def _connect_problem(engine: AsyncEngine, url: str) -> str | None:
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), CONNECT_TIMEOUT)
    except Exception as exc:  # any failure to connect is reported, never raised
        if is_sqlite(url):
            return (
                f"cannot open the SQLite database {redact_url(url)} ({_describe(exc)}): check PLAIT_DATA_DIR or "
                "PLAIT_DATABASE_URL and that the directory is writable by this user"
            )
        return (
            f"cannot connect to the database at {redact_url(url)} ({_describe(exc)}): check that PostgreSQL is "
            "running and reachable from this host, and PLAIT_DATABASE_URL (host, port, user, password, database)"
        )
    return None


def _sqlite_file(url: str) -> Path | None:
    path = url.split("///", 1)[-1]
    return None if not path or path == ":memory:" else Path(path)


async def database_check(settings: Settings, *, apply_migrations: bool) -> Check:
    """Reachable, and at this code's migration head. With ``apply_migrations`` (start-up) pending migrations
    are applied first when the node migrates on start (SQLite by default); without (``plait check``) nothing
    is changed, and a database the node will migrate on start passes."""
    url = settings.resolved_database_url()
    shown = redact_url(url)
    migrates = migrates_on_start(settings)
    sqlite_file = _sqlite_file(url) if is_sqlite(url) else None
    if sqlite_file is not None and not sqlite_file.exists():  # not created by connecting to it here
        if not migrates:
            return Check("database", False, f"the database {shown} has no Plait schema: run `plait migrate`")
        if not apply_migrations:
            detail = f"ok ({shown} does not exist yet: created and migrated when `plait serve` starts)"
            return Check("database", True, detail)
        ensure_sqlite_dir(url)
    engine = _check_engine(url)
    try:
        problem = await _connect_problem(engine, url)
        if problem is not None:
            return Check("database", False, problem)
        status = await schema_status(engine)
    finally:
        await engine.dispose()
    if status.problem is not None and migrates and (status.current is None or status.known):
        if not apply_migrations:
            at = f"at revision {status.current}" if status.current else "empty"
            return Check("database", True, f"ok ({shown} {at}: migrated to {status.head} when `plait serve` starts)")
        await upgrade_async(url)
        status = await _status(url)
    if status.problem is not None:
        return Check("database", False, f"the database {shown} {status.problem}")
    return Check("database", True, f"ok ({shown} at revision {status.current})")


async def _status(url: str) -> SchemaStatus:
    engine = _check_engine(url)
    try:
        return await schema_status(engine)
    finally:
        await engine.dispose()


# ---- redis ---------------------------------------------------------------------------------------------------


async def redis_check(settings: Settings) -> Check:
    url = settings.redis_url
    if not url:
        return Check("redis", True, "not configured (PLAIT_REDIS_URL unset: a single node)")
    shown = redact_url(url)
    try:
        # the node's own way to reach it (one server or a cluster, plain or TLS)
        client = RedisTarget.from_settings(settings).client(
            socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
        try:
            await client.ping()
        finally:
            await client.aclose()
    except Exception as exc:  # any failure to reach it is reported, never raised
        return Check(
            "redis",
            False,
            f"cannot reach Redis at {shown} ({_describe(exc)}): check that Redis is running and reachable from this "
            "host, and PLAIT_REDIS_URL (host, port, password, database number)",
        )
    return Check("redis", True, f"ok ({shown})")


# ---- together ------------------------------------------------------------------------------------------------


async def check_dependencies(settings: Settings) -> None:
    """At start: Redis reachable, then the database reachable, migrated if the node migrates on start, and at
    this code's head; StartupError with the first problem. Nothing is migrated unless everything is reachable."""
    result = await redis_check(settings)
    if result.ok:
        result = await database_check(settings, apply_migrations=True)
    if not result.ok:
        raise StartupError(result.detail)


async def all_checks(settings: Settings) -> list[Check]:
    """What ``plait check`` prints: every check, changing nothing."""
    return [
        *settings_checks(settings),
        await database_check(settings, apply_migrations=False),
        await redis_check(settings),
    ]
