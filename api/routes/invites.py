"""Invites: admins create, list and revoke links; any signed-in user accepts one to join."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api import quotas
from api.deps import Ctx, CurrentUser, Member, Session, is_uuid, not_found, require
from api.domain.notifications.worker import notify_member_joined
from api.domain.webhooks import outbox as webhooks
from api.errors import ApiError
from api.permissions import allowed, role_at_least
from api.schemas import AcceptOut, InviteIn, InviteInfo, InviteOut
from api.security import hash_invite_token, new_invite_token
from persistence.models import Invite, Membership, as_utc, utcnow

router = APIRouter(prefix="/api", tags=["invites"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace or invite"},
}


def invite_url(request: Request, public_url: str | None, token: str) -> str:
    base = (public_url or str(request.base_url)).rstrip("/")
    return f"{base}/invite/{token}"


@router.post("/workspaces/{wid}/invites", status_code=201, response_model=InviteOut, responses=_ERRORS)
async def create_invite(
    body: InviteIn,
    request: Request,
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("invites.manage"))],
) -> InviteOut:
    """The token is returned only here; the database keeps its SHA-256."""
    token = new_invite_token()
    ttl = body.expires_in_seconds or ctx.settings.invite_default_ttl_seconds
    invite = Invite(
        workspace_id=member.workspace.id,
        token_hash=hash_invite_token(token),
        role=body.role,
        created_by=member.user.id,
        expires_at=utcnow() + timedelta(seconds=ttl),
        max_uses=body.max_uses,
        uses=0,
    )
    session.add(invite)
    await session.commit()
    return InviteOut.model_validate(
        {
            "id": invite.id,
            "token": token,
            "url": invite_url(request, ctx.settings.public_url, token),
            "role": invite.role,
            "expires_at": invite.expires_at,
            "max_uses": invite.max_uses,
            "uses": invite.uses,
        }
    )


@router.get("/workspaces/{wid}/invites", response_model=list[InviteInfo], responses=_ERRORS)
async def list_invites(
    session: Session, member: Annotated[Member, Depends(require("invites.manage"))]
) -> list[InviteInfo]:
    """Every invite not revoked, newest first, including expired and used-up ones (flagged)."""
    now = utcnow()
    invites = await session.scalars(
        select(Invite)
        .where(Invite.workspace_id == member.workspace.id, Invite.revoked_at.is_(None))
        .order_by(Invite.created_at.desc(), Invite.id)
    )
    return [
        InviteInfo.model_validate(
            {
                "id": i.id,
                "role": i.role,
                "created_at": i.created_at,
                "expires_at": i.expires_at,
                "max_uses": i.max_uses,
                "uses": i.uses,
                "expired": as_utc(i.expires_at) <= now or (i.max_uses is not None and i.uses >= i.max_uses),
            }
        )
        for i in invites
    ]


@router.delete("/workspaces/{wid}/invites/{invite_id}", status_code=204, responses=_ERRORS)
async def revoke_invite(
    invite_id: str, session: Session, member: Annotated[Member, Depends(require("invites.manage"))]
) -> Response:
    """Revoked invites are kept (for the record) but answer 404 when accepted."""
    if not is_uuid(invite_id):
        raise not_found("Invite")
    result = await session.execute(
        update(Invite)
        .where(Invite.id == invite_id, Invite.workspace_id == member.workspace.id, Invite.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise not_found("Invite")
    await session.commit()
    return Response(status_code=204)


async def creator_may_still_grant(session: AsyncSession, invite: Invite) -> bool:
    """Whether the invite's creator is still a member whose role may create it (an invite is only as good as
    its creator's current authority; a deleted creator's invites are void)."""
    if invite.created_by is None:
        return False
    role = await session.scalar(
        select(Membership.role).where(
            Membership.workspace_id == invite.workspace_id, Membership.user_id == invite.created_by
        )
    )
    return role is not None and allowed(role, "invites.manage") and role_at_least(role, invite.role)


@router.post(
    "/invites/{token}/accept",
    response_model=AcceptOut,
    responses={
        401: {"description": "Not authenticated"},
        404: {"description": "Unknown or revoked invite"},
        410: {"description": "Invite expired or used up"},
    },
)
async def accept_invite(token: str, user: CurrentUser, ctx: Ctx, session: Session) -> AcceptOut:
    """Join the invite's workspace. Existing members keep their role and use nothing.

    The use is counted by one conditional UPDATE (``uses < max_uses``), so concurrent accepts can never
    push an invite past its limit on either database.
    """
    invite = await session.scalar(select(Invite).where(Invite.token_hash == hash_invite_token(token)))
    if invite is None or invite.revoked_at is not None:
        raise not_found("Invite")
    # Plain values: a rollback below expires the ORM object, and async sessions cannot lazy-load.
    wid, invite_id, role, user_id = invite.workspace_id, invite.id, invite.role, user.id
    existing = await session.get(Membership, (wid, user_id))
    if existing is not None:
        return AcceptOut.model_validate({"workspace_id": wid, "role": existing.role})
    if not await creator_may_still_grant(session, invite):
        # Demotions and removals revoke the creator's invites (api/routes/members.py); this catches the rest.
        await session.execute(update(Invite).where(Invite.id == invite_id).values(revoked_at=utcnow()))
        await session.commit()
        raise not_found("Invite")
    if as_utc(invite.expires_at) <= utcnow():
        raise ApiError(410, "Invite has expired")
    if invite.max_uses is not None and invite.uses >= invite.max_uses:
        raise ApiError(410, "Invite has been used up")
    await quotas.lock_workspace(session, wid)  # parallel accepts count one after the other
    await quotas.check_member_count(session, ctx.settings, wid)
    claimed = await session.execute(
        update(Invite)
        .where(
            Invite.id == invite_id,
            Invite.revoked_at.is_(None),
            Invite.expires_at > utcnow(),
            or_(Invite.max_uses.is_(None), Invite.uses < Invite.max_uses),
        )
        .values(uses=Invite.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        current = await session.get(Invite, invite_id, populate_existing=True)
        if current is None or current.revoked_at is not None:
            raise not_found("Invite")
        expired = as_utc(current.expires_at) <= utcnow()
        raise ApiError(410, "Invite has expired" if expired else "Invite has been used up")
    session.add(Membership(workspace_id=wid, user_id=user_id, role=role))
    try:
        await session.commit()
    except IntegrityError:
        # The same user accepted twice at once (their other request won and used the invite), or the
        # workspace was deleted meanwhile; the rollback also returns this request's use.
        await session.rollback()
        existing = await session.get(Membership, (wid, user_id), populate_existing=True)
        if existing is None:
            raise not_found("Invite") from None
        return AcceptOut.model_validate({"workspace_id": wid, "role": existing.role})
    await ctx.sync.membership_changed(wid, user_id, role)
    await notify_member_joined(ctx.db, ctx.hub, wid, user_id)
    await webhooks.member_event(ctx.webhooks, wid, "member.joined", user_id, role, actor_id=user_id)
    return AcceptOut.model_validate({"workspace_id": wid, "role": role})
