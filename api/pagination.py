"""Keyset pagination, newest first, for the lists of log-like rows (activity, versions, notifications,
webhook deliveries): ``{items, next_cursor}``, where the cursor is the last row's sequence number.

A key rather than an offset: rows keep arriving at the top while a client pages down, and an offset would
show some twice; ``seq < cursor`` never does, and the index on the sequence answers it at any depth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from api.errors import ApiError

Limit = Annotated[int, Query(ge=1, le=200)]

MAX_CURSOR = 2**63 - 1  # sequence numbers are BIGINT: a larger one failed in the database (500)


def parse_cursor(cursor: str | None) -> int | None:
    """Cursors are opaque to clients; here they are the row's sequence number (ASCII digits, at most 2^63-1)."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > 19 or not cursor.isascii() or not cursor.isdigit() or int(cursor) > MAX_CURSOR:
        raise ApiError(422, "Invalid cursor")
    return int(cursor)


async def keyset_page(
    session: AsyncSession,
    query: Select[*tuple[Any, ...]],
    seq: InstrumentedAttribute[int],
    cursor: str | None,
    limit: int,
    to_json: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """One page of ``query`` (already filtered) by descending ``seq``, a column of its first entity; each row's
    columns are passed to ``to_json``. One row more than the page is read to know whether another follows."""
    before = parse_cursor(cursor)
    if before is not None:
        query = query.where(seq < before)
    rows = (await session.execute(query.order_by(seq.desc()).limit(limit + 1))).all()
    page = rows[:limit]
    return {
        "items": [to_json(*row) for row in page],
        "next_cursor": str(getattr(page[-1][0], seq.key)) if len(rows) > limit else None,
    }
