"""Socket quotas and the duplication guard: documented close codes, and everyone else carries on."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pycrdt import Array, Doc

from persistence.db import Database
from tests.support.databases import stored_document
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


@pytest.mark.slow
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
    """The operator procedure of docs/operations.md on a real backup: a client that edited after the backup was
    taken is refused (4409) when it comes back with its old epoch, so its history is not merged into the restored
    document, and content re-applied by hand after the restore is not duplicated."""
    srv = make_server()  # type: ignore[operator]
    url = srv.settings.resolved_database_url()
    path = Database(url).sqlite_path
    with httpx.Client(base_url=srv.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        epoch = http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["epoch"]
    stale = await _join(srv, wid, owner.token, epoch)
    watcher = await _join(srv, wid, owner.token)
    await stale.wait_synced()
    await watcher.wait_synced()
    items = stale.doc.get("list", type=Array)
    items.append("A")
    await watcher.wait_for(lambda: list(watcher.doc.get("list", type=Array)) == ["A"])  # durable: a peer has it
    backup = tmp_path / "backup.db"
    _sqlite_copy(path, backup)  # the backup, taken live
    items.append("B")  # after the backup: lost by the restore
    await watcher.wait_for(lambda: list(watcher.doc.get("list", type=Array)) == ["A", "B"])
    await watcher.close()
    srv.stop()
    await stale.wait_closed()
    # operator procedure: restore the backup, then give documents a new epoch
    _sqlite_copy(backup, path)
    env = {**os.environ, "PLAIT_DATABASE_URL": url, "PLAIT_SECRET_KEY": SECRET}
    out = subprocess.run(
        [sys.executable, "-m", "api", "reset-epoch"], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    srv2 = make_server(database_url=url)  # type: ignore[operator]
    with httpx.Client(base_url=srv2.base_url) as http:
        new_epoch = http.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["epoch"]
    assert new_epoch != epoch
    await stale.connect(sync_url(srv2.ws_url, wid, owner.token) + f"&epoch={epoch}")
    assert await stale.wait_closed() == 4409
    assert "restored" in stale.close_reason
    assert list(stale.doc.get("list", type=Array)) == ["A", "B"], "the stale client still holds its history"
    restored = await _stored_list(url, wid)
    assert restored == ["A"], "the stale client's history was merged into the restored document"
    # the client reloaded (a fresh local copy); the user re-applies the lost edit by hand
    fresh = await _join(srv2, wid, owner.token, new_epoch)
    await fresh.wait_synced()
    assert list(fresh.doc.get("list", type=Array)) == ["A"]
    fresh.doc.get("list", type=Array).append("B")
    other = await _join(srv2, wid, owner.token, new_epoch)
    await other.wait_synced()
    await other.wait_for(lambda: list(other.doc.get("list", type=Array)) == ["A", "B"])
    await fresh.close()
    await other.close()
    assert await _stored_list(url, wid) == ["A", "B"], "no duplicated content"


def _sqlite_copy(source: str | Path, target: str | Path) -> None:
    """SQLite's online backup (pages copied consistently, whatever is in the WAL)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


async def _stored_list(url: str, wid: str) -> list[object]:
    db = Database(url)
    try:
        stored = await stored_document(db, wid)
    finally:
        await db.dispose()
    doc: Doc = Doc()
    for chunk in stored.chunks():
        doc.apply_update(chunk)
    return list(doc.get("list", type=Array))
