"""Task activity history: every field-level change, newest first, paginated (members only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from api.deps import Member, Session, require
from api.domain.notifications.worker import activity_json
from api.routes.notifications import parse_cursor
from persistence.models import Activity, User

router = APIRouter(prefix="/api/workspaces/{wid}", tags=["activity"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    404: {"description": "No such workspace"},
    422: {"description": "Invalid cursor"},
}

Limit = Annotated[int, Query(ge=1, le=200)]
Reader = Annotated[Member, Depends(require("activity.read"))]


async def _page(session: Session, member: Member, task_id: str | None, cursor: str | None, limit: int) -> Any:
    before = parse_cursor(cursor)
    q = (
        select(Activity, User)
        .outerjoin(User, User.id == Activity.actor_id)
        .where(Activity.workspace_id == member.workspace.id)
        .order_by(Activity.seq.desc())
        .limit(limit + 1)
    )
    if task_id is not None:
        q = q.where(Activity.task_id == task_id)
    if before is not None:
        q = q.where(Activity.seq < before)
    rows = (await session.execute(q)).all()
    page = rows[:limit]
    return {
        "items": [activity_json(a, actor) for a, actor in page],
        "next_cursor": str(page[-1][0].seq) if len(rows) > limit else None,
    }


@router.get("/activity", responses=_ERRORS)
async def workspace_activity(
    session: Session, member: Reader, cursor: str | None = None, limit: Limit = 50
) -> dict[str, Any]:
    """``{items, next_cursor}``: the workspace's task changes, newest first."""
    result: dict[str, Any] = await _page(session, member, None, cursor, limit)
    return result


@router.get("/tasks/{task_id}/activity", responses=_ERRORS)
async def task_activity(
    task_id: str, session: Session, member: Reader, cursor: str | None = None, limit: Limit = 50
) -> dict[str, Any]:
    """``{items, next_cursor}``: one task's changes, newest first (also after the task was deleted)."""
    result: dict[str, Any] = await _page(session, member, task_id, cursor, limit)
    return result
