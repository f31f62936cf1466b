"""Workspace members: list, change a role, remove (or leave). The rules live in ``api/domain/membership.py``."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select

from api.deps import Ctx, Member, Session, require, workspace_member
from api.domain import membership
from api.domain.audit import record_action
from api.schemas import MemberOut, RoleIn
from persistence.models import Membership, User

router = APIRouter(prefix="/api/workspaces/{wid}/members", tags=["members"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace or member"},
    409: {"description": "Would leave the workspace without an owner"},
}


def member_out(member: membership.MemberInfo) -> MemberOut:
    return MemberOut.model_validate(dataclasses.asdict(member))


@router.get("", response_model=list[MemberOut], responses=_ERRORS)
async def list_members(
    session: Session, member: Annotated[Member, Depends(require("members.read"))]
) -> list[MemberOut]:
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == member.workspace.id)
        .order_by(Membership.joined_at, User.id)
    )
    return [member_out(membership.MemberInfo.of(m, u)) for m, u in rows]


@router.patch("/{user_id}", response_model=MemberOut, responses=_ERRORS)
async def change_role(
    user_id: str,
    body: RoleIn,
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("members.manage"))],
) -> MemberOut:
    """Admins manage admins and below; only owners touch owners or make new ones."""
    changed = await membership.change_role(
        ctx, session, workspace_id=member.workspace.id, actor_id=member.user.id, user_id=user_id, role=body.role
    )
    await record_action(
        session,
        "member.role_changed",
        workspace=member.workspace,
        target=("user", user_id),
        details={"role": body.role},
    )
    return member_out(changed)


@router.delete("/{user_id}", status_code=204, responses=_ERRORS)
async def remove_member(
    user_id: str, ctx: Ctx, session: Session, member: Annotated[Member, Depends(workspace_member)]
) -> Response:
    """Admins remove others (owners only by owners); anyone may leave, except the last owner."""
    await membership.remove_member(
        ctx, session, workspace_id=member.workspace.id, actor_id=member.user.id, user_id=user_id
    )
    await record_action(
        session,
        "member.left" if user_id == member.user.id else "member.removed",
        workspace=member.workspace,
        target=("user", user_id),
    )
    return Response(status_code=204)
