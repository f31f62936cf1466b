"""Typing becomes one activity row per run of edits, not one per keystroke.

Consecutive description edits of the same task by the same actor within ``TEXT_EDIT_WINDOW`` add to the
newest row's summary. The newest row of each task is remembered here, so steady typing costs one guarded
``UPDATE`` per task at most every ``SUMMARY_INTERVAL`` instead of a query and an ORM flush per keystroke.
The summaries wait because on SQLite each write takes the database's one write lock, which the update log's
appends (and so every peer's fan-out) then wait for: written every derivation window (four a second), they
held the appends up (docs/performance.md#log-summaries). A new row of a task whose summary is waiting writes
it first, so rows stay in order.

Several nodes may write activity for one workspace. The update is guarded: it only applies while no newer
row exists for the task. When the guard fails, another node wrote in between; the edits then start a row of
their own, and the memory of that task is dropped.

Idempotent: a row remembers the last log sequence number it covers (``doc_seq``), and an edit at or below
it is already counted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence import activity_summaries
from persistence.doclog import DocumentLog
from persistence.models import Activity, as_utc, new_id

TEXT_EDIT_WINDOW = timedelta(seconds=60)
REMEMBERED_TASKS = 10_000
SUMMARY_INTERVAL = 2.0  # seconds a grown summary may wait in memory (the activity feed's lag while typing)


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

    def __init__(
        self,
        remembered: int = REMEMBERED_TASKS,
        summary_interval: float = SUMMARY_INTERVAL,
        log: DocumentLog | None = None,
    ) -> None:
        self._log = log if log is not None and log.writes_in_log_order else None  # SQLite: summaries in log order
        self._newest: OrderedDict[tuple[str, str], _Newest] = OrderedDict()
        self._remembered = remembered
        self._interval = summary_interval
        self._grown: dict[tuple[str, str], _Newest] = {}  # stored rows whose summary grew, not yet written
        self._grown_since: float | None = None  # monotonic time of the oldest growth not yet written
        self._superseded = False  # a new row follows a grown one: write the summaries before inserting it

    def store_due_in(self) -> float | None:
        """Seconds until the grown summaries must be written (0: now); None when none is waiting."""
        if self._grown_since is None:
            return None
        if self._superseded:
            return 0.0
        return max(0.0, self._grown_since + self._interval - time.monotonic())

    def forget(self) -> None:
        """A transaction failed: what is remembered may not be stored (summaries waiting to be written
        included); re-read it all. Loses the counts of at most ``SUMMARY_INTERVAL`` of typing."""
        self._newest.clear()
        self._grown.clear()
        self._grown_since, self._superseded = None, False

    def _remember(self, workspace_id: str, task_id: str, entry: _Newest) -> _Newest:
        key = (workspace_id, task_id)
        self._newest[key] = entry
        self._newest.move_to_end(key)
        while len(self._newest) > self._remembered:
            self._newest.popitem(last=False)
        return entry

    async def prefetch(self, session: AsyncSession, pairs: set[tuple[str, str]]) -> None:
        """Read the newest rows of the (workspace, task) pairs not remembered yet, a few hundred per query."""
        for pair in pairs:  # a task forgotten while its grown summary waits: that is still its newest row
            if pair not in self._newest and pair in self._grown:
                self._remember(*pair, self._grown[pair])
        missing = sorted(p for p in pairs if p not in self._newest)
        for i in range(0, len(missing), 200):
            chunk = missing[i : i + 200]
            result = await session.execute(
                _NEWEST, {"wids": sorted({w for w, _ in chunk}), "tids": sorted({t for _, t in chunk})}
            )
            found = {
                (str(w), str(t)): _Newest(str(i_), f, a, int(d), as_utc(c), summ)
                for w, t, i_, f, a, d, c, summ in result
            }
            for pair in chunk:
                self._remember(*pair, found.get(pair) or _no_row())

    def _lookup(self, workspace_id: str, task_id: str) -> _Newest:
        known = self._newest.get((workspace_id, task_id))
        if known is None:
            raise KeyError(f"prefetch ({workspace_id}, {task_id}) first")
        self._newest.move_to_end((workspace_id, task_id))
        return known

    async def record(
        self, session: AsyncSession, workspace_id: str, rows: list[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        """Coalesce ``rows`` (activity rows in log order) into the newest rows; returns the rows to insert.
        Call :meth:`store` before the transaction ends to write the summaries of stored rows that grew."""
        await self.prefetch(session, {(workspace_id, r["task_id"]) for r in rows if r["field"] == "description"})
        out: list[dict[str, Any]] = []
        for row in rows:
            tid = row["task_id"]
            prev = self._lookup(workspace_id, tid) if row["field"] == "description" else None
            if prev is not None and prev.field == "description" and prev.actor_id == row["actor_id"]:
                if prev.doc_seq >= row["doc_seq"]:
                    continue  # already recorded (a retried derivation)
                if now - prev.created_at <= TEXT_EDIT_WINDOW:
                    if prev.pending is None and prev.first_edit is None:
                        prev.stored_doc_seq, prev.first_edit = prev.doc_seq, {**row, "summary": {}}
                        self._grown[(workspace_id, tid)] = prev
                        self._grown_since = self._grown_since or time.monotonic()
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
            if (workspace_id, tid) in self._grown:
                self._superseded = True
            row["id"] = new_id()
            out.append(row)
            self._remember(
                workspace_id,
                tid,
                _Newest(row["id"], row["field"], row["actor_id"], row["doc_seq"], now, row["summary"], pending=row),
            )
        for row in out:
            newest = self._newest.get((workspace_id, row["task_id"]))
            if newest is not None:
                newest.pending = None
        return out

    async def store(self, session: AsyncSession, *, force: bool = False) -> list[dict[str, Any]]:
        """Write the summaries that grew since they were last written, if due (see ``store_due_in``) or
        ``force``d: one executemany and one check for every task (a statement per row would hold SQLite's
        write lock across hundreds of round trips). Call it before inserting the rows :meth:`record` returned.
        Returns the rows of edits that must start a row of their own because another node wrote a newer row
        meanwhile."""
        due = self.store_due_in()
        if due is None or (due > 0 and not force):
            return []
        grown, self._grown = [(w, t, e) for (w, t), e in self._grown.items()], {}
        self._grown_since, self._superseded = None, False
        rows = [
            {
                "row_id": e.id,
                "wid": wid,
                "tid": tid,
                "stored_seq": e.stored_doc_seq,
                "new_summary": e.summary,
                "new_doc_seq": e.doc_seq,
            }
            for wid, tid, e in grown
        ]
        if self._log is not None:
            stored = await self._log.store_activity_summaries(rows)
        else:
            stored = await activity_summaries.store_in_session(session, rows)
        fallback: list[dict[str, Any]] = []
        for wid, tid, entry in grown:
            assert entry.first_edit is not None
            # doc_seq is a log position, and only this node derives the updates it accepted: the row holds
            # ours exactly when our update went through.
            if stored.get(entry.id) != entry.doc_seq:
                self._newest.pop((wid, tid), None)
                fallback.append({**entry.first_edit, "id": new_id()})
            entry.first_edit = None
        return fallback


_rows: Table = Activity.__table__  # type: ignore[assignment]
_newer = _rows.alias("newer")
# Built once, with expanding bind parameters: an ``in_()`` built per call leaves cyclic garbage (see
# api/notifications.py).
_NEWEST = select(
    _rows.c.workspace_id,
    _rows.c.task_id,
    _rows.c.id,
    _rows.c.field,
    _rows.c.actor_id,
    _rows.c.doc_seq,
    _rows.c.created_at,
    _rows.c.summary,
).where(
    _rows.c.seq
    == select(func.max(_newer.c.seq))
    .where(_newer.c.workspace_id == _rows.c.workspace_id, _newer.c.task_id == _rows.c.task_id)
    .scalar_subquery(),
    _rows.c.workspace_id.in_(bindparam("wids", expanding=True)),
    _rows.c.task_id.in_(bindparam("tids", expanding=True)),
)


def _no_row() -> _Newest:
    """Remembered for a task without activity rows: never coalesced into (its field is not a description)."""
    return _Newest("", None, None, -1, datetime.min.replace(tzinfo=UTC), None)
