"""Typing is stored as one activity row per run, also when two nodes derive activity for the same task: each
node remembers the newest row it knows, and a guarded update never folds edits into a row that is no longer
the newest (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.domain.activity_coalescing import TEXT_EDIT_WINDOW, ActivityCoalescer
from api.domain.notifications.derive import activity_rows
from api.domain.notifications.worker import NotificationService
from persistence.db import Database, insert_ignoring_conflicts
from persistence.doclog import DocumentLog, open_document_log
from persistence.models import Activity, Workspace, utcnow
from sync_server.schema import TaskChange
from sync_server.supervisor import Supervisor
from tests.support.databases import migrated_database

TASK = "t-1"


# The update log's store of each test database: on SQLite the summaries are written on its connection, as in
# the server (NotificationService gets the sync service's store).
_STORES: dict[int, DocumentLog] = {}


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(str(request.param), tmp_path) as database:
        store = _STORES[id(database)] = open_document_log(database)
        try:
            yield database
        finally:
            del _STORES[id(database)]
            await store.close()


def _node(db: Database, **kwargs: Any) -> ActivityCoalescer:
    return ActivityCoalescer(log=_STORES[id(db)], **kwargs)


def _service(db: Database) -> NotificationService:
    return NotificationService(db, store=_STORES[id(db)])


async def _workspace(db: Database) -> str:
    async with db.transaction() as s:
        ws = Workspace(name="w")
        s.add(ws)
        await s.flush()
        return ws.id


def _edit(inserted: int, deleted: int = 0) -> TaskChange:
    return TaskChange(TASK, "updated", field="description", summary={"inserted": inserted, "deleted": deleted})


async def _record(
    db: Database,
    node: ActivityCoalescer,
    wid: str,
    items: list[tuple[int, str | None, TaskChange]],
    now: Any = None,
    force: bool = True,
) -> None:
    now = now or utcnow()
    rows = [row for seq, actor, ch in items for row in activity_rows(wid, seq, actor, [ch], now)]
    async with db.transaction() as s:
        out = await node.record(s, wid, rows, now)
        out += await node.store(s, force=force)
        await insert_ignoring_conflicts(s, db, Activity.__table__, out, ["workspace_id", "dedup_key"])  # type: ignore[arg-type]


async def _rows(db: Database, wid: str) -> list[tuple[str | None, int, dict[str, Any] | None]]:
    async with db.session() as s:
        got = await s.execute(
            select(Activity.field, Activity.doc_seq, Activity.summary)
            .where(Activity.workspace_id == wid)
            .order_by(Activity.seq)
        )
        return [(f, int(d), summ) for f, d, summ in got]


async def test_one_row_per_run_across_batches_and_retries(db: Database) -> None:
    wid = await _workspace(db)
    node = _node(db)
    await _record(db, node, wid, [(1, None, _edit(3)), (2, None, _edit(2, 1))])
    await _record(db, node, wid, [(3, None, _edit(4))])
    await _record(db, node, wid, [(3, None, _edit(4))])  # a repeated derivation adds nothing
    assert await _rows(db, wid) == [("description", 3, {"inserted": 9, "deleted": 1})]
    # A node that starts fresh (restart) reads the newest row from the database and continues it.
    await _record(db, _node(db), wid, [(4, None, _edit(1))])
    assert await _rows(db, wid) == [("description", 4, {"inserted": 10, "deleted": 1})]


async def test_another_change_or_a_pause_starts_a_new_run(db: Database) -> None:
    wid = await _workspace(db)
    node = _node(db)
    status = TaskChange(TASK, "updated", field="status", old="todo", new="doing")
    await _record(db, node, wid, [(1, None, _edit(1)), (2, None, status), (3, None, _edit(2))])
    later = utcnow() + TEXT_EDIT_WINDOW + timedelta(seconds=1)
    await _record(db, node, wid, [(4, None, _edit(5))], now=later)
    assert await _rows(db, wid) == [
        ("description", 1, {"inserted": 1, "deleted": 0}),
        ("status", 2, None),
        ("description", 3, {"inserted": 2, "deleted": 0}),
        ("description", 4, {"inserted": 5, "deleted": 0}),
    ]


async def test_edits_never_fold_into_a_row_another_node_superseded(db: Database) -> None:
    wid = await _workspace(db)
    node_a, node_b = _node(db), _node(db)
    await _record(db, node_a, wid, [(1, None, _edit(3))])
    # Node B records a status change of the same task: node A's memory of the newest row is now stale.
    await _record(db, node_b, wid, [(2, None, TaskChange(TASK, "updated", field="status", old="a", new="b"))])
    await _record(db, node_a, wid, [(3, None, _edit(2)), (4, None, _edit(1))])
    await _record(db, node_a, wid, [(5, None, _edit(7))])
    assert await _rows(db, wid) == [
        ("description", 1, {"inserted": 3, "deleted": 0}),
        ("status", 2, None),
        ("description", 5, {"inserted": 10, "deleted": 0}),
    ]


async def test_grown_summaries_wait_for_their_interval_but_never_for_a_newer_row(db: Database) -> None:
    """Typing's summary is written at most every interval (SQLite's write lock is the update log's too), but
    a row that follows it in the feed writes it first, so the feed keeps its order."""
    wid = await _workspace(db)
    node = _node(db, summary_interval=3600)

    async def window(*items: tuple[int, str | None, TaskChange]) -> None:
        await _record(db, node, wid, list(items), force=False)

    await window((1, None, _edit(3)))  # a new row is inserted at once
    assert await _rows(db, wid) == [("description", 1, {"inserted": 3, "deleted": 0})]
    await window((2, None, _edit(2)))
    await window((3, None, _edit(1, 1)))
    assert await _rows(db, wid) == [("description", 1, {"inserted": 3, "deleted": 0})]  # held back
    due = node.store_due_in()
    assert due is not None and due > 3000
    await window((4, None, TaskChange(TASK, "updated", field="status", old="todo", new="doing")))
    assert await _rows(db, wid) == [
        ("description", 3, {"inserted": 6, "deleted": 1}),
        ("status", 4, None),
    ]
    assert node.store_due_in() is None
    await window((5, None, _edit(1)), (6, None, _edit(1)))  # a new run, its growth within the window is inserted
    await window((7, None, _edit(4)))
    assert (await _rows(db, wid))[-1] == ("description", 6, {"inserted": 2, "deleted": 0})
    await _record(db, node, wid, [], force=True)
    assert (await _rows(db, wid))[-1] == ("description", 7, {"inserted": 6, "deleted": 0})


async def test_a_held_back_summary_survives_its_task_being_forgotten(db: Database) -> None:
    """The memory of tasks is bounded; a task pushed out of it while its summary waits keeps its counts."""
    wid = await _workspace(db)
    node = _node(db, remembered=1, summary_interval=3600)

    def edit(task: str, inserted: int) -> TaskChange:
        return TaskChange(task, "updated", field="description", summary={"inserted": inserted, "deleted": 0})

    for seq, (task, n) in enumerate([("a", 1), ("b", 1), ("a", 2), ("b", 3), ("a", 4)], 1):
        await _record(db, node, wid, [(seq, None, edit(task, n))], force=False)
    await _record(db, node, wid, [], force=True)
    async with db.session() as s:
        got = await s.execute(select(Activity.task_id, Activity.summary).where(Activity.workspace_id == wid))
        assert {str(t): summ for t, summ in got} == {
            "a": {"inserted": 7, "deleted": 0},
            "b": {"inserted": 4, "deleted": 0},
        }


async def test_the_worker_writes_held_back_summaries_when_due_and_when_it_stops(db: Database) -> None:
    async with Supervisor() as sup:
        wid = await _workspace(db)
        service = _service(db)
        service.coalescer = _node(db, summary_interval=0.2)
        service.start(sup)
        try:
            service.submit(wid, [(1, None, [_edit(1)])])
            await service.drain()
            service.submit(wid, [(2, None, [_edit(2)])])
            await service.drain()
            assert await _rows(db, wid) == [("description", 1, {"inserted": 1, "deleted": 0})]
            for _ in range(100):  # no more updates: the idle worker writes it once due (0.2 s)
                await asyncio.sleep(0.05)
                if await _rows(db, wid) != [("description", 1, {"inserted": 1, "deleted": 0})]:
                    break
            assert await _rows(db, wid) == [("description", 2, {"inserted": 3, "deleted": 0})]
        finally:
            await service.stop()
        service = _service(db)
        service.coalescer = _node(db, summary_interval=3600)
        service.start(sup)
        for seq, inserted in ((3, 4), (4, 1)):
            service.submit(wid, [(seq, None, [_edit(inserted)])])
            await service.drain()
        assert await _rows(db, wid) == [("description", 2, {"inserted": 3, "deleted": 0})]  # both held back
        await service.stop()  # a clean shutdown writes what was held back
        assert await _rows(db, wid) == [("description", 4, {"inserted": 8, "deleted": 0})]


async def test_one_window_is_one_transaction_and_a_deleted_workspace_does_not_block_the_others(db: Database) -> None:
    """A workspace deleted before its window was recorded (its rows violate the foreign key) is dropped quietly
    (its activity went with it: no error logged), and the others of the window are recorded."""
    good = await _workspace(db)
    service = _service(db)
    gone = "00000000-0000-4000-8000-000000000000"  # no such workspace: its rows violate the foreign key
    await service.record_all({gone: [(1, None, [_edit(1)])], good: [(1, None, [_edit(2)]), (2, None, [_edit(3)])]})
    assert await _rows(db, good) == [("description", 2, {"inserted": 5, "deleted": 0})]
    assert (service.processed, service.failures, service.dropped) == (1, 0, 1)
    await service.record_all({good: [(3, None, [_edit(1)])]})
    await service.write_summaries()  # the grown summary is held back until due
    assert await _rows(db, good) == [("description", 3, {"inserted": 6, "deleted": 0})]
    assert (service.processed, service.failures, service.dropped) == (2, 0, 1)


async def test_a_derivation_window_leaves_no_cyclic_garbage(db: Database) -> None:
    """The server collects cyclic garbage rarely (api/cli.py), so a derivation window, four a second under
    typing, must not make any: statements built per window did, and the heap grew for minutes."""
    wid = await _workspace(db)
    service = _service(db)
    created = TaskChange("t-2", "created", task={"title": "x", "assignee_id": "someone", "created_by": "me"})

    def window(seq: int) -> dict[str, list[tuple[int, str | None, list[TaskChange]]]]:
        typing = [(seq + i, None, [_edit(1)]) for i in range(5)]
        return {wid: [*typing, (seq + 5, None, [created])]}

    await service.record_all(window(1))  # first use: compiled statements, caches
    gc.collect()
    gc.disable()
    try:
        for n in range(2, 7):
            await service.record_all(window(n * 10))
        garbage = gc.collect()
    finally:
        gc.enable()
    assert service.failures == 0
    assert garbage == 0
