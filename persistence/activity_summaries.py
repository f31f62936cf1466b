"""The guarded write of grown activity summaries (typing coalesced into one row, see api/activity_coalescing.py).

Defined here, below the API, because two writers run it: the derivation worker's session on PostgreSQL, and
on SQLite the update log's own thread (``DocumentLog.store_activity_summaries``), which must not run SQL
written above it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.db import execute_many
from persistence.models import Activity

_rows: Table = Activity.__table__  # type: ignore[assignment]
_newer = _rows.alias("newer")

# One row's new summary and doc_seq, written only while no newer row of the task exists (another node's).
# Parameters: row_id, wid, tid, stored_seq (the row's doc_seq before), new_summary (JSON), new_doc_seq. Built
# once: statement construction (and a fresh alias per call, which misses the compiled cache) cost more than
# the database work.
SUMMARY_UPDATE = (
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
JSON_PARAMS = ("new_summary",)
_STORED_SEQS = select(_rows.c.id, _rows.c.doc_seq).where(_rows.c.id.in_(bindparam("ids", expanding=True)))


async def store_in_session(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """:data:`SUMMARY_UPDATE` for ``rows`` in the caller's transaction; returns the ``doc_seq`` each row now
    holds (the new one where the guard passed)."""
    await execute_many(session, SUMMARY_UPDATE, rows, json_params=JSON_PARAMS)
    stored: dict[str, int] = {}
    for i in range(0, len(rows), 500):
        result = await session.execute(_STORED_SEQS, {"ids": [r["row_id"] for r in rows[i : i + 500]]})
        stored.update((str(row_id), int(seq)) for row_id, seq in result)
    return stored
