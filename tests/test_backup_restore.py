"""The backup and restore runbook of docs/operations.md, followed end to end on PostgreSQL: ``pg_dump`` while
clients write, drop the database, restore it, ``plait reset-epoch``, start again. Nothing acknowledged before
the dump started is lost; a client whose local history is newer than the backup is told to reload (4409)
instead of merging that history back as duplicates."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.databases import create_postgres_database, drop_postgres_database, require_postgres
from tests.support.pyclient import YClient, sync_url
from tests.support.server import SECRET, ThreadServer
from tests.support.users import create_workspace, register

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, f"{cmd[0]}: {done.stderr}"
    return done


async def test_pg_dump_under_write_load_then_restore_and_reset_epoch(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    require_postgres()
    url = create_postgres_database()  # dropped by make_server's teardown, after its servers stopped
    _run(sys.executable, "-m", "api", "migrate", env={**os.environ, "PLAIT_DATABASE_URL": url})
    srv = make_server("postgres", database_url=url)
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        epoch = http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["epoch"]
    stale = YClient()
    await stale.connect(sync_url(srv.ws_url, wid, owner.token) + f"&epoch={epoch}")
    await stale.wait_synced()

    # write load: REST creations one after another; each title is recorded once its 201 came back
    acknowledged: list[tuple[float, str]] = []
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=srv.base_url, timeout=30) as w:
            i = 0
            while not stop.is_set():
                r = w.post(f"/api/workspaces/{wid}/tasks", json={"title": f"t{i}"}, headers=owner.headers)
                assert r.status_code == 201, r.text
                acknowledged.append((time.monotonic(), f"t{i}"))
                i += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    await _until(lambda: len(acknowledged) >= 20)
    dump = tmp_path / "plait.dump"
    started = time.monotonic()
    _run("pg_dump", "--format=custom", f"--file={dump}", _libpq(url))
    before_dump = {title for at, title in acknowledged if at < started}
    await _until(lambda: len(acknowledged) >= len(before_dump) + 20)  # written after the dump: lost
    stop.set()
    thread.join(30)
    written = {title for _, title in acknowledged}
    await _until(lambda: len(stale.tasks_map()) == len(written))
    srv.stop()
    await stale.wait_closed()

    # the runbook: drop, restore, new epoch, start
    drop_postgres_database(url)
    name = url.rsplit("/", 1)[1]
    base = _libpq(url).rsplit("/", 1)[0]
    _run("psql", f"{base}/postgres", "-c", f'CREATE DATABASE "{name}"')
    _run("pg_restore", "--no-owner", f"--dbname={_libpq(url)}", str(dump))
    env = {**os.environ, "PLAIT_DATABASE_URL": url, "PLAIT_SECRET_KEY": SECRET}
    _run(sys.executable, "-m", "api", "reset-epoch", env=env)
    srv2 = make_server("postgres", database_url=url)
    with httpx.Client(base_url=srv2.base_url, timeout=30) as http:
        new_epoch = http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["epoch"]
        restored = [t["title"] for t in http.get(f"/api/workspaces/{wid}/tasks", headers=owner.headers).json()]
    assert new_epoch != epoch
    assert before_dump <= set(restored), f"acknowledged before the dump, lost: {before_dump - set(restored)}"
    assert len(restored) == len(set(restored)) and set(restored) < written

    # the client with newer history is refused, not merged; a reloaded client sees the restored state
    await stale.connect(sync_url(srv2.ws_url, wid, owner.token) + f"&epoch={epoch}")
    assert await stale.wait_closed() == 4409
    assert len(stale.tasks_map()) == len(written), "the stale client still holds its newer history"
    fresh = YClient()
    await fresh.connect(sync_url(srv2.ws_url, wid, owner.token) + f"&epoch={new_epoch}")
    await fresh.wait_synced()
    assert sorted(str(t["title"]) for t in fresh.tasks().values()) == sorted(restored)
    await fresh.close()
    with httpx.Client(base_url=srv2.base_url, timeout=30) as http:
        after = [t["title"] for t in http.get(f"/api/workspaces/{wid}/tasks", headers=owner.headers).json()]
    assert sorted(after) == sorted(restored), "nothing of the stale client came back"
