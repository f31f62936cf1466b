"""The notification digest: an opt-in e-mail of a user's unread notifications, at most one per
``PLAIT_MAIL_DIGEST_INTERVAL_SECONDS``.

Every ``PLAIT_MAIL_DIGEST_SCAN_SECONDS`` one node of the cluster (the holder of the ``scheduler_leases`` row
"mail_digest") looks for opted-in users whose last digest is older than the interval and who have unread
notifications newer than the last one mailed; each gets one e-mail, stored in the outbox in the same
transaction that moves their digest mark (``mail_preferences.last_digest_seq``), so no notification is mailed
twice and a scan repeated after a crash sends nothing new. Switching the digest on starts from "now": older
notifications are not mailed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.leased_job import LeasedJob
from api.domain.mail import templates
from persistence.models import MailPreference, Notification, User, Workspace, utcnow

if TYPE_CHECKING:
    from api.domain.mail.service import MailService
    from sync_server.supervisor import Supervisor


LEASE_NAME = "mail_digest"
USERS_PER_SCAN = 200


async def digest_enabled(session: AsyncSession, user_id: str) -> bool:
    pref = await session.get(MailPreference, user_id)
    return bool(pref and pref.digest_enabled)


async def set_digest(session: AsyncSession, user_id: str, enabled: bool) -> None:
    """Switch the digest on or off (in the caller's transaction). Switching it on marks every notification so
    far as "already mailed": the first digest has only what comes after."""
    pref = await session.get(MailPreference, user_id)
    if pref is None:
        pref = MailPreference(user_id=user_id, digest_enabled=False, last_digest_seq=0)
        session.add(pref)
    if enabled and not pref.digest_enabled:
        latest = await session.scalar(
            select(func.coalesce(func.max(Notification.seq), 0)).where(Notification.user_id == user_id)
        )
        pref.last_digest_seq = int(latest or 0)
    pref.digest_enabled = enabled


class DigestScheduler:
    """The periodic scan, on the node that holds the lease."""

    def __init__(self, service: MailService, *, node_id: str) -> None:
        self.service = service
        self.interval = timedelta(seconds=service.settings.mail_digest_interval_seconds)
        every = service.settings.mail_digest_scan_seconds
        self.job = LeasedJob(service.db, LEASE_NAME, node_id, every, self.scan)
        self.sent = 0

    @property
    def scans(self) -> int:
        """Scans completed on this node (tests wait on it)."""
        return self.job.runs

    def start(self, sup: Supervisor) -> None:
        if self.service.outbox.configured:
            self.job.start(sup)

    async def stop(self) -> None:
        await self.job.stop()

    async def scan(self) -> int:
        """Queue the digests that are due; returns how many."""
        db = self.service.db
        now = utcnow()
        has_new = (
            select(Notification.seq)
            .where(
                Notification.user_id == MailPreference.user_id,
                Notification.read_at.is_(None),
                Notification.seq > MailPreference.last_digest_seq,
            )
            .exists()
        )
        async with db.session() as s:
            due = list(
                (
                    await s.execute(
                        select(MailPreference.user_id, MailPreference.last_digest_seq)
                        .where(
                            MailPreference.digest_enabled.is_(True),
                            or_(
                                MailPreference.last_digest_at.is_(None),
                                MailPreference.last_digest_at <= now - self.interval,
                            ),
                            has_new,
                        )
                        .limit(USERS_PER_SCAN)
                    )
                ).all()
            )
        queued = 0
        for user_id, mark in due:
            if await self._one(user_id, int(mark)):
                queued += 1
        if queued:
            self.service.outbox.wake()
            self.sent += queued
        return queued

    async def _one(self, user_id: str, mark: int) -> bool:
        async with self.service.db.transaction() as s:
            email = await s.scalar(select(User.email).where(User.id == user_id))
            actor = User.__table__.alias("actor")
            rows = (
                await s.execute(
                    select(Notification.seq, Notification.type, Notification.data, actor.c.display_name, Workspace.name)
                    .outerjoin(actor, actor.c.id == Notification.actor_id)
                    .outerjoin(Workspace, Workspace.id == Notification.workspace_id)
                    .where(
                        Notification.user_id == user_id,
                        Notification.read_at.is_(None),
                        Notification.seq > mark,
                    )
                    .order_by(Notification.seq)
                    .limit(templates.DIGEST_MAX_ITEMS)
                )
            ).all()
            if email is None or not rows:
                return False
            count, last = (
                await s.execute(
                    select(func.count(), func.max(Notification.seq)).where(
                        Notification.user_id == user_id, Notification.read_at.is_(None), Notification.seq > mark
                    )
                )
            ).one()
            moved = await s.execute(
                update(MailPreference)
                .where(MailPreference.user_id == user_id, MailPreference.last_digest_seq == mark)
                .values(last_digest_seq=int(last), last_digest_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if int(getattr(moved, "rowcount", 0)) != 1:
                return False  # another scan got there first
            items = [
                {"type": t, "title": (data or {}).get("title"), "actor": name, "workspace": ws}
                for _, t, data, name, ws in rows
            ]
            more = max(0, int(count) - len(rows))
            subject, body = templates.digest(items, more, self.service.base_url())
            return self.service.outbox.queue(s, "digest", email, subject, body)
