"""The task index's writes on SQLite's update-log thread (``persistence/task_index_writes.py``): a row read from
an older document state never replaces a newer one, a task gone is deleted (unless re-created later), the
workspace's mark only grows, the full-text table follows, and a workspace deleted meanwhile is SQLAlchemy's
IntegrityError (the indexer's cue that there is nothing to index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from persistence import task_index_writes
from persistence.doclog import open_document_log
from persistence.models import TaskIndex, TaskIndexState, Workspace
from tests.support.databases import migrated_database, new_document


def _row(task_id: str, title: str, **over: Any) -> dict[str, Any]:
    base = {
        "task_id": task_id,
        "title": title,
        "status": "todo",
        "priority": "none",
        "assignee_id": None,
        "due_date": None,
        "labels": ["l1"],
        "rank": "a0",
        "updated_at": None,
        "body": f"body of {title}",
    }
    return {**base, **over}


async def test_newer_rows_win_gone_tasks_go_and_marks_only_grow(tmp_path: Path) -> None:
    async with migrated_database("sqlite", tmp_path) as db:
        log = open_document_log(db)
        try:
            wid = await new_document(db)
            write = task_index_writes.sqlite_statements
            json = task_index_writes.JSON_PARAMS
            await log.write_among_appends(write([(wid, 5, [_row("t1", "fresh"), _row("t2", "other")], [])]), json)
            # an older state of t1 arrives late (another node): ignored; t2 deleted at seq 4 < 5: kept
            await log.write_among_appends(write([(wid, 3, [_row("t1", "stale")], ["t2"])]), json)
            async with db.session() as s:
                rows = {r.task_id: r for r in await s.scalars(select(TaskIndex).where(TaskIndex.workspace_id == wid))}
                assert rows["t1"].title == "fresh" and rows["t1"].labels == ["l1"] and "t2" in rows
                assert (await s.get(TaskIndexState, wid)).doc_seq == 5  # type: ignore[union-attr]
            await log.write_among_appends(write([(wid, 7, [_row("t1", "newest words")], ["t2"])]), json)
            async with db.session() as s:
                ids = set(await s.scalars(select(TaskIndex.task_id).where(TaskIndex.workspace_id == wid)))
                assert ids == {"t1"}
                assert (await s.get(TaskIndexState, wid)).doc_seq == 7  # type: ignore[union-attr]
                hits = await s.execute(text("SELECT rowid FROM task_index_fts WHERE task_index_fts MATCH 'newest'"))
                assert len(hits.all()) == 1
                stale = await s.execute(text("SELECT rowid FROM task_index_fts WHERE task_index_fts MATCH 'fresh'"))
                assert stale.all() == []
        finally:
            await log.close()


async def test_a_deleted_workspace_is_an_integrity_error_and_nothing_is_written(tmp_path: Path) -> None:
    async with migrated_database("sqlite", tmp_path) as db:
        log = open_document_log(db)
        try:
            wid, kept = await new_document(db), await new_document(db)
            async with db.transaction() as s:
                await s.execute(delete(Workspace).where(Workspace.id == wid))
            batch = [(kept, 2, [_row("k", "kept")], []), (wid, 2, [_row("t", "orphan")], [])]
            with pytest.raises(IntegrityError):
                await log.write_among_appends(task_index_writes.sqlite_statements(batch), task_index_writes.JSON_PARAMS)
            async with db.session() as s:  # the batch is one transaction: rolled back whole
                assert list(await s.scalars(select(TaskIndex.task_id))) == []
        finally:
            await log.close()
