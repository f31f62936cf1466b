"""Python's sqlite3 keeps a copy of each cached statement's last bound blob until the statement runs again.
A snapshot or a version is a whole document: such copies stayed in memory, one per connection that wrote one
(the soak's drift). The store writes snapshots through incremental blob I/O, and a pool connection that bound
a large blob is replaced at its next checkout. Measured with glibc's own count of the bytes in use."""

from __future__ import annotations

import ctypes
import gc
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from persistence.doclog import PendingUpdate, open_document_log
from tests.support.databases import migrated_database, new_document

BLOB = 8 * 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _bytes_in_use() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    gc.collect()
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


@pytest.fixture(autouse=True)
def _glibc() -> None:
    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")


async def test_a_stored_snapshot_leaves_no_copy_behind(tmp_path: Path) -> None:
    async with migrated_database("sqlite", tmp_path) as db:
        store = open_document_log(db)
        try:
            wid = await new_document(db)
            await store.append_batch([PendingUpdate(wid, b"\x00\x00", None)])
            data = os.urandom(BLOB)
            before = _bytes_in_use()
            assert await store.save_snapshot(wid, data, 1) is not None
            held = _bytes_in_use() - before
            assert (await store.load(wid)).snapshot == data
        finally:
            await store.close()
    assert held < BLOB / 2, f"{held / 2**20:.1f} MiB still held after the snapshot was written"


async def test_a_pool_connection_that_bound_a_large_blob_is_replaced(tmp_path: Path) -> None:
    async with migrated_database("sqlite", tmp_path) as db:
        async with db.transaction() as s:
            await s.execute(text("CREATE TABLE blobs (k INTEGER PRIMARY KEY, data BLOB)"))
        data = os.urandom(BLOB)
        before = _bytes_in_use()
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO blobs (k, data) VALUES (1, :d)"), {"d": data})
        async with db.session() as s:  # the next checkout replaces the connection
            assert await s.scalar(text("SELECT length(data) FROM blobs WHERE k = 1")) == BLOB
        held = _bytes_in_use() - before
    assert held < BLOB / 2, f"{held / 2**20:.1f} MiB still held after the insert"
