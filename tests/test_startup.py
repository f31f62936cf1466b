"""A wrong deployment fails at start with one clear line (issue 20): an un-migrated, older or newer database,
PostgreSQL or Redis unreachable, unsafe production settings; ``plait check`` and ``plait --version``;
``/readyz`` naming the dependency that is down; tokens never in logs, however the app is run (issue 21, 13)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from persistence.migrate import alembic_config, upgrade
from persistence.settings import Settings
from tests.support.databases import drop_postgres_database, fresh_database, sqlite_url
from tests.support.redisproc import RedisProcess
from tests.support.server import SECRET, ThreadServer, free_port, test_settings, wait_ready
from tests.support.users import create_workspace, register

PLAIT = str(Path(sys.executable).parent / "plait")
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()  # the newest migration


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PLAIT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty (un-migrated) PostgreSQL database."""
    url = fresh_database("postgres", tmp_path)
    try:
        yield url
    finally:
        drop_postgres_database(url)


@dataclass
class Run:
    returncode: int | None  # None: still running after the timeout (killed)
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> Run:
    """Run a command with ``env`` over a clean environment; a server still running after ``timeout`` is killed."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    proc = subprocess.Popen(args, env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Run(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Run(None, out, err)


def serve(env: dict[str, str], timeout: float = 30) -> Run:
    return run([PLAIT, "serve", "--port", str(free_port())], env, timeout)


def node_env(url: str, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "PLAIT_DATABASE_URL": url,
        "PLAIT_DATA_DIR": str(tmp / "data"),
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_ENV": "test",
        "PLAIT_PASSWORD_HASH_TIME_COST": "1",
        "PLAIT_PASSWORD_HASH_MEMORY_KIB": "8",
        "PLAIT_PASSWORD_HASH_PARALLELISM": "1",
        **extra,
    }


def error_lines(result: Run) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_refused(result: Run, *fragments: str) -> None:
    """Exited non-zero on its own, no traceback, and one line on stderr says what is wrong."""
    assert result.returncode is not None, f"still serving:\n{result.output}"
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def stamp(url: str, revision: str) -> None:
    async def go() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        await engine.dispose()

    asyncio.run(go())


# ---- database revision -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_refuses_a_database_without_the_schema_or_behind(pg_url: str, tmp_path: Path) -> None:
    env = node_env(pg_url, tmp_path)
    assert_refused(serve(env), "has no Plait schema", "run `plait migrate`")
    upgrade(pg_url, "0003")
    assert_refused(serve(env), f"is at revision 0003 while this version of Plait needs {HEAD}", "run `plait migrate`")


def test_serve_refuses_a_database_ahead_of_the_code(pg_url: str, tmp_path: Path) -> None:
    """An older Plait started against a database a newer one has migrated."""
    upgrade(pg_url)
    stamp(pg_url, "9999_from_the_future")
    assert_refused(serve(node_env(pg_url, tmp_path)), "9999_from_the_future", "unknown to this version")


def test_uvicorn_run_directly_fails_clearly_too(pg_url: str, tmp_path: Path) -> None:
    """The checks are in the lifespan as well: `uvicorn --factory api.app:create_app` says the same, without
    a traceback."""
    port = str(free_port())
    args = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", port]
    result = run(args, node_env(pg_url, tmp_path), timeout=30)
    assert result.returncode is not None and result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert "has no Plait schema" in result.output and "run `plait migrate`" in result.output


def test_sqlite_is_still_migrated_at_start(tmp_path: Path) -> None:
    """SQLite keeps migrating on start (the checks run after the migration)."""
    url = sqlite_url(tmp_path)
    srv = ThreadServer(test_settings(url, tmp_path, migrate_on_start=None)).start()
    try:
        assert httpx.get(f"{srv.base_url}/readyz").json() == {"status": "ok", "checks": {"database": "ok"}}
    finally:
        srv.stop()


# ---- unreachable services --------------------------------------------------------------------------------


def test_serve_names_an_unreachable_postgres_without_its_password(tmp_path: Path) -> None:
    port = free_port()  # closed: nothing listens there
    url = f"postgresql+asyncpg://plait:hunter2@127.0.0.1:{port}/plait"
    result = serve(node_env(url, tmp_path))
    assert_refused(result, f"postgresql+asyncpg://plait:***@127.0.0.1:{port}/plait", "PostgreSQL")
    assert "hunter2" not in result.output


def test_serve_names_an_unreachable_redis_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    env = node_env(sqlite_url(tmp_path), tmp_path, PLAIT_REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0")
    result = serve(env)
    assert_refused(result, f"redis://:***@127.0.0.1:{port}/0", "Redis")
    assert "hunter2" not in result.output


def test_readyz_says_which_dependency_is_down(tmp_path: Path) -> None:
    rds = RedisProcess(free_port()).start()
    srv = ThreadServer(test_settings(sqlite_url(tmp_path), tmp_path, redis_url=rds.url)).start()
    try:
        r = httpx.get(f"{srv.base_url}/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
        rds.stop()
        r = httpx.get(f"{srv.base_url}/readyz", timeout=30)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("error")
    finally:
        srv.stop()
        rds.stop()


# ---- production settings ---------------------------------------------------------------------------------


def test_production_settings_refused_or_warned_with_their_reason(tmp_path: Path) -> None:
    def problems(**values: object) -> tuple[list[str], list[str]]:
        return Settings(env="production", data_dir=tmp_path, **values).production_problems()  # type: ignore[arg-type]

    pg = "postgresql+asyncpg://u@db/plait"
    assert problems(secret_key="k" * 40, database_url=pg) == ([], [])
    refused, _ = problems(database_url=pg)
    assert len(refused) == 1 and "PLAIT_SECRET_KEY must be set" in refused[0]
    refused, _ = problems(secret_key="short", database_url=pg)
    assert len(refused) == 1 and "5 bytes" in refused[0] and "at least 32" in refused[0]
    # the key a development run generated into the data directory
    dev_key = Settings(env="development", data_dir=tmp_path).resolved_secret_key()
    refused, _ = problems(secret_key=dev_key, database_url=pg)
    assert len(refused) == 1 and "development key" in refused[0]
    refused, _ = problems(secret_key="k" * 40, redis_url="redis://r:6379/0")
    assert len(refused) == 1 and "SQLite" in refused[0] and "PLAIT_REDIS_URL" in refused[0]
    refused, warned = problems(secret_key="k" * 40, database_url=pg, webhook_allow_private=True)
    assert refused == [] and len(warned) == 1 and "PLAIT_WEBHOOK_ALLOW_PRIVATE" in warned[0]
    # outside production none of this applies
    assert Settings(env="development", data_dir=tmp_path, redis_url="redis://r/0").production_problems() == ([], [])


@pytest.mark.slow
def test_serve_refuses_unsafe_production_settings(tmp_path: Path) -> None:
    env = node_env(sqlite_url(tmp_path), tmp_path, PLAIT_ENV="production", PLAIT_SECRET_KEY="too-short")
    assert_refused(serve(env), "PLAIT_SECRET_KEY", "at least 32")
    env = node_env(sqlite_url(tmp_path), tmp_path, PLAIT_ENV="production", PLAIT_REDIS_URL="redis://127.0.0.1/0")
    assert_refused(serve(env), "SQLite", "PLAIT_REDIS_URL")
    env = {k: v for k, v in node_env(sqlite_url(tmp_path), tmp_path, PLAIT_ENV="production").items()}
    del env["PLAIT_SECRET_KEY"]
    assert_refused(serve(env), "PLAIT_SECRET_KEY must be set")


# ---- plait check, plait --version ------------------------------------------------------------------------


def test_plait_version() -> None:
    from importlib.metadata import version

    result = run([PLAIT, "--version"], {})
    assert result.returncode == 0 and result.stdout.strip() == f"plait {version('plait')}"


def test_plait_check_passes_a_ready_deployment(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    rds = RedisProcess(free_port()).start()
    try:
        env = node_env(pg_url, tmp_path, PLAIT_REDIS_URL=rds.url, PLAIT_WEBHOOK_ALLOW_PRIVATE="true")
        env["PLAIT_ENV"] = "production"
        result = run([PLAIT, "check"], env)
    finally:
        rds.stop()
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["settings", "settings", "database", "redis"], lines
    assert lines[0].startswith("settings: ok")
    assert lines[1].startswith("settings: warning:") and "PLAIT_WEBHOOK_ALLOW_PRIVATE" in lines[1]
    assert lines[2].startswith("database: ok") and f"revision {HEAD}" in lines[2]
    assert lines[3] == f"redis: ok ({rds.url})"


def test_plait_check_lists_every_problem(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = node_env(pg_url, tmp_path, PLAIT_REDIS_URL=f"redis://127.0.0.1:{port}/0", PLAIT_SECRET_KEY="short")
    env["PLAIT_ENV"] = "production"
    result = run([PLAIT, "check"], env)
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("settings: ") and "at least 32" in lines[0]
    assert lines[1].startswith("database: ") and "has no Plait schema" in lines[1]
    assert lines[2].startswith("redis: ") and f"127.0.0.1:{port}" in lines[2]
    # an unreachable database is one line too
    env["PLAIT_DATABASE_URL"] = f"postgresql+asyncpg://u:pw@127.0.0.1:{port}/x"
    result = run([PLAIT, "check"], env)
    assert result.returncode == 1 and "Traceback" not in result.output
    assert any(line.startswith("database: cannot connect") for line in result.stdout.splitlines()), result.stdout


def test_plait_check_accepts_sqlite_that_serve_will_migrate(tmp_path: Path) -> None:
    result = run([PLAIT, "check"], {"PLAIT_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.output
    assert "migrated when `plait serve` starts" in result.stdout
    assert not (tmp_path / "data").exists(), "check changes nothing"


# ---- tokens never in logs (issue 21, item 13) ------------------------------------------------------------


def test_redaction_by_parsed_parameter() -> None:
    from api.log_redaction import redact_tokens

    cases = {
        "/sync/w?token=abc": "/sync/w?token=<redacted>",
        "/sync/w?%74oken=abc": "/sync/w?%74oken=<redacted>",
        "/api/notifications/stream?a=1&t%6Fken=abc&b=2": "/api/notifications/stream?a=1&t%6Fken=<redacted>&b=2",
        "/x?token=a&token=b": "/x?token=<redacted>&token=<redacted>",
        "/x?tokens=keep&mytoken=keep": "/x?tokens=keep&mytoken=keep",
        "/api/invites/abc/accept": "/api/invites/<redacted>/accept",
        "/api/%69nvites/abc/accept": "/api/invites/<redacted>/accept",
        "/invite/abc": "/invite/<redacted>",
        "/api/me": "/api/me",
    }
    for raw, redacted in cases.items():
        assert redact_tokens(raw) == redacted, raw
    line = 'GET /sync/w?%74oken=abc HTTP/1.1" 101'
    assert "abc" not in redact_tokens(line)


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[str, list[logging.LogRecord]]]:
    """The app under a plain uvicorn (not ``plait serve``) with access and WebSocket lines logged; every
    record of uvicorn's loggers captured."""
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record.getMessage()  # formatted now: after the loggers' filters, as any handler sees it
            records.append(record)

    from api.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(test_settings(sqlite_url(tmp_path), tmp_path)), host="127.0.0.1", port=port, log_level="info"
    )
    capture = Capture()  # after the Config: its logging set-up replaces the handlers of uvicorn's loggers
    names = ("uvicorn", "uvicorn.access")  # uvicorn.error propagates to uvicorn; the access log does not
    for name in names:
        logging.getLogger(name).addHandler(capture)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_ready(base)
    try:
        yield base, records
    finally:
        server.should_exit = True
        thread.join(15)
        for name in names:
            logging.getLogger(name).removeHandler(capture)


async def test_percent_encoded_token_never_reaches_the_logs(logged: tuple[str, list[logging.LogRecord]]) -> None:
    from tests.support.pyclient import YClient

    base, records = logged
    with httpx.Client(base_url=base, timeout=30) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        guest = register(http, "guest")
        invite = http.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers).json()
        r = http.post(f"/api/%69nvites/{invite['token']}/accept", headers=guest.headers)
        assert r.status_code == 200, r.text
        assert http.get(f"/readyz?a=1&%74oken={owner.token}").status_code == 200
    client = YClient()
    await client.connect(f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}/sync/{wid}?%74oken={owner.token}")
    await client.wait_synced()  # the percent-encoded name authenticates
    await client.close()
    await asyncio.sleep(0.2)
    messages = [r.getMessage() for r in records]
    text_ = "\n".join(messages)
    assert f"/sync/{wid}?%74oken=<redacted>" in text_, text_
    assert "/readyz?a=1&%74oken=<redacted>" in text_ and "/api/invites/<redacted>/accept" in text_
    assert owner.token not in text_ and invite["token"] not in text_
