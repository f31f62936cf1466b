"""``/api/admin``: instance administration (docs/admin.md). Instance admins only (``plait admin grant EMAIL``):
anonymous 401, any other account 403; a personal access token needs the ``admin`` scope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import Ctx, CurrentCaller, Session
from api.domain import admin, audit
from api.domain.sessions import Caller
from api.errors import ApiError
from api.pagination import Limit, keyset_page
from api.schemas import NO_NUL
from persistence.models import AuditEntry

router = APIRouter(prefix="/api/admin", tags=["admin"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Not an instance administrator, or a token without the admin scope"},
    422: {"description": "Invalid query or cursor"},
}
Search = Annotated[
    str | None, Query(max_length=admin.MAX_QUERY_CHARS, pattern=NO_NUL, description="Part of the name or email")
]


async def instance_admin(caller: CurrentCaller) -> Caller:
    """The caller is an instance admin; through a personal access token, one with the ``admin`` scope."""
    if not caller.user.is_admin:
        raise ApiError(403, "Only instance administrators may do this")
    if caller.is_token and "admin" not in caller.scopes:
        raise ApiError(403, "This token's scope does not allow instance administration (it needs admin)")
    return caller


InstanceAdmin = Annotated[Caller, Depends(instance_admin)]


@router.get("/users", responses=_ERRORS)
async def list_users(
    _admin: InstanceAdmin,
    session: Session,
    q: Search = None,
    disabled: bool | None = None,
    cursor: Annotated[str | None, Query(max_length=admin.MAX_CURSOR_CHARS)] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{items, next_cursor}``: accounts by email (``q`` searches email and display name; ``disabled`` filters),
    each with whether it is an admin, when it was disabled, and how many workspaces it belongs to."""
    return await admin.list_users(session, q=q, disabled=disabled, cursor=cursor, limit=limit)


@router.post(
    "/users/{user_id}/disable",
    responses={**_ERRORS, 404: {"description": "No such user"}, 409: {"description": "Your own account"}},
)
async def disable_user(user_id: str, caller: InstanceAdmin, ctx: Ctx, session: Session) -> dict[str, Any]:
    """The account can no longer sign in, refresh or use its tokens; its sessions end and its sync sockets and
    notification streams close (4401) at once, on every node. Idempotent."""
    user = await admin.set_disabled(session, ctx.sync, actor_id=caller.user.id, user_id=user_id, disabled=True)
    return admin.user_json(user, await admin.membership_count(session, user.id))


@router.post("/users/{user_id}/enable", responses={**_ERRORS, 404: {"description": "No such user"}})
async def enable_user(user_id: str, caller: InstanceAdmin, ctx: Ctx, session: Session) -> dict[str, Any]:
    """The account may sign in again (sessions ended by disabling stay ended). Idempotent."""
    user = await admin.set_disabled(session, ctx.sync, actor_id=caller.user.id, user_id=user_id, disabled=False)
    return admin.user_json(user, await admin.membership_count(session, user.id))


@router.get("/workspaces", responses=_ERRORS)
async def list_workspaces(
    _admin: InstanceAdmin,
    session: Session,
    q: Search = None,
    cursor: Annotated[str | None, Query(max_length=admin.MAX_CURSOR_CHARS)] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{items, next_cursor}``: every workspace by name, with its member count, stored document size and last
    activity (its last document change)."""
    return await admin.list_workspaces(session, q=q, cursor=cursor, limit=limit)


@router.get("/stats", responses=_ERRORS)
async def stats(_admin: InstanceAdmin, ctx: Ctx, session: Session) -> dict[str, Any]:
    """Accounts and workspaces (the whole instance), and this node's connected sockets, loaded documents and
    document updates in the last minute (per node: add up the nodes, or use the Prometheus metrics)."""
    return await admin.statistics(session, ctx.sync, ctx.updates)


@router.get("/audit", responses=_ERRORS)
async def instance_audit(
    _admin: InstanceAdmin,
    session: Session,
    action: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    actor_id: Annotated[str | None, Query(max_length=36, pattern=NO_NUL)] = None,
    workspace_id: Annotated[str | None, Query(max_length=36, pattern=NO_NUL)] = None,
    target_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{items, next_cursor}``: the whole audit log, newest first, optionally of one action, actor, target (what
    happened to an account, invite, token or webhook) or workspace (deleted workspaces' entries included).
    Read-only: no route changes or deletes an entry."""
    q = audit.query(workspace_id=workspace_id, action=action, actor_id=actor_id, target_id=target_id)
    return await keyset_page(session, q, AuditEntry.seq, cursor, limit, audit.entry_json)
