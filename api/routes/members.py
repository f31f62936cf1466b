"""Workspace members: list, change a role, remove (or leave). The last owner always stays."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Ctx, Member, Session, is_uuid, not_found, require, workspace_member
from api.domain.webhooks import outbox as webhooks
from api.errors import ApiError
from api.permissions import allowed
from api.schemas import MemberOut, RoleIn
from persistence.models import Invite, Membership, User, Workspace, utcnow

router = APIRouter(prefix="/api/workspaces/{wid}/members", tags=["members"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace or member"},
    409: {"description": "Would leave the workspace without an owner"},
}


def member_out(membership: Membership, user: User) -> MemberOut:
    return MemberOut.model_validate(
        {
            "user_id": user.id,
            "display_name": user.display_name,
            "email": user.email,
            "role": membership.role,
            "joined_at": membership.joined_at,
        }
    )


async def lock_workspace(session: AsyncSession, wid: str) -> None:
    """Serialize membership changes per workspace, so two owners cannot demote each other at once.

    A no-op UPDATE takes the workspace row lock on PostgreSQL and the write lock on SQLite; the owner
    count read after it is therefore current until commit.
    """
    await session.execute(update(Workspace).where(Workspace.id == wid).values(name=Workspace.name))


async def locked_role(session: AsyncSession, member: Member) -> str:
    """The caller's role re-read under the lock: a concurrent change may just have demoted or removed them."""
    await lock_workspace(session, member.workspace.id)
    role = await session.scalar(
        select(Membership.role).where(
            Membership.workspace_id == member.workspace.id, Membership.user_id == member.user.id
        )
    )
    if role is None:
        raise not_found()
    return role


async def load_target(session: AsyncSession, wid: str, user_id: str) -> tuple[Membership, User]:
    if not is_uuid(user_id):
        raise not_found("Member")
    row = (
        await session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id == wid, Membership.user_id == user_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        raise not_found("Member")
    return row[0], row[1]


async def revoke_invites_beyond(session: AsyncSession, wid: str, user_id: str, role: str | None) -> None:
    """Revoke the invites ``user_id`` created in ``wid`` that their new role (None: no longer a member) could
    not create: an invite never outlives its creator's authority. Runs in the caller's transaction, so the
    change of role and the revocation commit together. Accepting also re-checks the creator's role
    (api/routes/invites.py), which covers ways of losing it that do not pass here (a deleted account)."""
    if role is not None and allowed(role, "invites.manage"):
        return  # every invite role (admin and below) is still theirs to give
    await session.execute(
        update(Invite)
        .where(Invite.workspace_id == wid, Invite.created_by == user_id, Invite.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def owner_count(session: AsyncSession, wid: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Membership).where(Membership.workspace_id == wid, Membership.role == "owner")
    )
    return int(count or 0)


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
    return [member_out(m, u) for m, u in rows]


@router.patch("/{user_id}", response_model=MemberOut, responses=_ERRORS)
async def change_role(
    user_id: str,
    body: RoleIn,
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("members.manage"))],
) -> MemberOut:
    """Admins manage admins and below; only owners touch owners or make new ones."""
    wid = member.workspace.id
    role = await locked_role(session, member)
    if not allowed(role, "members.manage"):
        raise ApiError(403, f"Your role ({role}) may not do this (members.manage)")
    target, target_user = await load_target(session, wid, user_id)
    if role != "owner" and (target.role == "owner" or body.role == "owner"):
        raise ApiError(403, "Only owners can change an owner's role or make someone an owner")
    if target.role == body.role:
        out = member_out(target, target_user)  # before the rollback: it expires both objects (no lazy IO here)
        await session.rollback()
        return out
    if target.role == "owner" and await owner_count(session, wid) <= 1:
        raise ApiError(409, "The last owner cannot be demoted; make someone else an owner first")
    target.role = body.role
    await revoke_invites_beyond(session, wid, user_id, body.role)
    await session.commit()
    await ctx.sync.membership_changed(wid, user_id, body.role)
    return member_out(target, target_user)


@router.delete("/{user_id}", status_code=204, responses=_ERRORS)
async def remove_member(
    user_id: str, ctx: Ctx, session: Session, member: Annotated[Member, Depends(workspace_member)]
) -> Response:
    """Admins remove others (owners only by owners); anyone may leave, except the last owner."""
    wid = member.workspace.id
    leaving = user_id == member.user.id
    role = await locked_role(session, member)
    if not leaving and not allowed(role, "members.manage"):
        raise ApiError(403, f"Your role ({role}) may not remove other members")
    target, _ = await load_target(session, wid, user_id)
    if not leaving and target.role == "owner" and role != "owner":
        raise ApiError(403, "Only owners can remove an owner")
    if target.role == "owner" and await owner_count(session, wid) <= 1:
        raise ApiError(409, "The last owner cannot be removed; make someone else an owner first")
    await session.delete(target)
    await revoke_invites_beyond(session, wid, user_id, None)
    await session.commit()
    await ctx.sync.membership_changed(wid, user_id, None)
    await webhooks.member_event(ctx.webhooks, wid, "member.left", user_id, target.role, actor_id=member.user.id)
    return Response(status_code=204)
