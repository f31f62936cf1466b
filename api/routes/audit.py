"""``GET /api/workspaces/{wid}/audit``: a workspace's audit log, for its owners and admins (docs/admin.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import Member, Session, require
from api.domain import audit
from api.pagination import Limit, keyset_page
from api.schemas import NO_NUL
from persistence.models import AuditEntry

router = APIRouter(prefix="/api/workspaces/{wid}/audit", tags=["audit"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this (owners and admins only)"},
    404: {"description": "No such workspace, or not a member"},
    422: {"description": "Invalid cursor"},
}


@router.get("", responses=_ERRORS)
async def workspace_audit(
    session: Session,
    member: Annotated[Member, Depends(require("audit.read"))],
    action: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{items, next_cursor}``: membership, role, invite, webhook and workspace actions in this workspace, newest
    first (actor, action, target, time, client address). Read-only: no route changes or deletes an entry."""
    q = audit.query(workspace_id=member.workspace.id, action=action)
    return await keyset_page(session, q, AuditEntry.seq, cursor, limit, audit.entry_json)
