"""Task activity history: every field-level change, newest first, paginated (members only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from api.deps import Member, Session, require
from api.domain.notifications.views import activity_json
from api.pagination import Limit, keyset_page
from persistence.models import Activity, User

router = APIRouter(prefix="/api/workspaces/{wid}", tags=["activity"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    404: {"description": "No such workspace"},
    422: {"description": "Invalid cursor"},
}

Reader = Annotated[Member, Depends(require("activity.read"))]


async def _page(session: Session, member: Member, task_id: str | None, cursor: str | None, limit: int) -> Any:
    q = (
        select(Activity, User)
        .outerjoin(User, User.id == Activity.actor_id)
        .where(Activity.workspace_id == member.workspace.id)
    )
    if task_id is not None:
        q = q.where(Activity.task_id == task_id)
    return await keyset_page(session, q, Activity.seq, cursor, limit, activity_json)


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
