"""Socket quotas and the duplication guard: documented close codes, and everyone else carries on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.pyclient import YClient, sync_url
from tests.support.server import SECRET
from tests.support.users import create_workspace, register


async def _join(srv: object, wid: str, token: str, epoch: str | None = None, doc: object = None) -> YClient:
    c = YClient(doc) if doc is not None else YClient()  # type: ignore[arg-type]
    url = sync_url(srv.ws_url, wid, token) + (f"&epoch={epoch}" if epoch else "")  # type: ignore[attr-defined]
    await c.connect(url)
    return c


async def test_socket_rate_quota_closes_4529_others_unaffected(make_server: object) -> None:
    srv = make_server(max_message_bytes=32 * 1024, quota_socket_bytes_per_second=16 * 1024)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
    calm = await _join(srv, wid, owner.token)
    await calm.wait_synced()
    flood = await _join(srv, wid, owner.token)
    await flood.wait_synced()
    for i in range(20):
        flood.text("t").insert(0, f"{i:02d}" * 5000)  # 10 KB per update, far over 16 KB/s
    assert await flood.wait_closed() == 4529
    calm.text("u").insert(0, "still here")
    other = await _join(srv, wid, owner.token)
    await other.wait_synced()
    await other.wait_for(lambda: str(other.text("u")) == "still here")
    await calm.close()
    await other.close()


async def test_document_size_quota_closes_4413_and_reads_still_work(make_server: object) -> None:
    srv = make_server(quota_max_document_bytes=40 * 1024)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
    a = await _join(srv, wid, owner.token)
    await a.wait_synced()
    a.text("t").insert(0, "small")
    big = await _join(srv, wid, owner.token)
    await big.wait_synced()
    await big.wait_for(lambda: str(big.text("t")) == "small")
    big.text("t").insert(0, "x" * 50_000)
    assert await big.wait_closed() == 4413
    reader = await _join(srv, wid, owner.token)
    await reader.wait_synced()
    assert str(reader.text("t")) == "small"
    await a.close()
    await reader.close()


async def test_size_quota_counts_what_is_stored_not_every_update_ever_received(make_server: object) -> None:
    """A small document edited for a long time: compaction folds the overwritten values away, so the quota
    must follow the stored size (snapshot + log tail), not the sum of every update since the room loaded."""
    srv = make_server(quota_max_document_bytes=40 * 1024, compaction_max_updates=10)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        writer = await _join(srv, wid, owner.token)
        await writer.wait_synced()
        for i in range(60):  # 60 x 2 KB received, the document itself stays ~2 KB
            writer.map("settings")["note"] = f"{i:04d}" * 500
            await asyncio.sleep(0.03)
        reader = await _join(srv, wid, owner.token)
        await reader.wait_synced()
        await reader.wait_for(lambda: reader.map("settings").get("note") == "0059" * 500)
        assert writer.connected
        info = http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()
        assert info["snapshot_bytes"] + info["log_bytes"] < 40 * 1024
    await writer.close()
    await reader.close()


async def test_epoch_guard_refuses_history_from_before_a_restore(make_server: object, tmp_path: Path) -> None:
    srv = make_server()  # type: ignore[operator]
    url = srv.settings.resolved_database_url()
    with httpx.Client(base_url=srv.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        epoch = http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["epoch"]
    stale = await _join(srv, wid, owner.token, epoch)
    await stale.wait_synced()
    stale.text("t").insert(0, "before the backup")
    await asyncio.sleep(0.2)
    srv.stop()
    # operator procedure: restore the backup, then give documents a new epoch
    env = {**os.environ, "PLAIT_DATABASE_URL": url, "PLAIT_SECRET_KEY": SECRET}
    out = subprocess.run(
        [sys.executable, "-m", "api", "reset-epoch"], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    srv2 = make_server(database_url=url)  # type: ignore[operator]
    await stale.wait_closed()
    await stale.connect(sync_url(srv2.ws_url, wid, owner.token) + f"&epoch={epoch}")
    assert await stale.wait_closed() == 4409
    assert "restored" in stale.close_reason
    with httpx.Client(base_url=srv2.base_url) as http:
        new_epoch = http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["epoch"]
    assert new_epoch != epoch
    fresh = await _join(srv2, wid, owner.token, new_epoch)  # the client reloaded: a fresh local copy
    await fresh.wait_synced()
    assert str(fresh.text("t")) == "before the backup", "no duplicated content"
    await fresh.close()
