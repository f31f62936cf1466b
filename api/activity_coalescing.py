"""Typing becomes one activity row per run of edits, not one per keystroke.

Consecutive description edits of the same task by the same actor within ``TEXT_EDIT_WINDOW`` add to the
newest row's summary. The newest row of each task is remembered here, so steady typing costs one guarded
``UPDATE`` per task per derivation batch instead of a query and an ORM flush.

Several nodes may write activity for one workspace. The update is guarded: it only applies while no newer
row exists for the task. When the guard fails, another node wrote in between; the edits then start a row of
their own, and the memory of that task is dropped.

Idempotent: a row remembers the last log sequence number it covers (``doc_seq``), and an edit at or below
it is already counted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.schemas import as_utc
from persistence.models import Activity

TEXT_EDIT_WINDOW = timedelta(seconds=60)
REMEMBERED_TASKS = 10_000


@dataclass(eq=False)
class _Newest:
    """What coalescing needs of a task's newest activity row."""

    id: str
    field: str | None
    actor_id: str | None
    doc_seq: int
    created_at: datetime
    summary: dict[str, Any] | None
    pending: dict[str, Any] | None = None  # the row itself while it is still to be inserted in this batch
    first_edit: dict[str, Any] | None = None  # first edit added to the stored row in this batch (fallback)
    stored_doc_seq: int = 0  # doc_seq of the row as stored before this batch


class ActivityCoalescer:
    """Remembers the newest activity row of recently edited tasks (this node's derivation worker only)."""

    def __init__(self, remembered: int = REMEMBERED_TASKS) -> None:
        self._newest: OrderedDict[tuple[str, str], _Newest] = OrderedDict()
        self._remembered = remembered

    def forget_workspace(self, workspace_id: str) -> None:
        """A transaction failed: what is remembered of this workspace may not be stored; re-read it."""
        for key in [k for k in self._newest if k[0] == workspace_id]:
            del self._newest[key]

    def _remember(self, workspace_id: str, task_id: str, entry: _Newest) -> _Newest:
        key = (workspace_id, task_id)
        self._newest[key] = entry
        self._newest.move_to_end(key)
        while len(self._newest) > self._remembered:
            self._newest.popitem(last=False)
        return entry

    async def _lookup(self, session: AsyncSession, workspace_id: str, task_id: str) -> _Newest | None:
        known = self._newest.get((workspace_id, task_id))
        if known is not None:
            self._newest.move_to_end((workspace_id, task_id))
            return known
        row = await session.scalar(
            select(Activity)
            .where(Activity.workspace_id == workspace_id, Activity.task_id == task_id)
            .order_by(Activity.seq.desc())
            .limit(1)
        )
        if row is None:
            return None
        newest = _Newest(row.id, row.field, row.actor_id, row.doc_seq, as_utc(row.created_at), row.summary)
        return self._remember(workspace_id, task_id, newest)

    async def record(
        self, session: AsyncSession, workspace_id: str, rows: list[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        """Coalesce ``rows`` (activity rows in log order) into the newest rows, updating stored ones in
        ``session``; returns the rows still to insert, which the caller inserts in the same transaction."""
        out: list[dict[str, Any]] = []
        stored: list[tuple[str, _Newest]] = []  # stored rows that grew in this batch
        for row in rows:
            tid = row["task_id"]
            prev = await self._lookup(session, workspace_id, tid)
            if (
                row["field"] == "description"
                and prev is not None
                and prev.field == "description"
                and prev.actor_id == row["actor_id"]
            ):
                if prev.doc_seq >= row["doc_seq"]:
                    continue  # already recorded (a retried derivation)
                if now - prev.created_at <= TEXT_EDIT_WINDOW:
                    if prev.pending is None and prev.first_edit is None:
                        prev.stored_doc_seq, prev.first_edit = prev.doc_seq, {**row, "summary": {}}
                        stored.append((tid, prev))
                    summary = dict(prev.summary or {})
                    for k in ("inserted", "deleted"):
                        n = int((row["summary"] or {}).get(k, 0))
                        summary[k] = int(summary.get(k, 0)) + n
                        if prev.first_edit is not None:
                            added = prev.first_edit["summary"]
                            added[k] = int(added.get(k, 0)) + n
                    prev.summary, prev.doc_seq = summary, row["doc_seq"]
                    if prev.pending is not None:
                        prev.pending["summary"], prev.pending["doc_seq"] = summary, row["doc_seq"]
                    elif prev.first_edit is not None:
                        prev.first_edit["doc_seq"] = row["doc_seq"]
                    continue
            out.append(row)
            self._remember(
                workspace_id,
                tid,
                _Newest(row["id"], row["field"], row["actor_id"], row["doc_seq"], now, row["summary"], pending=row),
            )
        for tid, entry in stored:
            assert entry.first_edit is not None
            if not await self._store(session, workspace_id, tid, entry):
                # Another node wrote a newer row for the task: these edits start a row of their own.
                self._newest.pop((workspace_id, tid), None)
                out.append(entry.first_edit)
            entry.first_edit = None
        for row in out:
            newest = self._newest.get((workspace_id, row["task_id"]))
            if newest is not None:
                newest.pending = None
        return out

    @staticmethod
    async def _store(session: AsyncSession, workspace_id: str, task_id: str, entry: _Newest) -> bool:
        """Write the grown summary, unless a newer row of the task exists (written by another node)."""
        params = {
            "row_id": entry.id,
            "wid": workspace_id,
            "tid": task_id,
            "stored_seq": entry.stored_doc_seq,
            "new_summary": entry.summary,
            "new_doc_seq": entry.doc_seq,
        }
        result = await session.execute(_STORE, params)
        return bool(getattr(result, "rowcount", 0))


_rows: Table = Activity.__table__  # type: ignore[assignment]
_newer = _rows.alias("newer")
# Built once: statement construction (and a fresh alias per call, which misses the compiled cache) cost more
# than the database work.
_STORE = (
    update(_rows)
    .where(
        _rows.c.id == bindparam("row_id"),
        ~exists().where(
            _newer.c.workspace_id == bindparam("wid"),
            _newer.c.task_id == bindparam("tid"),
            _newer.c.doc_seq > bindparam("stored_seq"),
            _newer.c.id != bindparam("row_id"),
        ),
    )
    .values(
        summary=bindparam("new_summary", type_=_rows.c.summary.type),
        doc_seq=bindparam("new_doc_seq", type_=_rows.c.doc_seq.type),
    )
)
