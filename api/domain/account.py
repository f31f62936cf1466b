"""Deleting an account and exporting its data (docs/accounts.md).

Deletion is refused (409) while the account is the last owner of a workspace that has other members: that
workspace would be left without anyone who can manage it. Otherwise, in one transaction: its memberships go
(a workspace where it was the only member is deleted with everything in it), the invites it created are
revoked, its sessions are revoked and its personal access tokens, reset links, notifications, preferences and
queued e-mail are deleted. The ``users`` row stays as a tombstone — display name "Deleted user", no e-mail
address, no usable password — so tasks, comments, activity and versions it authored keep pointing at an id
the API shows as "Deleted user". After the commit its open sockets and streams close (4401) on every node.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from api.domain import membership, sessions, tokens
from api.domain.errors import Refused
from api.domain.notifications.views import notification_json
from api.domain.webhooks import service as webhooks
from persistence.models import (
    AuthSession,
    DeletedAccount,
    Invite,
    MailMessage,
    MailPreference,
    Membership,
    Notification,
    NotificationPreference,
    PasswordResetToken,
    PersonalAccessToken,
    User,
    Workspace,
    iso_z,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from api.domain.membership import Node

log = logging.getLogger("plait.auth")

DELETED_NAME = "Deleted user"
UNUSABLE_HASH = "!deleted"  # not an argon2 hash: verify_password is False for every password
EXPORT_MAX_NOTIFICATIONS = 10_000


def tombstone_email(user_id: str) -> str:
    """A unique placeholder that no one can receive mail at or register (RFC 2606 reserves ``.invalid``)."""
    return f"deleted-{user_id}@deleted.invalid"


async def delete_account(node: Node, session: AsyncSession, user_id: str) -> set[str]:
    """Delete the account (committed) and apply the effects: its sockets and streams close (4401) on every
    node, its workspaces hear it left. Returns the session and token ids that ended."""
    rows = (
        await session.execute(
            select(Membership.workspace_id, Membership.role, Workspace.name)
            .join(Workspace, Workspace.id == Membership.workspace_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.workspace_id)
        )
    ).all()
    left: list[tuple[str, str]] = []  # (workspace, role) memberships that go
    alone: list[str] = []  # workspaces where the account is the only member
    blocking: list[str] = []
    for wid, role, name in rows:
        await membership.lock_workspace(session, wid)  # in id order: two deletions cannot deadlock
        members = int(
            await session.scalar(select(func.count()).select_from(Membership).where(Membership.workspace_id == wid))
            or 0
        )
        if members <= 1:
            alone.append(wid)
        elif role == "owner" and await membership.owner_count(session, wid) <= 1:
            blocking.append(f"\u201c{name}\u201d ({wid})")
        else:
            left.append((wid, role))
    if blocking:
        raise Refused(
            409,
            "You are the last owner of "
            + ", ".join(blocking)
            + ", which has other members: make someone else an owner (or remove the other members) first",
        )
    await session.execute(
        update(Invite)
        .where(Invite.created_by == user_id, Invite.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if alone:
        await session.execute(delete(Workspace).where(Workspace.id.in_(alone)))
    await session.execute(delete(Membership).where(Membership.user_id == user_id))
    ended = await sessions.revoke(session, user_id, reason="account_deleted")
    pats = set(
        (await session.scalars(select(PersonalAccessToken.id).where(PersonalAccessToken.user_id == user_id))).all()
    )
    email = await session.scalar(select(User.email).where(User.id == user_id))
    for table in (PersonalAccessToken, PasswordResetToken, Notification, NotificationPreference, MailPreference):
        await session.execute(delete(table).where(table.user_id == user_id))
    if email is not None:
        await session.execute(
            delete(MailMessage).where(MailMessage.to_address == email, MailMessage.status == "pending")
        )
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(email=tombstone_email(user_id), display_name=DELETED_NAME, password_hash=UNUSABLE_HASH)
    )
    session.add(DeletedAccount(user_id=user_id, deleted_at=utcnow()))
    await session.commit()
    log.info("account %s deleted (left %d workspaces, deleted %d)", user_id, len(left), len(alone))
    # Sessions first: the sockets close with 4401 (signed out), not 4403 (removed from one workspace).
    node.sync.end_sessions(ended | pats)
    await node.sync.close_user(user_id)
    for wid, role in left:
        await node.sync.membership_changed(wid, user_id, None)
        await webhooks.member_event(node.webhooks, wid, "member.left", user_id, role, actor_id=user_id)
    for wid in alone:
        await node.sync.membership_changed(wid, user_id, None)
    return ended | pats


async def export_account(session: AsyncSession, user: User) -> dict[str, Any]:
    """Everything Plait keeps about the account itself, as JSON (the workspaces' content is theirs: export a
    workspace for that). Notifications: the newest ``EXPORT_MAX_NOTIFICATIONS``."""
    memberships = (
        await session.execute(
            select(Membership, Workspace)
            .join(Workspace, Workspace.id == Membership.workspace_id)
            .where(Membership.user_id == user.id)
            .order_by(Membership.joined_at, Membership.workspace_id)
        )
    ).all()
    notes = (
        await session.execute(
            select(Notification, User)
            .outerjoin(User, User.id == Notification.actor_id)
            .where(Notification.user_id == user.id)
            .order_by(Notification.seq.desc())
            .limit(EXPORT_MAX_NOTIFICATIONS)
        )
    ).all()
    prefs = await session.execute(
        select(NotificationPreference.type, NotificationPreference.enabled).where(
            NotificationPreference.user_id == user.id
        )
    )
    mail = await session.get(MailPreference, user.id)
    auth = await session.scalars(
        select(AuthSession).where(AuthSession.user_id == user.id).order_by(AuthSession.created_at)
    )
    return {
        "account": {
            "id": user.id,
            "email": user.email,
            "display_name": user.display_name,
            "created_at": iso_z(user.created_at),
        },
        "memberships": [
            {"workspace_id": w.id, "workspace_name": w.name, "role": m.role, "joined_at": iso_z(m.joined_at)}
            for m, w in memberships
        ],
        "notifications": [notification_json(n, actor) for n, actor in notes],
        "notification_preferences": {t: bool(e) for t, e in prefs},
        "email_digest": bool(mail and mail.digest_enabled),
        "sessions": [
            {
                "id": a.id,
                "created_at": iso_z(a.created_at),
                "refreshed_at": iso_z(a.refreshed_at),
                "expires_at": iso_z(a.expires_at),
                "revoked_at": iso_z(a.revoked_at) if a.revoked_at else None,
                "user_agent": a.user_agent,
            }
            for a in auth
        ],
        "tokens": [tokens.token_json(p) for p in await tokens.listed(session, user.id)],
    }
