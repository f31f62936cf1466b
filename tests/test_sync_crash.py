"""kill -9 of the server process during a write storm, then restart: every update any client received is in
the document. Also a clean restart keeps everything. Real server processes, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pycrdt import Map

from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.pyclient import YClient, sync_url
from tests.support.server import SECRET, ProcessServer
from tests.support.users import create_workspace, register


@pytest.fixture(params=["sqlite", "postgres"])
def db_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    url = fresh_database(str(request.param), tmp_path)
    yield {
        "PLAIT_DATABASE_URL": url,
        "PLAIT_DATA_DIR": str(tmp_path),
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_MIGRATE_ON_START": "true",
        "PLAIT_ENV": "test",
    }
    if request.param == "postgres":
        drop_postgres_database(url)


@pytest.mark.slow
async def test_kill_9_during_write_storm_loses_nothing_any_peer_saw(db_env: dict[str, str], tmp_path: Path) -> None:
    port_server = ProcessServer(db_env, log_path=tmp_path / "server.log").start()
    with httpx.Client(base_url=port_server.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
    url = sync_url(port_server.ws_url, wid, owner.token)
    writers = [YClient() for _ in range(3)]
    receivers = [YClient() for _ in range(2)]
    for c in writers + receivers:
        await c.connect(url)
        await c.wait_synced()
    seen: set[str] = set()
    for r in receivers:
        m = r.map("m")
        m.observe(lambda ev: seen.update(k for k, v in ev.keys.items() if v["action"] == "add"))

    async def storm(n: int, c: YClient) -> None:
        i = 0
        with contextlib.suppress(Exception):
            while c.connected:
                c.map("m")[f"w{n}-{i}"] = i
                i += 1
                await asyncio.sleep(0.002)

    tasks = [asyncio.create_task(storm(n, c)) for n, c in enumerate(writers)]
    await asyncio.sleep(1.5)
    port_server.kill()
    await asyncio.gather(*tasks)
    assert len(seen) > 50, f"the storm delivered too little to mean anything: {len(seen)}"
    for c in writers + receivers:
        await c.abort()

    restarted = ProcessServer(db_env, port=port_server.port, log_path=tmp_path / "server.log").start()
    try:
        fresh = YClient()
        await fresh.connect(url)
        await fresh.wait_synced()
        stored = set((fresh.map("m").to_py() or {}).keys())
        missing = seen - stored
        assert not missing, f"{len(missing)} updates seen by peers were lost, e.g. {sorted(missing)[:5]}"
        # writers reconnecting resend what never became durable: everyone converges on the union
        for c in writers:
            await c.connect(url)
            await c.wait_synced()
        union: set[str] = set()
        for c in writers:
            union |= set((c.map("m").to_py() or {}).keys())
        await fresh.wait_for(lambda: set((fresh.map("m").to_py() or {}).keys()) == union, timeout=20)
        for c in [*writers, fresh]:
            await c.close()
    finally:
        restarted.stop()


@pytest.mark.slow
async def test_clean_restart_keeps_everything(db_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    srv = ProcessServer(db_env, log_path=log).start()
    with httpx.Client(base_url=srv.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        guest = register(http, "guest")
        invite = http.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers).json()
        assert http.post(f"/api/invites/{invite['token']}/accept", headers=guest.headers).status_code == 200
    url = sync_url(srv.ws_url, wid, owner.token)
    a = YClient()
    await a.connect(url)
    await a.wait_synced()
    with a.doc.transaction():
        for i in range(100):
            a.map("m")[str(i)] = i
    a.text("t").insert(0, "kept")
    await asyncio.sleep(0.3)
    srv.stop()
    await a.wait_closed()
    srv2 = ProcessServer(db_env, port=srv.port).start()
    try:
        b = YClient()
        await b.connect(url)
        await b.wait_synced()
        assert str(b.text("t")) == "kept"
        assert isinstance(b.map("m"), Map) and len(b.map("m").to_py() or {}) == 100
        await b.close()
        text = log.read_text()
        assert "/sync/" in text and "token=<redacted>" in text
        assert owner.token not in text, "tokens in query strings never appear in logs"
        assert invite["token"] not in text and "/api/invites/<redacted>/accept" in text
    finally:
        srv2.stop()
