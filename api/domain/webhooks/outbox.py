"""The delivery outbox: events derived from document changes and membership are stored as deliveries before
anything is sent (they survive restarts); the sender (:mod:`.sender`) sends them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.webhooks.events import TYPING_DELAY, is_typing, merge_typing, task_events, typing_key
from persistence.db import Database, insert_ignoring_conflicts
from persistence.models import User, Webhook, WebhookDelivery, iso_z, new_id, utcnow
from sync_server.schema import TaskChange

if TYPE_CHECKING:
    from sync_server.events import Committed
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.webhooks")

HOOK_CACHE_SECONDS = 5.0  # how long a node may not know about a webhook created on another node


@dataclass(frozen=True)
class HookInfo:
    id: str
    events: frozenset[str]


class WebhookOutbox:
    """Derives deliveries from durable updates (one worker) and from membership changes, and stores them."""

    def __init__(self, db: Database, wake: asyncio.Event) -> None:
        self.db = db
        self._queue: asyncio.Queue[tuple[str, list[tuple[int, str | None, list[TaskChange]]]]] = asyncio.Queue()
        self._hooks: dict[str, tuple[float, list[HookInfo]]] = {}
        self._hooked: set[str] = set()  # workspaces with an active webhook, as of _hooked_at
        self._hooked_at: float | None = None
        self._wake = wake  # set once deliveries are stored: the sender looks again
        self._task: asyncio.Task[None] | None = None

    def start(self, sup: Supervisor) -> None:
        self._task = sup.spawn("webhooks-derive", self._derive_loop())

    async def stop(self) -> None:
        """Derive what is queued (at most 5 s), then stop."""
        if self._task is None:
            return
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=5.0)
        self._task.cancel()
        await asyncio.wait([self._task])

    def invalidate(self, workspace_id: str) -> None:
        """A webhook of this workspace was created or deleted on this node: stop using the cached list."""
        self._hooks.pop(workspace_id, None)
        self._hooked_at = None

    # -- deriving deliveries ---------------------------------------------------------------------------------

    def on_durable(self, commits: Sequence[Committed]) -> None:
        if not commits:
            return
        wid = commits[0].workspace_id  # one flush: one workspace
        hooked, at = self._hooked, self._hooked_at
        if at is not None and wid not in hooked and time.monotonic() - at < HOOK_CACHE_SECONDS:
            return  # no webhook in this workspace: nothing to derive (the common case, on the typing hot path)
        items = [(c.seq, c.actor_id, cast("list[TaskChange]", list(c.changes))) for c in commits if c.changes]
        if items:
            self._queue.put_nowait((wid, items))

    async def _refresh_hooked(self) -> None:
        """Which workspaces have an active webhook at all: one query per HOOK_CACHE_SECONDS for the node,
        however many rooms are busy (rather than one per workspace)."""
        if self._hooked_at is not None and time.monotonic() - self._hooked_at < HOOK_CACHE_SECONDS:
            return
        started = time.monotonic()
        async with self.db.session() as s:
            rows = await s.execute(select(Webhook.workspace_id).where(Webhook.active).distinct())
            self._hooked = {str(r[0]) for r in rows}
        self._hooked_at = started

    async def hooks(self, workspace_id: str) -> list[HookInfo]:
        await self._refresh_hooked()
        if workspace_id not in self._hooked:
            return []
        cached = self._hooks.get(workspace_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < HOOK_CACHE_SECONDS:
            return cached[1]
        async with self.db.session() as s:
            rows = await s.execute(
                select(Webhook.id, Webhook.events).where(Webhook.workspace_id == workspace_id, Webhook.active)
            )
            hooks = [HookInfo(r[0], frozenset(r[1] or ())) for r in rows]
        self._hooks[workspace_id] = (now, hooks)
        return hooks

    async def _derive_loop(self) -> None:
        while True:
            wid, items = await self._queue.get()
            try:
                hooks = await self.hooks(wid)
                if hooks:
                    events = [
                        (
                            typing_key(tid, actor, seq) if is_typing(event, data) else f"{seq}:{tid}:{event}",
                            event,
                            actor,
                            data,
                        )
                        for seq, actor, changes in items
                        for event, tid, data in task_events(changes)
                    ]
                    try:
                        await self.enqueue(wid, hooks, events)
                    except IntegrityError:
                        # A cached webhook was deleted (on another node): reload the list and try once more.
                        self.invalidate(wid)
                        await self.enqueue(wid, await self.hooks(wid), events)
            except Exception:
                log.exception("deriving webhook deliveries for %s failed", wid)
            finally:
                self._queue.task_done()

    async def enqueue(
        self, workspace_id: str, hooks: list[HookInfo], events: list[tuple[str, str, str | None, dict[str, Any]]]
    ) -> int:
        """Store one delivery per (webhook subscribed to the event, event); duplicates (same key) are ignored."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        async with self.db.transaction() as s:
            actor_ids = {a for _, _, a, _ in events if a}
            actors: dict[str, dict[str, str]] = {}
            if actor_ids:
                for uid, name in await s.execute(select(User.id, User.display_name).where(User.id.in_(actor_ids))):
                    actors[uid] = {"id": uid, "display_name": name}
            typing: dict[tuple[str, str], dict[str, Any]] = {}  # (webhook, key prefix) -> row in this batch
            for key, event, actor, data in events:
                for hook in hooks:
                    if event not in hook.events:
                        continue
                    if key.startswith("typing:"):
                        prefix = key.rsplit(":", 1)[0] + ":"
                        if await self._merge_typing(s, hook.id, prefix, typing, data, now):
                            continue
                    delivery_id = new_id()
                    payload = {
                        "id": delivery_id,
                        "event": event,
                        "workspace_id": workspace_id,
                        "occurred_at": iso_z(now),
                        "actor": actors.get(actor) if actor else None,
                        "data": data,
                    }
                    rows.append(
                        {
                            "id": delivery_id,
                            "webhook_id": hook.id,
                            "event": event,
                            "payload": payload,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": now + TYPING_DELAY if key.startswith("typing:") else now,
                            "dedup_key": key[:200],
                            "created_at": now,
                        }
                    )
                    if key.startswith("typing:"):
                        typing[(hook.id, key.rsplit(":", 1)[0] + ":")] = rows[-1]
            await insert_ignoring_conflicts(
                s,
                self.db,
                WebhookDelivery.__table__,  # type: ignore[arg-type]
                rows,
                ["webhook_id", "dedup_key"],
            )
        if rows:
            self._wake.set()
        return len(rows)

    async def _merge_typing(
        self,
        s: AsyncSession,
        hook_id: str,
        prefix: str,
        batch: dict[tuple[str, str], dict[str, Any]],
        data: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Fold a description edit into a not-yet-sent ``task.updated`` of the same task and actor (from this
        batch, or stored and not due yet), so a run of typing is one delivery, not one per keystroke."""
        row = batch.get((hook_id, prefix))
        if row is not None:
            row["payload"] = merge_typing(row["payload"], data)
            return True
        existing = await s.scalar(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == hook_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == 0,
                WebhookDelivery.next_attempt_at > now + timedelta(seconds=0.2),
                WebhookDelivery.dedup_key.startswith(prefix, autoescape=True),
            )
            .limit(1)
        )
        if existing is None:
            return False
        result = await s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == existing.id,
                WebhookDelivery.attempts == 0,
                WebhookDelivery.next_attempt_at > now,
            )
            .values(payload=merge_typing(existing.payload, data))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0)) == 1

    async def member_event(
        self, workspace_id: str, event: str, user_id: str, role: str | None, actor_id: str | None
    ) -> None:
        """``member.joined`` / ``member.left`` (called by the invite and member routes after their commit)."""
        hooks = [h for h in await self.hooks(workspace_id) if event in h.events]
        if not hooks:
            return
        async with self.db.session() as s:
            name = await s.scalar(select(User.display_name).where(User.id == user_id))
        data = {"user": {"id": user_id, "display_name": name}, "role": role}
        await self.enqueue(workspace_id, hooks, [(f"{event}:{user_id}:{new_id()}", event, actor_id, data)])
