"""The task index's writes as statements the update log's own SQLite thread runs among the appends.

Under typing in 500 workspaces the index doubled the p95 of every update on SQLite: its transactions (and
their fsyncs) held the one write lock in blocks of a few ms while the group commit waited (docs/performance.md,
"The task index under typing"). Queued on the log's append thread (like the activity summaries,
``persistence/activity_summaries.py``) each batch of a few workspaces is one short transaction between two
group commits, committed without an fsync of its own: the index is rebuilt from the log whenever its mark is
behind it, so a crash that loses the last batch loses nothing. Defined here, below the API, because the log
must not run SQL written above it; PostgreSQL keeps writing through a session (``api/domain/search/store.py``),
where writers do not share one lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, delete, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ClauseElement

from persistence.models import TaskIndex, TaskIndexState, utcnow

# A task's indexed fields (what an upsert replaces), and with its id, what a row is written from.
FIELDS = ("title", "status", "priority", "assignee_id", "due_date", "labels", "rank", "updated_at", "body")
ROW_COLUMNS = ("task_id", *FIELDS)
JSON_PARAMS = ("labels",)

_index: Table = TaskIndex.__table__  # type: ignore[assignment]
_state: Table = TaskIndexState.__table__  # type: ignore[assignment]

_insert = sqlite_insert(_index).values(
    {name: bindparam(name) for name in ("workspace_id", *ROW_COLUMNS, "doc_seq", "indexed_at")}
)
# A row already read from a newer document state (another node indexed a later change) is left alone.
UPSERT = _insert.on_conflict_do_update(
    index_elements=["workspace_id", "task_id"],
    set_={name: _insert.excluded[name] for name in (*FIELDS, "doc_seq", "indexed_at")},
    where=_index.c.doc_seq <= _insert.excluded.doc_seq,
)
DELETE = delete(_index).where(
    _index.c.workspace_id == bindparam("workspace_id"),
    _index.c.task_id == bindparam("task_id"),
    _index.c.doc_seq <= bindparam("doc_seq"),
)
MARK_NEW = (
    sqlite_insert(_state)
    .values(workspace_id=bindparam("workspace_id"), built_at=bindparam("built_at"), doc_seq=bindparam("doc_seq"))
    .on_conflict_do_nothing(index_elements=["workspace_id"])
)
MARK = (
    update(_state)
    .where(_state.c.workspace_id == bindparam("m_wid"), _state.c.doc_seq < bindparam("m_seq"))
    .values(doc_seq=bindparam("m_seq"))
)

Batch = Sequence[tuple[str, int, Sequence[dict[str, Any]], Sequence[str]]]


def sqlite_statements(batch: Batch) -> list[tuple[ClauseElement, list[dict[str, Any]]]]:
    """The statements and their rows for ``(workspace_id, doc_seq, rows, gone task ids)`` of several
    workspaces: upserts, deletions, then each workspace's mark (the log position its index includes)."""
    now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite DateTime format
    upserts = [
        {**{name: row[name] for name in ROW_COLUMNS}, "workspace_id": wid, "doc_seq": seq, "indexed_at": now}
        for wid, seq, rows, _ in batch
        for row in rows
    ]
    deletions = [{"workspace_id": wid, "task_id": tid, "doc_seq": seq} for wid, seq, _, gone in batch for tid in gone]
    marks = [{"workspace_id": wid, "built_at": now, "doc_seq": seq} for wid, seq, _, _ in batch]
    statements: list[tuple[ClauseElement, list[dict[str, Any]]]] = []
    if upserts:
        statements.append((UPSERT, upserts))
    if deletions:
        statements.append((DELETE, deletions))
    statements.append((MARK_NEW, marks))
    statements.append((MARK, [{"m_wid": m["workspace_id"], "m_seq": m["doc_seq"]} for m in marks]))
    return statements
