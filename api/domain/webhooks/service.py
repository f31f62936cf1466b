"""Signed webhooks (docs/webhooks.md): events derived from document changes and membership, stored as
deliveries before anything is sent (they survive restarts), sent by a worker with exponential backoff, and a
webhook that keeps failing is disabled.

The node's webhooks are an outbox (:mod:`.outbox`: derive and store deliveries) and a sender (:mod:`.sender`:
send, retry, disable) that share a wake-up: a stored delivery wakes the sender, and a webhook the sender
disables leaves the outbox's cache. The URL guard is :mod:`.ssrf`, the events :mod:`.events`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from api.domain.webhooks.outbox import WebhookOutbox
from api.domain.webhooks.sender import WebhookSender
from persistence.db import Database

if TYPE_CHECKING:
    from persistence.settings import Settings
    from sync_server.events import Committed
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.webhooks")


class WebhookService:
    """Derives deliveries from durable updates (one worker) and sends due deliveries (another)."""

    def __init__(self, db: Database, s: Settings) -> None:
        wake = asyncio.Event()
        self.outbox = WebhookOutbox(db, wake)
        self.sender = WebhookSender(db, s, wake, on_disabled=self.outbox.invalidate)

    def start(self, sup: Supervisor) -> None:
        self.outbox.start(sup)
        self.sender.start(sup)

    async def stop(self) -> None:
        """Derive what is queued (at most 5 s), then stop sending: a delivery cut short is retried after a
        restart (it is stored, and its lease runs out)."""
        await self.outbox.stop()
        await self.sender.stop()

    def on_durable(self, commits: Sequence[Committed]) -> None:
        self.outbox.on_durable(commits)

    def invalidate(self, workspace_id: str) -> None:
        """A webhook of this workspace was created or deleted on this node: stop using the cached list."""
        self.outbox.invalidate(workspace_id)

    async def member_event(
        self, workspace_id: str, event: str, user_id: str, role: str | None, actor_id: str | None
    ) -> None:
        """``member.joined`` / ``member.left`` (called by the membership rules after their commit)."""
        await self.outbox.member_event(workspace_id, event, user_id, role, actor_id)


async def member_event(
    service: WebhookService, workspace_id: str, event: str, user_id: str, role: str | None, actor_id: str | None
) -> None:
    """Emit ``member.joined`` / ``member.left`` after a membership change. Never fails the caller: the change
    is committed already."""
    try:
        await service.member_event(workspace_id, event, user_id, role, actor_id)
    except Exception:
        log.exception("webhook %s event for %s failed", event, workspace_id)
