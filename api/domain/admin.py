"""Instance administration (docs/admin.md): who is an instance admin, disabling and enabling accounts, the
lists of accounts and workspaces, and the instance's statistics.

Instance admins are made on the command line only (``plait admin grant EMAIL``): no account becomes one by
registering first, and no API call makes one, so a stolen admin session cannot mint more admins."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import sessions
from api.domain.audit import COMMAND_LINE, record_action
from api.domain.errors import Refused, not_found
from persistence.db import Database
from persistence.models import (
    DocSnapshot,
    Document,
    DocUpdate,
    Membership,
    PersonalAccessToken,
    User,
    Workspace,
    is_uuid,
    iso_z,
    utcnow,
)
from sync_server import close_codes
from sync_server.events import Committed

if TYPE_CHECKING:
    from sync_server.service import SyncService

MAX_CURSOR_CHARS = 1200
MAX_QUERY_CHARS = 100


# ---- the command line ------------------------------------------------------------------------------------


async def set_admin(db: Database, email: str, admin: bool) -> User | None:
    """Grant (or revoke) instance administration to the account with ``email``; None when there is none. Recorded
    in the audit log as the command line's action."""
    async with db.session() as session:
        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            return None
        user_id = user.id
        user.is_admin = admin
        await session.commit()
        await record_action(
            session,
            "admin.granted" if admin else "admin.revoked",
            target=("user", user_id),
            details={"email": user.email, "via": "command line"},
            actor=COMMAND_LINE,
        )
        return user


async def admins(db: Database) -> list[str]:
    """The emails of the instance admins (``plait admin list``)."""
    async with db.session() as session:
        return list((await session.scalars(select(User.email).where(User.is_admin).order_by(User.email))).all())


# ---- disabling -------------------------------------------------------------------------------------------


async def set_disabled(
    session: AsyncSession, sync: SyncService, *, actor_id: str, user_id: str, disabled: bool
) -> User:
    """Disable an account: it cannot sign in, refresh, or use a personal access token; its sessions end and its
    sync sockets and notification streams close (4401) at once on every node. Enabling lets it sign in again
    (its ended sessions stay ended). An admin cannot disable their own account (409): there would be nobody
    left to enable it but the command line."""
    user = await session.get(User, user_id) if is_uuid(user_id) else None
    if user is None:
        raise not_found("User")
    if disabled and user_id == actor_id:
        raise Refused(409, "You cannot disable your own account")
    ended: set[str] = set()
    if disabled:
        if user.disabled_at is None:
            user.disabled_at = utcnow()
        ended = await sessions.revoke(session, user_id, reason="disabled")
        ended |= set(
            (await session.scalars(select(PersonalAccessToken.id).where(PersonalAccessToken.user_id == user_id))).all()
        )
    else:
        user.disabled_at = None
    await session.commit()
    if disabled:
        # Sockets by account (whatever opened them), streams by session and token, on every node.
        await sync.close_user(user_id, close_codes.ACCOUNT_DISABLED)
        sync.end_sessions(ended, close_codes.ACCOUNT_DISABLED)
    await record_action(
        session,
        "admin.user_disabled" if disabled else "admin.user_enabled",
        target=("user", user_id),
        details={"email": user.email},
    )
    return user


# ---- lists -----------------------------------------------------------------------------------------------


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[str] | None:
    """An opaque cursor back to its key (strings), or 422 for one this server did not make."""
    if cursor is None or cursor == "":
        return None
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if (
            not isinstance(key, list)
            or len(key) != arity
            or not all(isinstance(k, str) and "\x00" not in k for k in key)
        ):
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Refused(422, "Invalid cursor") from None
    return key


def _like(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def user_json(user: User, workspaces: int) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "created_at": iso_z(user.created_at),
        "is_admin": bool(user.is_admin),
        "disabled_at": iso_z(user.disabled_at) if user.disabled_at else None,
        "workspaces": workspaces,
    }


async def list_users(
    session: AsyncSession, *, q: str | None, disabled: bool | None, cursor: str | None, limit: int
) -> dict[str, Any]:
    """``{items, next_cursor}``: accounts by email; ``q`` matches part of the email or the display name."""
    memberships = select(func.count()).select_from(Membership).where(Membership.user_id == User.id).scalar_subquery()
    query: Select[User, int] = select(User, memberships)
    if q:
        pattern = _like(q)
        query = query.where(
            or_(
                func.lower(User.email).like(pattern, escape="\\"),
                func.lower(User.display_name).like(pattern, escape="\\"),
            )
        )
    if disabled is not None:
        query = query.where(User.disabled_at.is_not(None) if disabled else User.disabled_at.is_(None))
    after = decode_cursor(cursor, 1)
    if after is not None:
        query = query.where(User.email > after[0])
    rows = (await session.execute(query.order_by(User.email).limit(limit + 1))).all()
    page = rows[:limit]
    return {
        "items": [user_json(u, int(n or 0)) for u, n in page],
        "next_cursor": encode_cursor(page[-1][0].email) if len(rows) > limit else None,
    }


async def list_workspaces(session: AsyncSession, *, q: str | None, cursor: str | None, limit: int) -> dict[str, Any]:
    """``{items, next_cursor}``: workspaces by name, each with its member count, stored document size (snapshot
    as the size quota counts it, plus the log not folded into it) and last activity (its last document write)."""
    members = (
        select(func.count()).select_from(Membership).where(Membership.workspace_id == Workspace.id).scalar_subquery()
    )
    snapshot = (
        select(func.coalesce(func.sum(func.coalesce(DocSnapshot.raw_bytes, func.length(DocSnapshot.data))), 0))
        .where(DocSnapshot.workspace_id == Workspace.id)
        .scalar_subquery()
    )
    log = (
        select(func.coalesce(func.sum(func.length(DocUpdate.data)), 0))
        .where(DocUpdate.workspace_id == Workspace.id)
        .scalar_subquery()
    )
    query = select(Workspace, members, snapshot + log, Document.updated_at).outerjoin(
        Document, Document.workspace_id == Workspace.id
    )
    if q:
        query = query.where(func.lower(Workspace.name).like(_like(q), escape="\\"))
    after = decode_cursor(cursor, 2)
    if after is not None:
        query = query.where(or_(Workspace.name > after[0], and_(Workspace.name == after[0], Workspace.id > after[1])))
    rows = (await session.execute(query.order_by(Workspace.name, Workspace.id).limit(limit + 1))).all()
    page = rows[:limit]
    items = [
        {
            "id": ws.id,
            "name": ws.name,
            "created_at": iso_z(ws.created_at),
            "members": int(n or 0),
            "document_bytes": int(size or 0),
            "last_activity_at": iso_z(last if last is not None else ws.created_at),
        }
        for ws, n, size, last in page
    ]
    last_ws = page[-1][0] if page else None
    return {
        "items": items,
        "next_cursor": encode_cursor(last_ws.name, last_ws.id) if last_ws is not None and len(rows) > limit else None,
    }


# ---- statistics ------------------------------------------------------------------------------------------


class UpdateRate:
    """Document updates this node committed in the last minute, counted in one-second buckets (a listener of
    the sync service's commits: sockets and REST alike). Each node counts its own; the cluster's rate is the sum
    of every node's (Prometheus: ``rate(plait_updates_in_total[1m])``)."""

    WINDOW = 60

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first

    def on_durable(self, commits: Sequence[Committed]) -> None:
        now = int(time.monotonic())
        if self._buckets and self._buckets[-1][0] == now:
            self._buckets[-1][1] += len(commits)
        else:
            self._buckets.append([now, len(commits)])
        self._expire(now)

    def _expire(self, now: int) -> None:
        while self._buckets and self._buckets[0][0] <= now - self.WINDOW:
            self._buckets.popleft()

    def last_minute(self) -> int:
        self._expire(int(time.monotonic()))
        return sum(count for _, count in self._buckets)


async def statistics(session: AsyncSession, sync: SyncService, rate: UpdateRate) -> dict[str, Any]:
    """Counts from the database (the whole instance) and from this node (sockets, rooms, update rate)."""
    users, admins_, disabled = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(User.is_admin),
                func.count().filter(User.disabled_at.is_not(None)),
            ).select_from(User)
        )
    ).one()
    workspaces = await session.scalar(select(func.count()).select_from(Workspace))
    rooms = sync.rooms
    return {
        "users": int(users),
        "admins": int(admins_),
        "disabled_users": int(disabled),
        "workspaces": int(workspaces or 0),
        "node": {
            "id": sync.node_id,
            "connected_sockets": sum(len(room.conns) for room in rooms.values()),
            "loaded_documents": len(rooms),
            "updates_last_minute": rate.last_minute(),
        },
    }


async def membership_count(session: AsyncSession, user_id: str) -> int:
    return int(
        await session.scalar(select(func.count()).select_from(Membership).where(Membership.user_id == user_id)) or 0
    )
