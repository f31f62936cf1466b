"""The task index in the database: writing rows (never over a row read from a newer document state) and the
full-text queries, on the database's own full-text search (SQLite FTS5, PostgreSQL ``tsvector`` + GIN).

Query words are the letters and digits of ``q`` (punctuation separates words); every word must match, the
last ones as prefixes too (``"plan"`` finds "planning"), case-insensitively, with no stemming on either
backend. Hits are ranked by the database (BM25 on SQLite, ``ts_rank_cd`` on PostgreSQL), a title match above a
body match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from persistence import task_index_writes
from persistence.db import Database, insert_ignoring_conflicts
from persistence.models import TaskIndex, TaskIndexState, utcnow

MAX_QUERY_CHARS = 200  # a longer ``q`` is refused (422)
MAX_TERMS = 16  # words of a query beyond this are ignored
MAX_MATCHES = 10_000  # task ids one workspace query returns at most (a workspace's task quota)
SNIPPET_WORDS = 16  # the snippet queries below spell it out

_WORD = re.compile(r"[^\W_]+")


def query_terms(q: str) -> list[str]:
    """The words of a query, lower-cased (both backends fold case the same way)."""
    return [w.lower() for w in _WORD.findall(q)][:MAX_TERMS]


def _fts5_query(terms: Sequence[str]) -> str:
    return " AND ".join(f'"{t}"*' for t in terms)


def _tsquery(terms: Sequence[str]) -> str:
    return " & ".join(f"{t}:*" for t in terms)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# ---- writing ---------------------------------------------------------------------------------------------


async def upsert_rows(
    session: AsyncSession, db: Database, workspace_id: str, rows: list[dict[str, Any]], doc_seq: int
) -> None:
    """Insert or replace rows of one workspace read from a document that included log entry ``doc_seq``; a
    row already read from a newer state (another node indexed a later change) is left alone."""
    await upsert_many(session, db, [(workspace_id, doc_seq, rows)])


async def upsert_many(
    session: AsyncSession, db: Database, batch: Sequence[tuple[str, int, list[dict[str, Any]]]]
) -> None:
    """``upsert_rows`` for several workspaces in one statement (one round trip, a short hold of SQLite's
    write lock, which the group commit waits for)."""
    now = utcnow()
    values = [{**r, "workspace_id": wid, "doc_seq": seq, "indexed_at": now} for wid, seq, rows in batch for r in rows]
    if not values:
        return
    insert = sqlite_insert if db.is_sqlite else pg_insert
    stmt = insert(TaskIndex.__table__)  # type: ignore[arg-type]
    newer = TaskIndex.__table__.c.doc_seq <= stmt.excluded.doc_seq
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace_id", "task_id"],
        set_={name: stmt.excluded[name] for name in (*task_index_writes.FIELDS, "doc_seq", "indexed_at")},
        where=newer,
    )
    await session.execute(stmt, values)


async def delete_rows(session: AsyncSession, workspace_id: str, task_ids: Sequence[str], doc_seq: int) -> None:
    """Remove the rows of tasks deleted from the document (unless a newer state re-created them)."""
    if task_ids:
        await session.execute(
            delete(TaskIndex).where(
                TaskIndex.workspace_id == workspace_id,
                TaskIndex.task_id.in_(list(task_ids)),
                TaskIndex.doc_seq <= doc_seq,
            )
        )


async def mark_indexed(session: AsyncSession, db: Database, workspace_id: str, doc_seq: int) -> None:
    """Record that the workspace's index includes the document up to ``doc_seq`` (it only grows)."""
    await mark_many(session, db, [(workspace_id, doc_seq)])


async def mark_many(session: AsyncSession, db: Database, marks: Sequence[tuple[str, int]]) -> None:
    """``mark_indexed`` for several workspaces in one statement."""
    now = utcnow()
    await insert_ignoring_conflicts(
        session,
        db,
        TaskIndexState.__table__,  # type: ignore[arg-type]
        [{"workspace_id": wid, "built_at": now, "doc_seq": seq} for wid, seq in marks],
        ["workspace_id"],
    )
    state: Table = TaskIndexState.__table__  # type: ignore[assignment]
    await session.execute(
        update(state)  # the table, not the class: an executemany UPDATE (the ORM's bulk form refuses the WHERE)
        .where(state.c.workspace_id == bindparam("b_wid"), state.c.doc_seq < bindparam("b_seq"))
        .values(doc_seq=bindparam("b_seq")),
        [{"b_wid": wid, "b_seq": seq} for wid, seq in marks],
    )


async def replace_workspace(
    session: AsyncSession, db: Database, workspace_id: str, rows: list[dict[str, Any]], doc_seq: int
) -> None:
    """A rebuild: the workspace's rows become the document's tasks (rows of tasks it no longer has go)."""
    await upsert_rows(session, db, workspace_id, rows, doc_seq)
    keep = [r["task_id"] for r in rows]
    stale = select(TaskIndex.task_id).where(TaskIndex.workspace_id == workspace_id, TaskIndex.doc_seq <= doc_seq)
    existing = set((await session.scalars(stale)).all())
    await delete_rows(session, workspace_id, sorted(existing - set(keep)), doc_seq)
    await mark_indexed(session, db, workspace_id, doc_seq)


# ---- queries ---------------------------------------------------------------------------------------------

_SQLITE_IN_WORKSPACE = text(
    "SELECT ti.task_id FROM task_index_fts JOIN task_index ti ON ti.seq = task_index_fts.rowid"
    " WHERE task_index_fts MATCH :q AND ti.workspace_id = :wid"
    " ORDER BY bm25(task_index_fts, 10.0, 1.0), ti.updated_at DESC, ti.task_id LIMIT :n"
)
_PG_IN_WORKSPACE = text(
    "SELECT ti.task_id FROM task_index ti, to_tsquery('simple', :q) query"
    " WHERE ti.search_vector @@ query AND ti.workspace_id = :wid"
    " ORDER BY ts_rank_cd(ti.search_vector, query) DESC, ti.updated_at DESC, ti.task_id LIMIT :n"
)


async def matching_task_ids(session: AsyncSession, workspace_id: str, q: str) -> list[str]:
    """Ids of the workspace's tasks matching ``q``, best first (title, description, comments, checklist).

    Reads the index only; a query without a word matches nothing. The caller checked membership, and made
    sure the workspace is indexed (``SearchIndex.ensure_indexed``)."""
    terms = query_terms(q)
    if not terms:
        return []
    if _dialect(session) == "sqlite":
        rows = await session.execute(
            _SQLITE_IN_WORKSPACE, {"q": _fts5_query(terms), "wid": workspace_id, "n": MAX_MATCHES}
        )
    else:
        rows = await session.execute(_PG_IN_WORKSPACE, {"q": _tsquery(terms), "wid": workspace_id, "n": MAX_MATCHES})
    return [r[0] for r in rows]


_SQLITE_FOR_USER = text(
    "SELECT ti.workspace_id, w.name, ti.task_id, ti.title, ti.status, ti.priority, ti.assignee_id, ti.due_date,"
    " snippet(task_index_fts, 1, '', '', '…', 16)"
    " FROM task_index_fts JOIN task_index ti ON ti.seq = task_index_fts.rowid"
    " JOIN memberships m ON m.workspace_id = ti.workspace_id AND m.user_id = :uid"
    " JOIN workspaces w ON w.id = ti.workspace_id"
    " WHERE task_index_fts MATCH :q"
    " ORDER BY bm25(task_index_fts, 10.0, 1.0), ti.updated_at DESC, ti.seq LIMIT :n OFFSET :o"
)
_PG_FOR_USER = text(
    "SELECT hit.workspace_id, w.name, hit.task_id, hit.title, hit.status, hit.priority, hit.assignee_id,"
    " hit.due_date, ts_headline('simple', hit.body, to_tsquery('simple', :q),"
    ' \'StartSel="", StopSel="", MaxWords=16, MinWords=4, ShortWord=0\')'
    " FROM (SELECT ti.*, ts_rank_cd(ti.search_vector, query) AS score"
    "   FROM task_index ti JOIN memberships m ON m.workspace_id = ti.workspace_id AND m.user_id = :uid,"
    "   to_tsquery('simple', :q) query"
    "   WHERE ti.search_vector @@ query"
    "   ORDER BY score DESC, ti.updated_at DESC, ti.seq LIMIT :n OFFSET :o) hit"
    " JOIN workspaces w ON w.id = hit.workspace_id"
    " ORDER BY hit.score DESC, hit.updated_at DESC, hit.seq"
)


async def search_for_user(session: AsyncSession, user_id: str, q: str, offset: int, limit: int) -> list[dict[str, Any]]:
    """Hits in every workspace ``user_id`` is a member of, best first; membership is part of the query, so a
    workspace the caller left or never joined contributes nothing."""
    terms = query_terms(q)
    if not terms:
        return []
    params: dict[str, Any] = {"uid": user_id, "n": limit, "o": offset}
    if _dialect(session) == "sqlite":
        rows = await session.execute(_SQLITE_FOR_USER, {**params, "q": _fts5_query(terms)})
    else:
        rows = await session.execute(_PG_FOR_USER, {**params, "q": _tsquery(terms)})
    return [
        {
            "workspace": {"id": r[0], "name": r[1]},
            "task_id": r[2],
            "title": r[3],
            "status": r[4],
            "priority": r[5],
            "assignee_id": r[6],
            "due_date": r[7],
            "snippet": r[8] or "",
        }
        for r in rows
    ]


_UNINDEXED_OF_USER = text(
    "SELECT m.workspace_id FROM memberships m"
    " LEFT JOIN task_index_state s ON s.workspace_id = m.workspace_id"
    " WHERE m.user_id = :uid AND s.workspace_id IS NULL"
)
_UNINDEXED = select(TaskIndexState.workspace_id)


async def unindexed_workspaces_of(session: AsyncSession, user_id: str) -> list[str]:
    return [r[0] for r in await session.execute(_UNINDEXED_OF_USER, {"uid": user_id})]


async def indexed_seq(session: AsyncSession, workspace_ids: Sequence[str]) -> dict[str, int]:
    """The log position each workspace's index includes (absent: never built)."""
    if not workspace_ids:
        return {}
    rows = await session.execute(
        select(TaskIndexState.workspace_id, TaskIndexState.doc_seq).where(
            TaskIndexState.workspace_id.in_(bindparam("ids", expanding=True))
        ),
        {"ids": list(workspace_ids)},
    )
    return {r[0]: int(r[1]) for r in rows}
