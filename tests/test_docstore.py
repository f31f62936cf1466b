"""The Yjs document store on SQLite and PostgreSQL: contiguous sequence numbers, group commit, compaction that
never loses a row (also concurrently with appends and with another compaction)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pycrdt import Doc, Map

from persistence.docstore import DocumentStore, PendingUpdate, UnknownDocument
from persistence.models import Document, Workspace
from tests.support.databases import migrated_database


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DocumentStore]:
    async with migrated_database(str(request.param), tmp_path) as db:
        yield DocumentStore(db)


async def _workspace(store: DocumentStore) -> str:
    async with store.db.transaction() as s:
        ws = Workspace(name="w")
        s.add(ws)
        await s.flush()
        s.add(Document(workspace_id=ws.id))
    return ws.id


def _updates(n: int, key: str = "k") -> list[bytes]:
    doc: Doc = Doc()
    m = doc.get("m", type=Map)
    out = []
    for i in range(n):
        before = doc.get_state()
        m[f"{key}{i}"] = i
        out.append(doc.get_update(before))
    return out


def _rebuild(chunks: list[bytes]) -> dict[str, object]:
    doc: Doc = Doc()
    for c in chunks:
        doc.apply_update(c)
    return dict(doc.get("m", type=Map).to_py() or {})


async def test_group_commit_assigns_contiguous_sequence_numbers(store: DocumentStore) -> None:
    a, b = await _workspace(store), await _workspace(store)
    ua, ub = _updates(3, "a"), _updates(2, "b")
    batch = [
        PendingUpdate(a, ua[0], None),
        PendingUpdate(b, ub[0], None),
        PendingUpdate(a, ua[1], None),
        PendingUpdate(a, ua[2], None),
        PendingUpdate(b, ub[1], None),
    ]
    assert await store.append_batch(batch) == [1, 1, 2, 3, 2]
    assert await store.append_batch([PendingUpdate(a, ua[0], "x")]) == [4]
    loaded = await store.load(a)
    assert [s for s, _ in loaded.updates] == [1, 2, 3, 4] and loaded.last_seq == 4
    assert _rebuild(loaded.chunks()) == {"a0": 0, "a1": 1, "a2": 2}


async def test_unknown_document(store: DocumentStore) -> None:
    with pytest.raises(UnknownDocument):
        await store.load("00000000-0000-4000-8000-000000000000")
    with pytest.raises(UnknownDocument):
        await store.append_batch([PendingUpdate("00000000-0000-4000-8000-000000000000", b"\x00\x00", None)])


async def test_compaction_folds_rows_into_snapshot(store: DocumentStore) -> None:
    wid = await _workspace(store)
    ups = _updates(30)
    await store.append_batch([PendingUpdate(wid, u, None) for u in ups[:20]])
    assert await store.compact(wid) == (20, 20)
    assert await store.log_size(wid) == (0, 0)
    await store.append_batch([PendingUpdate(wid, u, None) for u in ups[20:]])
    loaded = await store.load(wid)
    assert loaded.snapshot_seq == 20 and [s for s, _ in loaded.updates] == list(range(21, 31))
    assert _rebuild(loaded.chunks()) == {f"k{i}": i for i in range(30)}
    assert await store.compact(wid) == (30, 10)
    assert await store.compact(wid) is None  # nothing to fold
    assert _rebuild((await store.load(wid)).chunks()) == {f"k{i}": i for i in range(30)}


async def test_compaction_concurrent_with_appends_and_itself_loses_nothing(store: DocumentStore) -> None:
    wid = await _workspace(store)
    ups = _updates(200)

    async def appender() -> None:
        for i in range(0, 200, 5):
            await store.append_batch([PendingUpdate(wid, u, None) for u in ups[i : i + 5]])
            await asyncio.sleep(0)

    async def compactor() -> None:
        for _ in range(15):
            await store.compact(wid)
            await asyncio.sleep(0.005)

    await asyncio.gather(appender(), compactor(), compactor())
    loaded = await store.load(wid)
    assert loaded.last_seq == 200
    assert _rebuild(loaded.chunks()) == {f"k{i}": i for i in range(200)}


async def test_reset_epoch_changes_every_or_one_document(store: DocumentStore) -> None:
    a, b = await _workspace(store), await _workspace(store)
    ea, eb = (await store.load(a)).epoch, (await store.load(b)).epoch
    assert await store.reset_epoch(a) == 1
    assert (await store.load(a)).epoch not in (ea, "") and (await store.load(b)).epoch == eb
    assert await store.reset_epoch() >= 2
    assert (await store.load(b)).epoch != eb
    info = await store.info(a)
    assert info["last_seq"] == 0 and info["log_rows"] == 0
