"""Notifications and activity, derived from document changes whoever made them.

The sync service calls :meth:`NotificationService.on_durable` after every committed batch of updates accepted
on this node (live clients, REST, reconnecting offline clients). A single worker task turns each update's
``TaskChange`` list into activity rows and notifications in one transaction per batch, in log order. Both
tables have a unique key derived from the update's log sequence number, and inserts ignore conflicts, so a
change is recorded exactly once per recipient however often it is derived (retries, several nodes).

Live push: :meth:`NotificationHub.publish` is the one place that tells SSE streams "look again"; the stream
reads the database (the single truth), so a wake-up is never a lost message. With Redis it also wakes the
streams of other nodes (:meth:`NotificationHub.bridge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.activity_coalescing import ActivityCoalescer
from persistence.db import Database, insert_ignoring_conflicts
from persistence.doclog import DocumentLog
from persistence.models import (
    Activity,
    Membership,
    Notification,
    NotificationPreference,
    User,
    Workspace,
    iso_z,
    new_id,
    utcnow,
)
from sync_server import metrics
from sync_server.schema import TaskChange

if TYPE_CHECKING:
    from sync_server.events import Committed
    from sync_server.service import SyncService
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.notifications")

NOTIFICATION_TYPES = (
    "task_assigned",
    "task_unassigned",
    "task_completed",
    "task_due_date_changed",
    "member_joined",
)
MAX_NOTIFICATION_TASK_ID = 36  # notifications.task_id column width
MAX_ACTIVITY_TASK_ID = 64  # activity.task_id column width
# A window's preparation gives the event loop back after this many workspaces: 500 workspaces typing made one
# window a 9 ms step, and every socket's updates waited behind it (s6's p95).
WORKSPACES_PER_STEP = 50
DRAIN_SECONDS = 5.0  # at shutdown: how long the queue's derivation, then the held summaries, may take


# ---- derivation (pure) -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """A notification to create, before membership and preference filtering."""

    user_id: str
    type: str
    workspace_id: str
    task_id: str | None
    actor_id: str | None
    data: dict[str, Any]
    dedup_key: str


def derive_notifications(
    workspace_id: str, seq: int, actor_id: str | None, changes: Sequence[TaskChange]
) -> list[Planned]:
    """The notifications one update causes: never to its actor, at most one per (recipient, task, type)."""
    out: dict[tuple[str, str], Planned] = {}

    def add(user: object, type_: str, ch: TaskChange, data: dict[str, Any]) -> None:
        if not isinstance(user, str) or not user or user == actor_id:
            return
        if len(ch.task_id) > MAX_NOTIFICATION_TASK_ID:
            return  # not a task id the schema allows; nothing sensible to point at
        key = f"{workspace_id}:{seq}:{ch.task_id}:{type_}"
        out.setdefault((user, key), Planned(user, type_, workspace_id, ch.task_id, actor_id, data, key))

    for ch in changes:
        task = ch.task or {}
        base = {"title": task.get("title")}
        if ch.kind == "created":
            assignee = task.get("assignee_id")
            add(assignee, "task_assigned", ch, {**base, "assignee_id": assignee})
        elif ch.kind == "updated" and ch.field == "assignee_id" and ch.old != ch.new:
            add(ch.new, "task_assigned", ch, {**base, "assignee_id": ch.new})
            add(ch.old, "task_unassigned", ch, {**base, "assignee_id": ch.new})
        elif ch.kind == "updated" and ch.field == "status" and ch.new == "done" and ch.old != "done":
            data = {**base, "completed_at": task.get("completed_at")}
            add(task.get("created_by"), "task_completed", ch, data)
            add(task.get("assignee_id"), "task_completed", ch, data)
        elif ch.kind == "updated" and ch.field == "due_date" and ch.old != ch.new:
            data = {**base, "old": ch.old, "new": ch.new, "due_date": ch.new}
            add(task.get("assignee_id"), "task_due_date_changed", ch, data)
    return list(out.values())


def activity_rows(
    workspace_id: str, seq: int, actor_id: str | None, changes: Sequence[TaskChange], now: datetime
) -> list[dict[str, Any]]:
    """One row per field-level change (creations and deletions carry the whole task). Without an ``id``: most
    description edits are folded into an earlier row, so the coalescer gives one only to a row it inserts."""
    rows: dict[str, dict[str, Any]] = {}
    for ch in changes:
        if len(ch.task_id) > MAX_ACTIVITY_TASK_ID:
            continue
        key = f"{seq}:{ch.task_id}:{ch.kind}:{ch.field or ''}"
        old, new = ch.old, ch.new
        if ch.kind == "created":
            old, new = None, ch.task
        elif ch.kind == "deleted":
            old, new = ch.task, None
        rows.setdefault(
            key,
            {
                "workspace_id": workspace_id,
                "task_id": ch.task_id,
                "kind": ch.kind,
                "field": ch.field,
                "old_value": old,
                "new_value": new,
                "summary": ch.summary,
                "actor_id": actor_id,
                "doc_seq": seq,
                "dedup_key": key,
                "created_at": now,
            },
        )
    return list(rows.values())


# ---- storage -----------------------------------------------------------------------------------------------


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


def notification_json(n: Notification, actor: User | None) -> dict[str, Any]:
    return {
        "id": n.id,
        "type": n.type,
        "workspace_id": n.workspace_id,
        "task_id": n.task_id,
        "actor": {"id": actor.id, "display_name": actor.display_name} if actor is not None else None,
        "data": n.data or {},
        "created_at": iso_z(n.created_at),
        "read_at": iso_z(n.read_at) if n.read_at is not None else None,
    }


def activity_json(a: Activity, actor: User | None) -> dict[str, Any]:
    return {
        "id": a.id,
        "workspace_id": a.workspace_id,
        "task_id": a.task_id,
        "kind": a.kind,
        "field": a.field,
        "old_value": a.old_value,
        "new_value": a.new_value,
        "summary": a.summary,
        "actor": {"id": actor.id, "display_name": actor.display_name} if actor is not None else None,
        "created_at": iso_z(a.created_at),
    }


# ---- live push ---------------------------------------------------------------------------------------------


class StreamCounts:
    """Open streams on this node, in total and per account (``PLAIT_MAX_SSE_STREAMS_PER_USER`` / ``_NODE``)."""

    def __init__(self) -> None:
        self.total = 0
        self.per_user: dict[str, int] = {}

    def take(self, user_id: str, per_user: int, per_node: int) -> str | None:
        """Count a new stream, or say which cap refuses it."""
        if per_node and self.total >= per_node:
            return "server"
        if per_user and self.per_user.get(user_id, 0) >= per_user:
            return "account"
        self.total += 1
        self.per_user[user_id] = self.per_user.get(user_id, 0) + 1
        return None

    def give_back(self, user_id: str) -> None:
        self.total -= 1
        left = self.per_user.pop(user_id, 1) - 1
        if left:
            self.per_user[user_id] = left


class NotificationHub:
    """In-process wake-ups for SSE streams on this node, per user (the stream then reads the database)."""

    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Event]] = {}
        self._remote: Callable[[set[str]], None] | None = None
        self.streams = StreamCounts()  # the SSE streams open on this node, for their caps

    def subscribe(self, user_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._subs.setdefault(user_id, set()).add(event)
        return event

    def unsubscribe(self, user_id: str, event: asyncio.Event) -> None:
        subs = self._subs.get(user_id)
        if subs is not None:
            subs.discard(event)
            if not subs:
                del self._subs[user_id]

    def wake(self, user_ids: Iterable[str]) -> None:
        for uid in user_ids:
            for event in self._subs.get(uid, ()):
                event.set()

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def publish(self, user_ids: Iterable[str]) -> None:
        """The single publish point: new notifications are committed for these users. Wakes this node's
        streams and, with Redis, every other node's; a missed wake-up only delays delivery until the stream's
        next poll."""
        ids = set(user_ids)
        if ids:
            self.wake(ids)
            if self._remote is not None:
                self._remote(ids)

    def bridge(self, sync: SyncService) -> None:
        """Wake-ups cross nodes through the cluster's ``notify`` messages (register before the sync service
        starts: its Redis listener subscribes to the kinds registered by then)."""

        def send(ids: set[str]) -> None:
            sync.publish_to_nodes("notify", "users", json.dumps(sorted(ids)).encode())

        def receive(_key: str, body: bytes) -> None:
            self.wake(json.loads(body))

        self._remote = send
        sync.on_node_message("notify", receive)


# ---- the worker ----------------------------------------------------------------------------------------------


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

    def start(self, sup: Supervisor) -> None:
        self._task = sup.spawn("notifications", self._run())

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
    async with db.transaction() as s:
        membership = await s.get(Membership, (workspace_id, user_id))
        user = await s.get(User, user_id)
        if membership is None or user is None:
            return
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
    hub.publish(stored.committed())
