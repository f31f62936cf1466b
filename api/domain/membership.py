"""Membership rules: change a role, remove a member (or leave), accept an invite, delete a workspace.

Each function runs its rule in the caller's session and commits, then applies the change's effects once:
open sockets learn the new role (``sync.membership_changed``: a viewer stops writing, a removed member is
closed), every member's open client is told the member list changed (``hub.members_changed``: a ``members``
event on their notification stream, on every node), owners and admins are notified of a newcomer, and webhooks
get ``member.joined`` / ``member.left``.
The effects come after the commit, so nobody hears of a change that could still roll back; none of them can
fail the request (the change is committed already).

The last owner always stays. Membership changes of one workspace are serialized by a lock on its row, so
two owners cannot demote each other at once and the owner count read under it holds until commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from api.domain.errors import Refused, not_found
from api.domain.notifications.worker import notify_member_joined
from api.domain.webhooks import service as webhooks
from api.permissions import allowed, role_at_least
from persistence.models import Invite, Membership, User, Workspace, as_utc, is_uuid, utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from api.domain.notifications.hub import NotificationHub
    from api.domain.webhooks.service import WebhookService
    from persistence.db import Database
    from sync_server.service import SyncService

# A check that must see the transaction that adds a member (a count quota): raising refuses, nothing is written.
Check = Callable[["AsyncSession", str], Awaitable[None]]


class Node(Protocol):
    """What a membership change needs of the node for its effects; the application context satisfies it."""

    @property
    def db(self) -> Database: ...
    @property
    def sync(self) -> SyncService: ...
    @property
    def hub(self) -> NotificationHub: ...
    @property
    def webhooks(self) -> WebhookService: ...


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as answered: plain values, read before the transaction ends (an async session cannot
    lazy-load what a commit or rollback expired)."""

    user_id: str
    display_name: str
    email: str
    role: str
    joined_at: datetime

    @classmethod
    def of(cls, membership: Membership, user: User) -> MemberInfo:
        return cls(user.id, user.display_name, user.email, membership.role, membership.joined_at)


@dataclass(frozen=True, slots=True)
class Joined:
    """Where an accepted invite leads: the workspace and the caller's role in it (new or kept)."""

    workspace_id: str
    role: str


# ---- reads and locks inside a membership transaction ---------------------------------------------------


async def lock_workspace(session: AsyncSession, workspace_id: str) -> None:
    """Serialize membership changes per workspace, so two owners cannot demote each other at once.

    A no-op UPDATE takes the workspace row lock on PostgreSQL and the write lock on SQLite; the owner
    count read after it is therefore current until commit.
    """
    await session.execute(update(Workspace).where(Workspace.id == workspace_id).values(name=Workspace.name))


async def locked_role(session: AsyncSession, workspace_id: str, user_id: str) -> str:
    """The caller's role re-read under the lock: a concurrent change may just have demoted or removed them."""
    await lock_workspace(session, workspace_id)
    role = await session.scalar(
        select(Membership.role).where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
    )
    if role is None:
        raise not_found()
    return role


async def load_target(session: AsyncSession, workspace_id: str, user_id: str) -> tuple[Membership, User]:
    if not is_uuid(user_id):
        raise not_found("Member")
    row = (
        await session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        raise not_found("Member")
    return row[0], row[1]


async def owner_count(session: AsyncSession, workspace_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.workspace_id == workspace_id, Membership.role == "owner")
    )
    return int(count or 0)


async def revoke_invites_beyond(session: AsyncSession, workspace_id: str, user_id: str, role: str | None) -> None:
    """Revoke the invites ``user_id`` created in the workspace that their new role (None: no longer a member)
    could not create: an invite never outlives its creator's authority. Runs in the caller's transaction, so
    the change of role and the revocation commit together. Accepting also re-checks the creator's role
    (:func:`creator_may_still_grant`), which covers ways of losing it that do not pass here (a deleted
    account)."""
    if role is not None and allowed(role, "invites.manage"):
        return  # every invite role (admin and below) is still theirs to give
    await session.execute(
        update(Invite)
        .where(Invite.workspace_id == workspace_id, Invite.created_by == user_id, Invite.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


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


# ---- effects after the commit --------------------------------------------------------------------------


async def announce(node: Node, workspace_id: str, *also: str) -> None:
    """Tell the open clients of every member of the workspace (and of ``also``: someone who just left) that its
    member list changed, so they re-read it (and their own role) now."""
    async with node.db.session() as s:
        members = set(await s.scalars(select(Membership.user_id).where(Membership.workspace_id == workspace_id)))
    node.hub.members_changed(workspace_id, members | set(also))


async def announce_user(node: Node, user_id: str) -> None:
    """A member's own details changed (their display name): every workspace they are in hears of it. For the
    route that edits an account's profile to call after its commit."""
    async with node.db.session() as s:
        workspaces = list(await s.scalars(select(Membership.workspace_id).where(Membership.user_id == user_id)))
    for workspace_id in workspaces:
        await announce(node, workspace_id)


async def _joined(node: Node, workspace_id: str, user_id: str, role: str) -> None:
    await node.sync.membership_changed(workspace_id, user_id, role)
    await announce(node, workspace_id)
    await notify_member_joined(node.db, node.hub, workspace_id, user_id)
    await webhooks.member_event(node.webhooks, workspace_id, "member.joined", user_id, role, actor_id=user_id)


async def _left(node: Node, workspace_id: str, user_id: str, role: str, actor_id: str) -> None:
    await node.sync.membership_changed(workspace_id, user_id, None)
    await announce(node, workspace_id, user_id)
    await webhooks.member_event(node.webhooks, workspace_id, "member.left", user_id, role, actor_id=actor_id)


# ---- the rules -----------------------------------------------------------------------------------------


async def change_role(
    node: Node, session: AsyncSession, *, workspace_id: str, actor_id: str, user_id: str, role: str
) -> MemberInfo:
    """Admins manage admins and below; only owners touch owners or make new ones; the last owner stays one."""
    actor_role = await locked_role(session, workspace_id, actor_id)
    if not allowed(actor_role, "members.manage"):
        raise Refused(403, f"Your role ({actor_role}) may not do this (members.manage)")
    target, target_user = await load_target(session, workspace_id, user_id)
    if actor_role != "owner" and (target.role == "owner" or role == "owner"):
        raise Refused(403, "Only owners can change an owner's role or make someone an owner")
    if target.role == role:
        unchanged = MemberInfo.of(target, target_user)
        await session.rollback()  # releases the lock; nothing to write and no one to tell
        return unchanged
    if target.role == "owner" and await owner_count(session, workspace_id) <= 1:
        raise Refused(409, "The last owner cannot be demoted; make someone else an owner first")
    target.role = role
    await revoke_invites_beyond(session, workspace_id, user_id, role)
    info = MemberInfo.of(target, target_user)  # read before the commit expires them
    await session.commit()
    await node.sync.membership_changed(workspace_id, user_id, role)
    await announce(node, workspace_id)
    return info


async def remove_member(node: Node, session: AsyncSession, *, workspace_id: str, actor_id: str, user_id: str) -> None:
    """Admins remove others (owners only by owners); anyone may leave, except the last owner."""
    leaving = user_id == actor_id
    actor_role = await locked_role(session, workspace_id, actor_id)
    if not leaving and not allowed(actor_role, "members.manage"):
        raise Refused(403, f"Your role ({actor_role}) may not remove other members")
    target, _ = await load_target(session, workspace_id, user_id)
    role = target.role
    if not leaving and role == "owner" and actor_role != "owner":
        raise Refused(403, "Only owners can remove an owner")
    if role == "owner" and await owner_count(session, workspace_id) <= 1:
        raise Refused(409, "The last owner cannot be removed; make someone else an owner first")
    await session.delete(target)
    await revoke_invites_beyond(session, workspace_id, user_id, None)
    await session.commit()
    await _left(node, workspace_id, user_id, role, actor_id)


async def accept_invite(node: Node, session: AsyncSession, *, token_hash: str, user_id: str, check: Check) -> Joined:
    """Join the invite's workspace. Existing members keep their role and use nothing.

    ``check(session, workspace_id)`` runs in the transaction that adds the member, before the use is counted
    (the member quota: it locks the workspace's row and counts, so parallel accepts count one after the
    other). The use is counted by one conditional UPDATE (``uses < max_uses``), so concurrent accepts can never
    push an invite past its limit on either database.
    """
    invite = await session.scalar(select(Invite).where(Invite.token_hash == token_hash))
    if invite is None or invite.revoked_at is not None:
        raise not_found("Invite")
    # Plain values: a rollback below expires the ORM object, and async sessions cannot lazy-load.
    wid, invite_id, role = invite.workspace_id, invite.id, invite.role
    existing = await session.get(Membership, (wid, user_id))
    if existing is not None:
        return Joined(wid, existing.role)
    if not await creator_may_still_grant(session, invite):
        # Demotions and removals revoke the creator's invites (revoke_invites_beyond); this catches the rest.
        await session.execute(update(Invite).where(Invite.id == invite_id).values(revoked_at=utcnow()))
        await session.commit()
        raise not_found("Invite")
    if as_utc(invite.expires_at) <= utcnow():
        raise Refused(410, "Invite has expired")
    if invite.max_uses is not None and invite.uses >= invite.max_uses:
        raise Refused(410, "Invite has been used up")
    await check(session, wid)
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
        raise Refused(410, "Invite has expired" if expired else "Invite has been used up")
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
        return Joined(wid, existing.role)
    await _joined(node, wid, user_id, role)
    return Joined(wid, role)


async def delete_workspace(node: Node, session: AsyncSession, *, workspace_id: str) -> None:
    """Delete the workspace and everything under it (memberships, invites, document, notifications cascade in
    the database); its members' open sockets are closed. No ``member.left`` webhook is sent: the workspace's
    webhooks are deleted with it."""
    former = list(await session.scalars(select(Membership.user_id).where(Membership.workspace_id == workspace_id)))
    await session.execute(delete(Workspace).where(Workspace.id == workspace_id))
    await session.commit()
    for user_id in former:
        await node.sync.membership_changed(workspace_id, user_id, None)
    node.hub.members_changed(workspace_id, former)
