"""Notifications and activity, derived from document changes whoever made them.

The sync service calls :meth:`NotificationService.on_durable` after every committed batch of updates accepted
on this node (live clients, REST, reconnecting offline clients). A single worker task turns each update's
``TaskChange`` list into activity rows and notifications in one transaction per batch, in log order. Both
tables have a unique key derived from the update's log sequence number, and inserts ignore conflicts, so a
change is recorded exactly once per recipient however often it is derived (retries, several nodes).

The derivation is in :mod:`.derive`, the storage in :mod:`.store`, the live push in :mod:`.hub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from api.domain.activity_coalescing import ActivityCoalescer
from api.domain.notifications.derive import Planned, activity_rows, derive_notifications
from api.domain.notifications.hub import NotificationHub
from api.domain.notifications.store import store_member_joined, store_notifications
from persistence.db import Database, insert_ignoring_conflicts
from persistence.doclog import DocumentLog
from persistence.models import Activity, Workspace, utcnow
from sync_server import metrics
from sync_server.schema import TaskChange

if TYPE_CHECKING:
    from sync_server.events import Committed
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.notifications")

# A window's preparation gives the event loop back after this many workspaces: 500 workspaces typing made one
# window a 9 ms step, and every socket's updates waited behind it (s6's p95).
WORKSPACES_PER_STEP = 50
DRAIN_SECONDS = 5.0  # at shutdown: how long the queue's derivation, then the held summaries, may take


class NotificationService:
    """Derives activity and notifications from durable updates, in log order, off the broadcast path."""

    def __init__(
        self,
        db: Database,
        *,
        batch_window: float = 0.0,
        store: DocumentLog | None = None,
        hub: NotificationHub | None = None,
    ) -> None:
        self.db = db
        self.hub = hub if hub is not None else NotificationHub()
        self.batch_window = batch_window
        self.coalescer = ActivityCoalescer(log=store)
        self._queue: asyncio.Queue[tuple[str, list[tuple[int, str | None, list[TaskChange]]]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.processed = 0
        self.failures = 0
        self.dropped = 0  # windows of workspaces deleted before they were recorded
        self._queued_at: deque[float] = deque()  # when each queued item was submitted (the lag's metric)

    def start(self, sup: Supervisor) -> None:
        self._task = sup.spawn("notifications", self._run())
        metrics.DERIVATION_LAG.set_function(self.lag)

    def lag(self) -> float:
        """Seconds since the oldest change not yet derived was committed (0: none waiting)."""
        return time.monotonic() - self._queued_at[0] if self._queued_at else 0.0

    async def stop(self) -> None:
        """Finish what is queued (at most 5 s) and write the summaries still waiting (at most 5 s), then stop.
        Runs before the document store closes: the summaries are written through it on SQLite."""
        if self._task is None:
            return
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=DRAIN_SECONDS)
            self._task.cancel()
            await asyncio.wait([self._task])
        try:
            await asyncio.wait_for(self.write_summaries(), timeout=DRAIN_SECONDS)
        except TimeoutError:
            log.error("writing the held activity summaries took more than %.0f s: dropped", DRAIN_SECONDS)

    async def write_summaries(self) -> None:
        """Write the activity summaries the coalescer holds back (typing), due or not."""
        if self.coalescer.store_due_in() is None:
            return
        try:
            await self._record({}, write_summaries=True)
        except Exception:
            self.failures += 1
            metrics.DERIVATION_FAILURES.inc()
            self.coalescer.forget()
            log.exception("writing activity summaries failed")

    async def drain(self) -> None:
        await self._queue.join()

    def on_durable(self, commits: Sequence[Committed]) -> None:
        """SyncService listener: synchronous and cheap; the database work happens in the worker."""
        items = [(c.seq, c.actor_id, cast("list[TaskChange]", list(c.changes))) for c in commits if c.changes]
        if items:
            self.submit(commits[0].workspace_id, items)

    def submit(self, workspace_id: str, items: list[tuple[int, str | None, list[TaskChange]]]) -> None:
        """Queue durable changes (log seq, actor, changes) of one workspace for the worker."""
        self._queue.put_nowait((workspace_id, items))
        self._queued_at.append(time.monotonic())

    async def _run(self) -> None:
        while True:
            # Take everything queued: under load, one transaction per workspace instead of one per commit batch.
            # With no updates coming, still write the summaries held back once they are due.
            due = self.coalescer.store_due_in()
            try:
                batches = [await asyncio.wait_for(self._queue.get(), due)]
            except TimeoutError:
                await self.write_summaries()
                continue
            if self.batch_window:
                await asyncio.sleep(self.batch_window)  # typing sends an update per keystroke: batch them
            while not self._queue.empty():
                batches.append(self._queue.get_nowait())
            merged: dict[str, list[tuple[int, str | None, list[TaskChange]]]] = {}
            for wid, items in batches:
                merged.setdefault(wid, []).extend(items)
            try:
                await self.record_all(merged)
            finally:
                for _ in batches:
                    self._queue.task_done()
                    self._queued_at.popleft()

    async def record_all(self, merged: dict[str, list[tuple[int, str | None, list[TaskChange]]]]) -> None:
        """Everything of one window in ONE transaction of a few statements (500 active rooms must not mean 500
        commits, nor hundreds of statements holding SQLite's write lock while the update log waits); if it
        fails, each workspace in its own, so one bad workspace cannot hold back the others."""
        try:
            recipients = await self._record(merged)
            self.processed += len(merged)
            self.hub.publish(recipients)
            return
        except Exception:
            self.coalescer.forget()
            if len(merged) == 1:
                await self._failed(next(iter(merged)))
                return
        for wid, items in merged.items():
            try:
                await self.record(wid, items)
                self.processed += 1
            except Exception:
                self.coalescer.forget()
                await self._failed(wid)

    async def _failed(self, workspace_id: str) -> None:
        """Report a workspace's window that could not be recorded (inside the ``except`` that caught it); a
        workspace deleted meanwhile is no error: its activity and notifications went with it."""
        async with self.db.session() as s:
            deleted = await s.get(Workspace, workspace_id) is None
        if deleted:
            self.dropped += 1
            log.info("workspace %s was deleted before its activity was recorded: dropped", workspace_id)
            return
        self.failures += 1
        metrics.DERIVATION_FAILURES.inc()
        log.exception("recording activity/notifications for %s failed", workspace_id)

    async def record(self, workspace_id: str, items: list[tuple[int, str | None, list[TaskChange]]]) -> None:
        self.hub.publish(await self._record({workspace_id: items}))

    async def _record(
        self, merged: dict[str, list[tuple[int, str | None, list[TaskChange]]]], *, write_summaries: bool = False
    ) -> set[str]:
        now = utcnow()
        async with self.db.transaction() as s:
            activity: list[dict[str, Any]] = []
            planned: list[Planned] = []
            per_ws: dict[str, list[dict[str, Any]]] = {}
            for n, (wid, items) in enumerate(merged.items(), 1):
                rows = per_ws[wid] = []
                for seq, actor_id, changes in items:
                    rows.extend(activity_rows(wid, seq, actor_id, changes, now))
                    planned.extend(derive_notifications(wid, seq, actor_id, changes))
                if n % WORKSPACES_PER_STEP == 0:
                    await asyncio.sleep(0)
            await self.coalescer.prefetch(
                s, {(wid, r["task_id"]) for wid, rows in per_ws.items() for r in rows if r["field"] == "description"}
            )
            for n, (wid, rows) in enumerate(per_ws.items(), 1):
                activity.extend(await self.coalescer.record(s, wid, rows, now))
                if n % WORKSPACES_PER_STEP == 0:
                    await asyncio.sleep(0)
            # Nothing above writes, so SQLite's write lock (which the update log's appends wait for) is taken
            # only from here on, by the few statements of the window.
            activity.extend(await self.coalescer.store(s, force=write_summaries))
            await insert_ignoring_conflicts(
                s,
                self.db,
                Activity.__table__,  # type: ignore[arg-type]
                activity,
                ["workspace_id", "dedup_key"],
            )
            stored = await store_notifications(s, self.db, planned)
        return stored.committed()


async def notify_member_joined(db: Database, hub: NotificationHub, workspace_id: str, user_id: str) -> None:
    """``member_joined`` to the workspace's owners and admins (not the newcomer); once per membership."""
    stored = await store_member_joined(db, workspace_id, user_id)
    hub.publish(stored.committed())
