"""``due_soon``: the assignee of a task not done hears, once, ``PLAIT_DUE_SOON_HOURS`` before it is due.

A task is due at the end of its due date (UTC): with the default 24 hours, the notification comes at the start
of that day. Every ``PLAIT_DUE_SOON_SCAN_SECONDS`` one node of the cluster — the holder of the
``scheduler_leases`` row "due_soon", renewed each scan and taken over by another node once it lapses — reads
the task index (no document is loaded) for tasks due within the window and stores a notification keyed
``due_soon:{workspace}:{task}:{due_date}``. The key is unique per recipient, so a scan repeated by a second
node, or after a restart, adds nothing; a task whose due date or assignee changes is announced again.
Membership and the recipient's preference are checked as for every notification; the push goes through the hub.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import exists, func, literal, select

from api.domain.leased_job import LeasedJob
from api.domain.notifications.derive import MAX_NOTIFICATION_TASK_ID, Planned
from api.domain.notifications.hub import NotificationHub
from api.domain.notifications.store import store_notifications
from api.domain.search.indexer import SearchIndex
from persistence.db import Database
from persistence.models import (
    Notification,
    NotificationPreference,
    TaskIndex,
    TaskIndexState,
    Workspace,
    utcnow,
)

if TYPE_CHECKING:
    from sync_server.supervisor import Supervisor


LEASE_NAME = "due_soon"
BATCH = 500  # notifications stored per transaction
BUILDS_PER_SCAN = 5  # workspaces never indexed (nobody searched them since the upgrade) built per scan


def window(now: datetime, hours: float) -> tuple[str, str]:
    """Due dates (inclusive, ISO) whose end (next midnight UTC) lies in ``(now, now + hours]``."""
    first = now.date()
    last = (now + timedelta(hours=hours) - timedelta(days=1)).date()
    return first.isoformat(), last.isoformat()


def dedup_key_sql() -> object:
    return literal("due_soon:") + TaskIndex.workspace_id + ":" + TaskIndex.task_id + ":" + TaskIndex.due_date


class DueSoonScheduler:
    """The periodic scan, on the node that holds the lease."""

    def __init__(
        self, db: Database, hub: NotificationHub, index: SearchIndex, *, node_id: str, hours: float, every: float
    ) -> None:
        self.db = db
        self.hub = hub
        self.index = index
        self.hours = hours
        self.job = LeasedJob(db, LEASE_NAME, node_id, every, self.scan)
        self.sent = 0

    def start(self, sup: Supervisor) -> None:
        if self.hours > 0:
            self.job.start(sup)

    async def stop(self) -> None:
        await self.job.stop()

    async def scan(self, now: datetime | None = None) -> int:
        """Store the due_soon notifications not stored yet; returns how many were kept."""
        await self._build_some()
        first, last = window(now or utcnow(), self.hours)
        if last < first:
            return 0
        key = dedup_key_sql()
        notified = exists().where(Notification.user_id == TaskIndex.assignee_id, Notification.dedup_key == key)
        muted = exists().where(
            NotificationPreference.user_id == TaskIndex.assignee_id,
            NotificationPreference.type == "due_soon",
            NotificationPreference.enabled.is_(False),
        )
        query = (
            select(
                TaskIndex.workspace_id, TaskIndex.task_id, TaskIndex.title, TaskIndex.assignee_id, TaskIndex.due_date
            )
            .where(
                TaskIndex.due_date >= first,
                TaskIndex.due_date <= last,
                TaskIndex.status != "done",
                TaskIndex.assignee_id.is_not(None),
                func.length(TaskIndex.task_id) <= MAX_NOTIFICATION_TASK_ID,
                ~notified,
                ~muted,
            )
            .order_by(TaskIndex.due_date, TaskIndex.seq)
            .limit(BATCH)
        )
        async with self.db.transaction() as s:
            planned = [
                Planned(
                    str(assignee),
                    "due_soon",
                    wid,
                    tid,
                    None,
                    {"title": title, "due_date": due},
                    f"due_soon:{wid}:{tid}:{due}",
                )
                for wid, tid, title, assignee, due in await s.execute(query)
            ]
            stored = await store_notifications(s, self.db, planned)
        self.hub.publish(stored.committed())
        kept = len(stored.kept)
        self.sent += kept
        return kept

    async def _build_some(self) -> None:
        """Index a few workspaces nobody searched since the upgrade, so their due dates are seen too."""
        unbuilt = (
            select(Workspace.id)
            .where(~exists().where(TaskIndexState.workspace_id == Workspace.id))
            .order_by(Workspace.created_at)
            .limit(BUILDS_PER_SCAN)
        )
        async with self.db.session() as s:
            ids = list(await s.scalars(unbuilt))
        for wid in ids:
            await self.index.build(wid)
