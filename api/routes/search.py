"""Full-text search over the tasks of every workspace the caller is a member of (docs/search.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Ctx, CurrentUser, Session
from api.domain.search.store import MAX_QUERY_CHARS, query_terms
from api.errors import ApiError
from api.pagination import Limit, parse_cursor

router = APIRouter(prefix="/api/search", tags=["search"])

MAX_OFFSET = 1_000  # how deep a client may page into one query's ranked hits

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    422: {"description": "q missing, empty, longer than 200 characters or without a word; invalid cursor"},
}


@router.get("", responses=_ERRORS)
async def search(
    ctx: Ctx,
    user: CurrentUser,
    session: Session,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="Words to find")],
    cursor: str | None = None,
    limit: Limit = 20,
) -> dict[str, Any]:
    """``{items, next_cursor}``: tasks whose title, description, comments or checklist contain every word of
    ``q`` (the last letters of a word may be missing: a prefix matches), best match first, in the workspaces
    the caller is a member of. Each item: ``workspace`` {id, name}, ``task_id``, ``title``, ``status``,
    ``priority``, ``assignee_id``, ``due_date`` and ``snippet`` (plain text around the match). Changes are
    searchable about a second after they are made."""
    if not query_terms(q):
        raise ApiError(422, "q must contain a word (letters or digits)")
    offset = parse_cursor(cursor) or 0
    if offset > MAX_OFFSET:
        raise ApiError(422, "Invalid cursor")
    hits = await ctx.search.search(session, user.id, q, offset, limit + 1)
    return {
        "items": hits[:limit],
        "next_cursor": str(offset + limit) if len(hits) > limit and offset + limit <= MAX_OFFSET else None,
    }
