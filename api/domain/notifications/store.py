"""Storing notifications: only to current members whose preference for the type is on, once per
(recipient, key); and ``member_joined``, whose recipients are read from the memberships."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.notifications.derive import Planned
from persistence.db import Database, insert_ignoring_conflicts
from persistence.models import Membership, Notification, NotificationPreference, User, iso_z, new_id, utcnow
from sync_server import metrics

# The statements of a derivation window are built once, with bind parameters: a statement built per call
# leaves cyclic garbage (a bound clause's ``_cloned_set`` holds the clause itself), and with the server's GC
# thresholds (api/cli.py) that garbage piles up for minutes before a collection frees it.
_DISABLED = select(NotificationPreference.user_id, NotificationPreference.type).where(
    NotificationPreference.user_id.in_(bindparam("ids", expanding=True)), NotificationPreference.enabled.is_(False)
)
_MEMBERS_AMONG = select(Membership.user_id).where(
    Membership.workspace_id == bindparam("wid"), Membership.user_id.in_(bindparam("ids", expanding=True))
)


async def disabled_types(session: AsyncSession, user_ids: Iterable[str]) -> set[tuple[str, str]]:
    """(user_id, type) pairs switched off; everything else is on (the default)."""
    ids = sorted(set(user_ids))
    if not ids:
        return set()
    return {(r[0], r[1]) for r in await session.execute(_DISABLED, {"ids": ids})}


@dataclass(frozen=True)
class Stored:
    """What ``store_notifications`` kept and dropped; ``committed()`` is called once the transaction is."""

    kept: list[Planned]
    suppressed: list[str]  # a reason per dropped notification: "not_member" or "preference"

    def committed(self) -> set[str]:
        """Count the notifications in the metrics; returns their recipients (whose streams to wake)."""
        for p in self.kept:
            metrics.NOTIFICATIONS_SENT.labels(p.type).inc()
        for reason in self.suppressed:
            metrics.NOTIFICATIONS_SUPPRESSED.labels(reason).inc()
        return {p.user_id for p in self.kept}


async def store_notifications(session: AsyncSession, db: Database, planned: list[Planned]) -> Stored:
    """Keep only current members whose preference for the type is on; insert."""
    if not planned:
        return Stored([], [])
    by_ws: dict[str, set[str]] = {}
    for p in planned:
        by_ws.setdefault(p.workspace_id, set()).add(p.user_id)
    members: set[tuple[str, str]] = set()
    for wid, users in by_ws.items():
        rows = await session.execute(_MEMBERS_AMONG, {"wid": wid, "ids": sorted(users)})
        members.update((wid, r[0]) for r in rows)
    off = await disabled_types(session, {p.user_id for p in planned})
    now = utcnow()
    kept: list[Planned] = []
    suppressed: list[str] = []
    for p in planned:
        if (p.workspace_id, p.user_id) not in members:
            suppressed.append("not_member")
        elif (p.user_id, p.type) in off:
            suppressed.append("preference")
        else:
            kept.append(p)
    rows_out = [
        {
            "id": new_id(),
            "user_id": p.user_id,
            "workspace_id": p.workspace_id,
            "type": p.type,
            "task_id": p.task_id,
            "actor_id": p.actor_id,
            "data": p.data,
            "dedup_key": p.dedup_key,
            "created_at": now,
            "read_at": None,
        }
        for p in kept
    ]
    await insert_ignoring_conflicts(session, db, Notification.__table__, rows_out, ["user_id", "dedup_key"])  # type: ignore[arg-type]
    return Stored(kept, suppressed)


async def store_member_joined(db: Database, workspace_id: str, user_id: str) -> Stored:
    """``member_joined`` to the workspace's owners and admins (not the newcomer); once per membership."""
    async with db.transaction() as s:
        membership = await s.get(Membership, (workspace_id, user_id))
        user = await s.get(User, user_id)
        if membership is None or user is None:
            return Stored([], [])
        admins = await s.scalars(
            select(Membership.user_id).where(
                Membership.workspace_id == workspace_id, Membership.role.in_(("owner", "admin"))
            )
        )
        key = f"{workspace_id}:member_joined:{user_id}:{iso_z(membership.joined_at)}"
        data = {"user": {"id": user.id, "display_name": user.display_name}, "role": membership.role}
        planned = [
            Planned(uid, "member_joined", workspace_id, None, user_id, data, key) for uid in admins if uid != user_id
        ]
        stored = await store_notifications(s, db, planned)
    return stored
