"""Invites: admins create, list and revoke links; any signed-in user accepts one to join."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, EmailStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api import quotas
from api.deps import Ctx, CurrentUser, Member, Session, require
from api.domain import membership
from api.domain.audit import record_action
from api.domain.errors import not_found
from api.schemas import AcceptOut, InviteIn, InviteInfo, InviteOut, Timestamp
from api.security import hash_invite_token, new_invite_token
from persistence.models import Invite, User, Workspace, as_utc, is_uuid, iso_z, utcnow

router = APIRouter(prefix="/api", tags=["invites"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace or invite"},
}


class InviteByMailIn(InviteIn):
    """An invite, optionally mailed to ``email`` (when an SMTP server is configured)."""

    email: EmailStr | None = None


class InviteMailedOut(InviteOut):
    mailed: bool | None = None  # only with ``email``: whether the link was queued for e-mail there


def invite_url(request: Request, public_url: str | None, token: str) -> str:
    base = (public_url or str(request.base_url)).rstrip("/")
    return f"{base}/invite/{token}"


@router.post(
    "/workspaces/{wid}/invites",
    status_code=201,
    response_model=InviteMailedOut,
    response_model_exclude_unset=True,  # ``mailed`` only when an address was given
    responses={**_ERRORS, 429: {"description": "Too many invite e-mails from this account"}},
)
async def create_invite(
    body: InviteByMailIn,
    request: Request,
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("invites.manage"))],
) -> InviteOut:
    """The token is returned only here; the database keeps its SHA-256. With ``email`` (and an SMTP server
    configured) the link is also mailed there, with the workspace's name and the inviter's."""
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
    url = invite_url(request, ctx.settings.public_url, token)
    mailed = body.email is not None and ctx.mail.queue_invite(
        session,
        inviter_id=member.user.id,
        inviter=member.user.display_name,
        to=body.email,
        workspace=member.workspace.name,
        role=body.role,
        link=url,
        expires=iso_z(invite.expires_at),
    )
    await session.commit()
    if mailed:
        ctx.mail.outbox.wake()
    await record_action(
        session,
        "invite.created",
        workspace=member.workspace,
        target=invite,
        details={"role": invite.role, "max_uses": invite.max_uses},
    )
    return InviteMailedOut.model_validate(
        {
            **({"mailed": mailed} if body.email is not None else {}),
            "id": invite.id,
            "token": token,
            "url": url,
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
    await record_action(session, "invite.revoked", workspace=member.workspace, target=("invite", invite_id))
    return Response(status_code=204)


class InvitePreview(BaseModel):
    """What an invite link's holder may see before signing in: where it leads and whether it still works."""

    workspace_name: str
    inviter: str | None  # the display name of who made the link (null: account deleted)
    role: str
    expires_at: Timestamp
    status: Literal["valid", "expired", "used_up"]


@router.get(
    "/invites/{token}",
    response_model=InvitePreview,
    responses={404: {"description": "Unknown or revoked invite"}},
)
async def preview_invite(token: str, session: Session) -> InvitePreview:
    """Public (no sign-in): the token is the secret, and without it nothing is revealed (404). The invite page
    shows the workspace and the inviter, and says a dead link is dead before asking a stranger to sign up."""
    row = (
        await session.execute(
            select(Invite, Workspace.name, User.display_name)
            .join(Workspace, Workspace.id == Invite.workspace_id)
            .outerjoin(User, User.id == Invite.created_by)
            .where(Invite.token_hash == hash_invite_token(token), Invite.revoked_at.is_(None))
        )
    ).one_or_none()
    if row is None:
        raise not_found("Invite")
    invite, workspace_name, inviter = row
    status = (
        "expired"
        if as_utc(invite.expires_at) <= utcnow()
        else "used_up"
        if invite.max_uses is not None and invite.uses >= invite.max_uses
        else "valid"
    )
    return InvitePreview.model_validate(
        {
            "workspace_name": workspace_name,
            "inviter": inviter,
            "role": invite.role,
            "expires_at": invite.expires_at,
            "status": status,
        }
    )


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

    async def within_quota(session: AsyncSession, wid: str) -> None:
        await quotas.lock_workspace(session, wid)  # parallel accepts count one after the other
        await quotas.check_member_count(session, ctx.settings, wid)

    joined = await membership.accept_invite(
        ctx, session, token_hash=hash_invite_token(token), user_id=user.id, check=within_quota
    )
    await record_action(
        session,
        "member.joined",
        workspace=joined.workspace_id,
        target=user,
        details={"role": joined.role, "via": "invite"},
    )
    return AcceptOut.model_validate({"workspace_id": joined.workspace_id, "role": joined.role})
