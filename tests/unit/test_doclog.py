"""The update log's backends driven directly, in-process (no server): what the DocumentLog protocol promises
on each of them. The finer points of the appends and snapshots under concurrency are in tests/test_docstore.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from persistence.doclog import DocumentLog, LogClosed, PendingUpdate, UnknownDocument, open_document_log
from persistence.doclog.postgres import PostgresDocumentLog
from persistence.doclog.sqlite import SqliteDocumentLog
from tests.support.databases import migrated_database, new_document

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(params=["sqlite", "postgres"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DocumentLog]:
    async with migrated_database(str(request.param), tmp_path) as db:
        opened = open_document_log(db)
        try:
            yield opened
        finally:
            await opened.close()


def _edits(n: int) -> tuple[Doc[Any], list[bytes]]:
    """A document and the ``n`` updates that made it, one key each."""
    doc: Doc[Any] = Doc()
    m = doc.get("m", type=Map)
    updates = []
    for i in range(n):
        before = doc.get_state()
        m[f"k{i}"] = i
        updates.append(doc.get_update(before))
    return doc, updates


def _content(doc: Doc[Any]) -> dict[str, Any]:
    return dict(doc.get("m", type=Map).to_py() or {})


async def test_the_backend_follows_the_database(log: DocumentLog) -> None:
    expected = SqliteDocumentLog if log.db.is_sqlite else PostgresDocumentLog
    assert type(log) is expected
    assert log.writes_in_log_order is log.db.is_sqlite


async def test_appends_are_contiguous_per_workspace_and_the_heads_follow(log: DocumentLog) -> None:
    a, b = await new_document(log.db), await new_document(log.db)
    assert await log.heads([a, b, MISSING]) == {a: 0, b: 0}  # a workspace without a head is left out
    batch = [PendingUpdate(w, f"{w}{i}".encode(), "actor") for i, w in enumerate([a, b, a, a, b])]
    assert await log.append_batch(batch) == [1, 1, 2, 3, 2]
    assert await log.append_batch([PendingUpdate(b, b"b", None)]) == [3]
    assert await log.heads([a, b]) == {a: 3, b: 3}
    loaded = await log.load(a)
    assert [seq for seq, _ in loaded.updates] == [1, 2, 3] and loaded.last_seq == 3
    assert [data for _, data in loaded.updates] == [batch[0].data, batch[2].data, batch[3].data]


async def test_snapshot_and_the_rows_after_it_are_the_whole_document(log: DocumentLog) -> None:
    wid = await new_document(log.db)
    doc, updates = _edits(12)
    await log.append_batch([PendingUpdate(wid, u, None) for u in updates[:8]])
    upto_8 = Doc()
    for u in updates[:8]:
        upto_8.apply_update(u)
    state = upto_8.get_update()
    assert await log.save_snapshot(wid, state, 8) == (8, 8)
    await log.append_batch([PendingUpdate(wid, u, None) for u in updates[8:]])

    loaded = await log.load(wid)
    assert loaded.snapshot == state and loaded.snapshot_seq == 8
    assert [seq for seq, _ in loaded.updates] == [9, 10, 11, 12]
    assert _content(loaded.to_doc()) == _content(doc)
    assert await log.log_size(wid) == (4, loaded.tail_bytes())
    info = await log.info(wid)
    assert info == {
        "epoch": loaded.epoch,
        "last_seq": 12,
        "snapshot_seq": 8,
        "snapshot_bytes": len(state),  # the document's size, also where it is stored compressed
        "log_rows": 4,
        "log_bytes": loaded.tail_bytes(),
    }
    assert await log.save_snapshot(wid, state, 8) is None  # not newer than the stored one: nothing written
    with pytest.raises(ValueError, match="past the log head"):
        await log.save_snapshot(wid, doc.get_update(), 13)
    assert (await log.load(wid)).updates == loaded.updates


async def test_reset_epoch_renews_one_document_or_all(log: DocumentLog) -> None:
    a, b = await new_document(log.db), await new_document(log.db)
    before = {w: (await log.load(w)).epoch for w in (a, b)}
    assert await log.reset_epoch(a) == 1
    after_one = {w: (await log.info(w))["epoch"] for w in (a, b)}
    assert after_one[a] != before[a] and after_one[b] == before[b]
    assert await log.reset_epoch() >= 2
    after_all = {w: (await log.load(w)).epoch for w in (a, b)}
    assert after_all[a] != after_one[a] and after_all[b] != after_one[b]


async def test_an_unknown_workspace_is_unknown_everywhere(log: DocumentLog) -> None:
    with pytest.raises(UnknownDocument):
        await log.load(MISSING)
    with pytest.raises(UnknownDocument):
        await log.info(MISSING)
    with pytest.raises(UnknownDocument):
        await log.append_batch([PendingUpdate(MISSING, b"\x00\x00", None)])
    with pytest.raises(UnknownDocument):
        await log.save_snapshot(MISSING, b"\x00\x00", 1)
    await log.warm_up()  # loads the nil document: unknown, and that is no error


async def test_a_closed_log_refuses_every_call_at_once(log: DocumentLog) -> None:
    """Work queued behind the end would never run and its caller never wake (the shutdown hang of issue 22)."""
    wid = await new_document(log.db)
    await log.append_batch([PendingUpdate(wid, b"\x00\x00", None)])
    await log.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: log.load(wid),
        lambda: log.warm_up(),
        lambda: log.append_batch([PendingUpdate(wid, b"\x00\x00", None)]),
        lambda: log.save_snapshot(wid, b"\x00\x00", 1),
        lambda: log.heads([wid]),
        lambda: log.info(wid),
        lambda: log.log_size(wid),
        lambda: log.reset_epoch(wid),
        lambda: log.store_activity_summaries([]),
        lambda: log.write_among_appends([]),
    ]
    for call in calls:
        with pytest.raises(LogClosed):
            await asyncio.wait_for(call(), timeout=2)
