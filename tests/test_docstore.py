"""The Yjs document store on SQLite and PostgreSQL: contiguous sequence numbers, group commit, snapshots that
never lose a row (also concurrently with appends and with each other)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from pycrdt import Doc, Map
from sqlalchemy import select, text

from persistence import snapshot_codec
from persistence.doclog import DocumentLog, PendingUpdate, UnknownDocument, open_document_log
from persistence.models import Activity, Document, DocUpdate
from tests.support.databases import migrated_database, new_document


@asynccontextmanager
async def _open_store(backend: str, tmp_path: Path) -> AsyncIterator[DocumentLog]:
    async with migrated_database(backend, tmp_path) as db:
        store = open_document_log(db)
        yield store
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DocumentLog]:
    async with _open_store(str(request.param), tmp_path) as store:
        yield store


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


async def test_group_commit_assigns_contiguous_sequence_numbers(store: DocumentLog) -> None:
    a, b = await new_document(store.db), await new_document(store.db)
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


async def _terminate(store: DocumentLog, where: str) -> int:
    async with store.db.session() as s:
        ended = await s.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}"
            )
        )
    return int(ended or 0)


@pytest.fixture
async def pg_store(tmp_path: Path) -> AsyncIterator[DocumentLog]:
    async with _open_store("postgres", tmp_path) as store:
        yield store


async def test_appends_outlive_a_terminated_postgres_connection(pg_store: DocumentLog) -> None:
    """The appends keep one connection without pre-pinging it. One the server ended (what a restart does) is
    replaced before the next batch; one lost in the middle of a statement fails that batch only. No batch is
    counted twice, and none is lost without an error (its rooms then reload from the database)."""
    store = pg_store
    wid = await new_document(store.db)
    ups = _updates(5)
    assert await store.append_batch([PendingUpdate(wid, ups[0], None)]) == [1]
    assert await _terminate(store, "true") >= 1
    await asyncio.sleep(0.3)  # the server's FATAL message reaches the kept connection
    assert await store.append_batch([PendingUpdate(wid, ups[1], None)]) == [2]

    # Lost mid-statement: the append waits for a lock on the head, and its backend is ended meanwhile.
    async with store.db.transaction() as locker:
        await locker.execute(select(Document).where(Document.workspace_id == wid).with_for_update())
        append = asyncio.create_task(store.append_batch([PendingUpdate(wid, ups[2], None)]))
        for _ in range(100):
            if await _terminate(store, "wait_event_type = 'Lock'"):
                break
            await asyncio.sleep(0.05)
        with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
            await append
    assert await store.append_batch([PendingUpdate(wid, ups[3], None), PendingUpdate(wid, ups[4], None)]) == [3, 4]
    loaded = await store.load(wid)
    assert [seq for seq, _ in loaded.updates] == [1, 2, 3, 4]


async def test_loads_outlive_a_terminated_postgres_connection(pg_store: DocumentLog) -> None:
    """The loads keep their own connection, without pre-pinging it either: one the server ended is replaced,
    noticed or not, and the load runs once more on the new one instead of failing the join."""
    store = pg_store
    wid = await new_document(store.db)
    ups = _updates(2)
    await store.append_batch([PendingUpdate(wid, u, None) for u in ups])
    assert [seq for seq, _ in (await store.load(wid)).updates] == [1, 2]
    for settle in (0.3, 0.0):  # the FATAL message arrived before the next load, or not yet
        assert await _terminate(store, "true") >= 1
        await asyncio.sleep(settle)
        loaded = await store.load(wid)
        assert [seq for seq, _ in loaded.updates] == [1, 2] and loaded.chunks() == ups
    with pytest.raises(UnknownDocument):
        await store.load("00000000-0000-4000-8000-000000000000")


async def test_snapshots_are_compressed_by_plait_on_postgres(pg_store: DocumentLog) -> None:
    """A cold join reads the snapshot: compressed by Plait it crosses the socket at a quarter of its size, and
    PostgreSQL stores it as it is (no second compression); the quota still counts the document's own size."""
    store = pg_store
    wid = await new_document(store.db)
    doc = Doc()
    doc["m"] = Map({str(i): "text that compresses " * 4 for i in range(3000)})
    update = doc.get_update()
    await store.append_batch([PendingUpdate(wid, update, None)])
    assert await store.save_snapshot(wid, update, 1) is not None
    async with store.db.session() as s:
        codec, raw_bytes, stored, toast = (
            await s.execute(
                text(
                    "SELECT codec, raw_bytes, octet_length(data), pg_column_compression(data) "
                    "FROM doc_snapshots WHERE workspace_id = :w"
                ),
                {"w": wid},
            )
        ).one()
    assert (codec, raw_bytes, toast) == ("lz4", len(update), None)
    assert stored < len(update) / 4
    assert (await store.info(wid))["snapshot_bytes"] == len(update)
    loaded = await store.load(wid)
    assert loaded.snapshot == update
    assert _rebuild(loaded.chunks()) == {str(i): "text that compresses " * 4 for i in range(3000)}


async def test_snapshots_written_before_compression_still_load(store: DocumentLog) -> None:
    """Rows from before migration 0005 hold the document as it is (codec NULL) until compaction rewrites them;
    SQLite keeps writing them so (it reads snapshots from a memory map, where expanding only costs)."""
    wid = await new_document(store.db)
    doc = Doc()
    doc["m"] = Map({"a": "written before " * 100})
    update = doc.get_update()
    async with store.db.transaction() as s:
        await s.execute(
            text("INSERT INTO doc_snapshots (workspace_id, upto_seq, data, created_at) VALUES (:w, 0, :d, :t)"),
            {"w": wid, "d": update, "t": datetime.now(UTC)},
        )
    loaded = await store.load(wid)
    assert loaded.snapshot == update
    assert (await store.info(wid))["snapshot_bytes"] == len(update)
    doc["m"]["b"] = "after"
    await store.append_batch([PendingUpdate(wid, doc.get_update(), None)])
    assert await store.save_snapshot(wid, doc.get_update(), 1) is not None
    async with store.db.session() as s:
        codec = await s.scalar(text("SELECT codec FROM doc_snapshots WHERE workspace_id = :w"), {"w": wid})
    assert codec == (None if store.db.is_sqlite else "lz4")
    assert _rebuild((await store.load(wid)).chunks()) == {"a": "written before " * 100, "b": "after"}


def test_an_unknown_codec_is_refused_not_misread() -> None:
    with pytest.raises(ValueError, match="unknown snapshot codec"):
        snapshot_codec.expand(b"\x00", "zstd")
    assert snapshot_codec.pack(b"x") == (b"x", None)  # lz4 would not make it smaller


async def test_unknown_document(store: DocumentLog) -> None:
    with pytest.raises(UnknownDocument):
        await store.load("00000000-0000-4000-8000-000000000000")
    with pytest.raises(UnknownDocument):
        await store.append_batch([PendingUpdate("00000000-0000-4000-8000-000000000000", b"\x00\x00", None)])


def _state(chunks: list[bytes]) -> bytes:
    """What a room holds in memory after these updates: the snapshot it hands to ``save_snapshot``."""
    doc: Doc = Doc()
    for c in chunks:
        doc.apply_update(c)
    return doc.get_update()


async def test_snapshot_folds_the_rows_it_covers(store: DocumentLog) -> None:
    wid = await new_document(store.db)
    ups = _updates(30)
    await store.append_batch([PendingUpdate(wid, u, None) for u in ups[:20]])
    assert await store.save_snapshot(wid, _state(ups[:20]), 20) == (20, 20)
    assert await store.log_size(wid) == (0, 0)
    await store.append_batch([PendingUpdate(wid, u, None) for u in ups[20:]])
    loaded = await store.load(wid)
    assert loaded.snapshot_seq == 20 and [s for s, _ in loaded.updates] == list(range(21, 31))
    assert _rebuild(loaded.chunks()) == {f"k{i}": i for i in range(30)}
    # A snapshot taken at seq 25 keeps the rows after it.
    assert await store.save_snapshot(wid, _state(ups[:25]), 25) == (25, 5)
    loaded = await store.load(wid)
    assert loaded.snapshot_seq == 25 and [s for s, _ in loaded.updates] == list(range(26, 31))
    assert _rebuild(loaded.chunks()) == {f"k{i}": i for i in range(30)}
    # One that is not newer than the stored one changes nothing (another node got there first).
    assert await store.save_snapshot(wid, _state(ups[:20]), 20) is None
    assert await store.save_snapshot(wid, _state(ups[:25]), 25) is None
    assert (await store.load(wid)).snapshot_seq == 25
    assert await store.save_snapshot(wid, _state(ups), 30) == (30, 5)
    assert _rebuild((await store.load(wid)).chunks()) == {f"k{i}": i for i in range(30)}


async def test_snapshot_may_cover_more_than_its_seq(store: DocumentLog) -> None:
    """A node's memory can hold rows above the seq it has contiguously (multi-node): those rows stay in the
    log, and applying them again on load is harmless."""
    wid = await new_document(store.db)
    ups = _updates(10)
    await store.append_batch([PendingUpdate(wid, u, None) for u in ups])
    assert await store.save_snapshot(wid, _state(ups[:4] + ups[6:8]), 4) == (4, 4)
    loaded = await store.load(wid)
    assert [s for s, _ in loaded.updates] == list(range(5, 11))
    assert _rebuild(loaded.chunks()) == {f"k{i}": i for i in range(10)}


async def test_snapshots_concurrent_with_appends_lose_nothing(store: DocumentLog) -> None:
    wid = await new_document(store.db)
    ups = _updates(200)
    done = 0

    async def appender() -> None:
        nonlocal done
        for i in range(0, 200, 5):
            await store.append_batch([PendingUpdate(wid, u, None) for u in ups[i : i + 5]])
            done = i + 5
            await asyncio.sleep(0)

    async def snapshotter() -> None:
        for _ in range(15):
            upto = done
            if upto:
                await store.save_snapshot(wid, _state(ups[:upto]), upto)
            await asyncio.sleep(0.005)

    await asyncio.gather(appender(), snapshotter(), snapshotter())
    loaded = await store.load(wid)
    assert loaded.last_seq == 200
    assert _rebuild(loaded.chunks()) == {f"k{i}": i for i in range(200)}


async def test_snapshot_of_an_unknown_document(store: DocumentLog) -> None:
    with pytest.raises(UnknownDocument):
        await store.save_snapshot("00000000-0000-4000-8000-000000000000", b"\x00\x00", 1)


async def test_reset_epoch_changes_every_or_one_document(store: DocumentLog) -> None:
    a, b = await new_document(store.db), await new_document(store.db)
    ea, eb = (await store.load(a)).epoch, (await store.load(b)).epoch
    assert await store.reset_epoch(a) == 1
    assert (await store.load(a)).epoch not in (ea, "") and (await store.load(b)).epoch == eb
    assert await store.reset_epoch() >= 2
    assert (await store.load(b)).epoch != eb
    info = await store.info(a)
    assert info["last_seq"] == 0 and info["log_rows"] == 0


def _expected_seqs(batches: list[list[PendingUpdate]]) -> list[list[int]]:
    """What append_batch must return for ``batches`` appended in order to fresh workspaces."""
    heads: dict[str, int] = {}
    out = []
    for batch in batches:
        seqs = []
        for item in batch:
            heads[item.workspace_id] = heads.get(item.workspace_id, 0) + 1
            seqs.append(heads[item.workspace_id])
        out.append(seqs)
    return out


async def test_many_workspaces_per_batch_get_contiguous_seqs_in_batch_order(store: DocumentLog) -> None:
    wids = [await new_document(store.db) for _ in range(5)]
    rng = random.Random(7)
    batches: list[list[PendingUpdate]] = []
    for b in range(6):
        batch = [
            PendingUpdate(w, f"{w}:{b}:{i}".encode(), None)
            for w in rng.sample(wids, 3)
            for i in range(rng.randint(1, 4))
        ]
        rng.shuffle(batch)  # a workspace's updates are interleaved with the others'
        batches.append(batch)
    assert await store.append_batch([]) == []
    for batch, expected in zip(batches, _expected_seqs(batches), strict=True):
        assert await store.append_batch(batch) == expected
    for w in wids:
        mine = [item.data for batch in batches for item in batch if item.workspace_id == w]
        loaded = await store.load(w)
        assert loaded.updates == list(enumerate(mine, start=1))  # contiguous from 1, batch order, same bytes
    assert await store.heads(wids) == {w: sum(i.workspace_id == w for b in batches for i in b) for w in wids}


async def test_unknown_workspace_in_a_batch_writes_nothing_for_the_others(store: DocumentLog) -> None:
    a, b = await new_document(store.db), await new_document(store.db)
    await store.append_batch([PendingUpdate(a, b"a1", None), PendingUpdate(b, b"b1", None)])
    missing, also_missing = str(uuid.uuid4()), str(uuid.uuid4())
    for batch in (
        [PendingUpdate(a, b"x", None), PendingUpdate(missing, b"y", None), PendingUpdate(b, b"z", None)],
        [PendingUpdate(missing, b"y", None), PendingUpdate(a, b"x", None)],
        [PendingUpdate(a, b"x", None), PendingUpdate(b, b"z", None), PendingUpdate(missing, b"y", None)],
        [PendingUpdate(missing, b"y", None)],
        [PendingUpdate(a, b"x", None), PendingUpdate(missing, b"y", None), PendingUpdate(also_missing, b"w", None)],
    ):
        with pytest.raises(UnknownDocument) as err:
            await store.append_batch(batch)
        assert err.value.args == (missing,)  # the first workspace of the batch that has no head
        assert await store.heads([a, b]) == {a: 1, b: 1}
        assert await store.log_size(a) == (1, 2) and await store.log_size(b) == (1, 2)
    # the heads were not moved: the next append continues without a gap
    assert await store.append_batch([PendingUpdate(b, b"b2", None), PendingUpdate(a, b"a2", None)]) == [2, 2]
    assert (await store.load(a)).updates == [(1, b"a1"), (2, b"a2")]
    assert (await store.load(b)).updates == [(1, b"b1"), (2, b"b2")]


async def test_concurrent_batches_from_many_tasks_never_duplicate_or_skip_a_seq(store: DocumentLog) -> None:
    """Many tasks append batches over overlapping workspaces, in different orders, through six stores (six
    nodes, each with its own connection on PostgreSQL): every seq 1..n is given exactly once per workspace, to
    the update stored there."""
    wids = [await new_document(store.db) for _ in range(6)]
    nodes = [store, *(open_document_log(store.db) for _ in range(5))]
    got: dict[str, dict[int, bytes]] = {w: {} for w in wids}

    async def task(t: int) -> None:
        rng = random.Random(t)
        for b in range(8):
            batch = [
                PendingUpdate(w, f"{t}.{b}.{w}.{i}".encode(), str(t))
                for w in rng.sample(wids, rng.randint(1, len(wids)))
                for i in range(rng.randint(1, 3))
            ]
            rng.shuffle(batch)
            seqs = await nodes[t % len(nodes)].append_batch(batch)
            last: dict[str, int] = {}
            for item, seq in zip(batch, seqs, strict=True):
                assert seq > last.get(item.workspace_id, 0)  # batch order inside a workspace
                last[item.workspace_id] = seq
                assert seq not in got[item.workspace_id]
                got[item.workspace_id][seq] = item.data
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(task(t) for t in range(24)))
    finally:
        for node in nodes[1:]:
            await node.close()
    heads = await store.heads(wids)
    for w in wids:
        assert sorted(got[w]) == list(range(1, heads[w] + 1))
        assert (await store.load(w)).updates == sorted(got[w].items())


async def test_update_bytes_and_actor_round_trip_exactly(store: DocumentLog) -> None:
    a, b, c = await new_document(store.db), await new_document(store.db), await new_document(store.db)
    rng = random.Random(3)
    blobs = [b"", b"\x00", b"\x00\xff\x00", bytes(range(256)), b"\\x00'\"", rng.randbytes(1 << 20), *_updates(3)]
    actors = [None, "00000000-0000-4000-8000-000000000001", None, "a", None, "b", "c", None, "d"]
    batch = [
        PendingUpdate(a if i % 2 else b, blob, actor) for i, (blob, actor) in enumerate(zip(blobs, actors, strict=True))
    ]
    await store.append_batch(batch)  # several workspaces
    single = [PendingUpdate(c, blob, actor) for blob, actor in zip(blobs, actors, strict=True)]
    await store.append_batch(single)  # one workspace
    batch += single
    for w in (a, b, c):
        mine = [item for item in batch if item.workspace_id == w]
        assert (await store.load(w)).updates == [(i, item.data) for i, item in enumerate(mine, start=1)]
        async with store.db.session() as s:
            rows = await s.execute(select(DocUpdate.seq, DocUpdate.actor_id).where(DocUpdate.workspace_id == w))
        assert sorted((int(q), actor) for q, actor in rows) == [(i, u.actor_id) for i, u in enumerate(mine, start=1)]


async def test_activity_summaries_queue_with_the_appends_and_commit_or_leave_nothing(store: DocumentLog) -> None:
    """SQLite: the grown activity summaries are written on the update log's connection, one transaction per
    job, queued with the appends in submission order (no lock held across event-loop turns); PostgreSQL
    writes them through the derivation's session."""
    wid = await new_document(store.db)
    if not store.db.is_sqlite:
        assert not store.writes_in_log_order
        with pytest.raises(RuntimeError, match="SQLite"):
            await store.store_activity_summaries([])
        return
    assert store.writes_in_log_order
    async with store.db.transaction() as s:
        rows = [
            Activity(workspace_id=wid, task_id=t, kind="updated", field="description", doc_seq=1, dedup_key=t)
            for t in ("t1", "t2")
        ]
        s.add_all(rows)
    ids = [r.id for r in rows]

    def grown(i: int, doc_seq: int | None) -> dict[str, object]:
        """Row ``i``'s summary grown up to ``doc_seq`` (None: a row the database refuses)."""
        row = {"row_id": ids[i], "wid": wid, "tid": f"t{i + 1}", "stored_seq": 1}
        return {**row, "new_summary": {"inserted": doc_seq}, "new_doc_seq": doc_seq}

    # Another connection holds the write lock: an append, the summaries and another append queue behind it on
    # the log's thread and finish in that order once it is released.
    blocker = sqlite3.connect(store.db.sqlite_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    finished: list[str] = []
    jobs = {
        "append 1": store.append_batch([PendingUpdate(wid, b"\x00\x00", None)]),
        "summaries": store.store_activity_summaries([grown(0, 5), grown(1, 6)]),
        "append 2": store.append_batch([PendingUpdate(wid, b"\x00\x00", None)]),
    }
    tasks = [asyncio.ensure_future(job) for job in jobs.values()]
    for name, task in zip(jobs, tasks, strict=True):
        task.add_done_callback(lambda _, name=name: finished.append(name))
    await asyncio.sleep(0.1)
    assert not finished
    blocker.execute("COMMIT")
    blocker.close()
    assert await asyncio.gather(*tasks) == [[1], {ids[0]: 5, ids[1]: 6}, [2]]
    assert finished == list(jobs)

    # A job that fails is rolled back whole: the valid row of it keeps its summary.
    with pytest.raises(sqlite3.IntegrityError):
        await store.store_activity_summaries([grown(0, 7), grown(1, None)])
    async with store.db.session() as s:
        stored = dict((await s.execute(select(Activity.id, Activity.doc_seq).where(Activity.id.in_(ids)))).all())
    assert stored == {ids[0]: 5, ids[1]: 6}


async def test_a_deleted_workspace_in_a_group_commit_fails_alone(store: DocumentLog) -> None:
    """A workspace deleted while an update of it waited for the commit must not fail the batch's other
    workspaces (their rooms would be closed 1011 and rebuilt): only its own requests fail, without an error."""
    from sync_server.writer import GroupCommitWriter, WriteRequest

    kept = await new_document(store.db)
    gone = str(uuid.uuid4())  # no document head: what a deleted workspace leaves
    writer = GroupCommitWriter(store)
    requests = [
        WriteRequest(wid, data, None)
        for wid, data in ((kept, _updates(1, "a")[0]), (gone, _updates(1, "b")[0]), (kept, _updates(1, "c")[0]))
    ]
    for r in requests:
        writer.submit(r)
    running = asyncio.create_task(writer.run())
    try:
        await asyncio.wait_for(asyncio.gather(*(r.done for r in requests), return_exceptions=True), 10)
    finally:
        await writer.stop()
        await asyncio.gather(running, return_exceptions=True)
    assert [r.seq for r in requests] == [1, None, 2]
    assert isinstance(requests[1].error, UnknownDocument) and requests[0].error is None
    assert len((await store.load(kept)).updates) == 2
