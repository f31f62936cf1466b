"""Workspaces: create, list the caller's, read, rename, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select

from api import quotas
from api.deps import Ctx, CurrentUser, Member, Session, require
from api.domain import membership
from api.domain.audit import record_action
from api.schemas import WorkspaceIn, WorkspaceOut
from persistence.models import Document, Membership, Workspace

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace, or not a member"},
}


def workspace_out(workspace: Workspace, role: str) -> WorkspaceOut:
    return WorkspaceOut.model_validate(
        {"id": workspace.id, "name": workspace.name, "role": role, "created_at": workspace.created_at}
    )


@router.post(
    "",
    status_code=201,
    response_model=WorkspaceOut,
    responses={
        **_ERRORS,
        413: {"description": "Quota exceeded (X-Plait-Quota: workspaces or user_bytes)"},
        429: {"description": "Quota exceeded (X-Plait-Quota: rest_writes), with Retry-After"},
    },
)
async def create_workspace(body: WorkspaceIn, ctx: Ctx, user: CurrentUser, session: Session) -> WorkspaceOut:
    """The creator becomes its owner; its (empty) Yjs document head is created in the same transaction.

    413 ``workspaces`` when the caller owns ``PLAIT_QUOTA_MAX_WORKSPACES_PER_USER`` workspaces already,
    ``user_bytes`` when those store ``PLAIT_QUOTA_MAX_USER_BYTES``; 429 ``rest_writes`` past the write rate."""
    await quotas.lock_owner(session, user.id)  # parallel creations count one after the other
    await quotas.check_new_workspace(session, ctx.settings, user.id)
    workspace = Workspace(name=body.name, created_by=user.id)
    session.add(workspace)
    await session.flush()
    session.add_all(
        [Membership(workspace_id=workspace.id, user_id=user.id, role="owner"), Document(workspace_id=workspace.id)]
    )
    await session.commit()
    await record_action(
        session,
        "workspace.created",
        workspace=workspace,
        target=workspace,
        details={"name": workspace.name},
    )
    return workspace_out(workspace, "owner")


@router.get("", response_model=list[WorkspaceOut], responses=_ERRORS)
async def list_workspaces(user: CurrentUser, session: Session) -> list[WorkspaceOut]:
    rows = await session.execute(
        select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user.id)
        .order_by(Workspace.created_at, Workspace.id)
    )
    return [workspace_out(ws, role) for ws, role in rows]


@router.get("/{wid}", response_model=WorkspaceOut, responses=_ERRORS)
async def get_workspace(member: Annotated[Member, Depends(require("workspace.read"))]) -> WorkspaceOut:
    return workspace_out(member.workspace, member.role)


@router.patch("/{wid}", response_model=WorkspaceOut, responses=_ERRORS)
async def rename_workspace(
    body: WorkspaceIn, session: Session, member: Annotated[Member, Depends(require("workspace.rename"))]
) -> WorkspaceOut:
    member.workspace.name = body.name
    await session.commit()
    await record_action(
        session,
        "workspace.renamed",
        workspace=member.workspace,
        target=member.workspace,
        details={"name": body.name},
    )
    return workspace_out(member.workspace, member.role)


@router.delete("/{wid}", status_code=204, responses=_ERRORS)
async def delete_workspace(
    ctx: Ctx, session: Session, member: Annotated[Member, Depends(require("workspace.delete"))]
) -> Response:
    """Deletes everything under it (memberships, invites, document, notifications cascade in the database)."""
    await membership.delete_workspace(ctx, session, workspace_id=member.workspace.id)
    await record_action(
        session,
        "workspace.deleted",
        workspace=member.workspace,
        target=member.workspace,
        details={"name": member.workspace.name},
    )
    return Response(status_code=204)
