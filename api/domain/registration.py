"""Who may register (``PLAIT_REGISTRATION``: open, invite-only, closed), and joining a workspace by registering
with its invite (docs/admin.md#registration)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import quotas
from api.domain import membership
from api.domain.audit import Actor, record_action
from api.domain.errors import Refused
from api.security import hash_invite_token
from persistence.models import Invite, User, as_utc, utcnow

if TYPE_CHECKING:
    from api.context import AppContext

CLOSED = "Registration is closed on this server; ask an administrator for an account"
NEEDS_INVITE = "Registration on this server needs an invite: open the invite link you were sent"
BAD_INVITE = "This invite cannot be used to register: it is unknown, revoked, expired or used up"


async def usable_invite(session: AsyncSession, token: str) -> bool:
    """Whether an invite could still be accepted (known, not revoked, not expired, not used up). Its use is
    counted when the new account accepts it (``join_on_registration``)."""
    invite = await session.scalar(select(Invite).where(Invite.token_hash == hash_invite_token(token)))
    return (
        invite is not None
        and invite.revoked_at is None
        and as_utc(invite.expires_at) > utcnow()
        and (invite.max_uses is None or invite.uses < invite.max_uses)
    )


async def registration_allowed(policy: str, session: AsyncSession, invite_token: str | None) -> None:
    """403 when the policy refuses this registration: always when closed; without a usable invite when
    invite-only. An invite token sent under any policy must be usable (it is accepted for the new account)."""
    if policy == "closed":
        raise Refused(403, CLOSED)
    if invite_token is None:
        if policy == "invite-only":
            raise Refused(403, NEEDS_INVITE)
        return
    usable = await usable_invite(session, invite_token)
    await session.commit()  # no transaction held open while the password is hashed
    if not usable:
        raise Refused(403, BAD_INVITE)


async def join_on_registration(node: AppContext, session: AsyncSession, user: User, token: str, address: str) -> None:
    """The new account accepts the invite it registered with (the use counted, the member quota checked). When
    the invite went meanwhile (used up by someone else, revoked), the account is removed again and the
    registration refused: under invite-only no account exists without the invite that let it in."""

    user_id, email = user.id, user.email  # plain values: a rollback in the accept expires the row

    async def within_quota(session: AsyncSession, wid: str) -> None:
        await quotas.lock_workspace(session, wid)
        await quotas.check_member_count(session, node.settings, wid)

    try:
        joined = await membership.accept_invite(
            node, session, token_hash=hash_invite_token(token), user_id=user_id, check=within_quota
        )
    except Refused:
        await session.rollback()
        await session.delete(await session.merge(user))
        await session.commit()
        raise Refused(403, BAD_INVITE) from None
    await record_action(
        session,
        "member.joined",
        workspace=joined.workspace_id,
        target=("user", user_id),
        details={"role": joined.role, "via": "registration"},
        actor=Actor(user_id, email, address[:64]),
    )
