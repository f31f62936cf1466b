"""The sender: due deliveries are signed and posted to the address the SSRF guard checked, retried with
exponential backoff, and a webhook that keeps failing is disabled."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select, update

from api.domain.webhooks.ssrf import UnsafeUrl, pinned_request, resolve_allowed
from persistence.claims import claim_attempt
from persistence.db import Database
from persistence.models import Webhook, WebhookDelivery, as_utc, utcnow
from sync_server import metrics

if TYPE_CHECKING:
    from persistence.settings import Settings
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.webhooks")

LEASE = timedelta(seconds=30)  # a claimed delivery is not retried by another worker before this
BATCH = 20
# A receiver's answer: only the status counts. At most this much of the body is read (so that a short answer
# leaves the connection reusable); the rest is never read, and never decompressed, the connection is closed.
# httpcore reads the socket in pieces of up to 64 KiB, so that is what one attempt may hold at most.
RESPONSE_READ_LIMIT = 4096


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`` (the X-Plait-Signature header)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookSender:
    """Sends due deliveries (one loop, a task per webhook with due deliveries) and records each attempt."""

    def __init__(self, db: Database, s: Settings, wake: asyncio.Event, on_disabled: Callable[[str], None]) -> None:
        self.db = db
        self.allow_private = s.webhook_allow_private
        self.base = s.webhook_retry_base_seconds
        self.max_attempts = s.webhook_max_attempts
        self.max_failures = s.webhook_max_consecutive_failures
        self.deadline = s.webhook_timeout_seconds
        self.concurrency = s.webhook_concurrency
        self._wake = wake  # set when deliveries were stored or a webhook's task ended: look again
        self._on_disabled = on_disabled  # a webhook of this workspace was disabled
        self._task: asyncio.Task[None] | None = None
        self._sup: Supervisor | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}  # webhook id -> the task sending its deliveries
        self._client = httpx.AsyncClient(timeout=s.webhook_timeout_seconds, follow_redirects=False)
        self.sent = 0

    def start(self, sup: Supervisor) -> None:
        self._sup = sup
        self._task = sup.spawn("webhooks-send", self._send_loop())

    async def stop(self) -> None:
        """Stop sending: a delivery cut short is retried after a restart (it is stored, and its lease runs out)."""
        tasks = [*([self._task] if self._task is not None else []), *self._inflight.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._client.aclose()

    async def _send_loop(self) -> None:
        """Hands the due deliveries of each webhook to a task of its own, at most ``webhook_concurrency`` tasks
        at once; a webhook that has one gets no second (its deliveries stay in order). So a slow receiver holds
        one slot for at most the deadline per attempt, and never the loop: other webhooks' deliveries start as
        soon as they are due and a slot is free."""
        while True:
            self._wake.clear()
            delay = 5.0
            try:
                free = self.concurrency - len(self._inflight)
                if free > 0:
                    due = await self._due()
                    by_hook: dict[str, list[tuple[WebhookDelivery, Webhook]]] = {}
                    for d, h in due:
                        by_hook.setdefault(h.id, []).append((d, h))
                    for hook_id, items in list(by_hook.items())[:free]:
                        self._start(hook_id, items)
                    if len(by_hook) <= free:
                        if len(due) == BATCH:
                            continue
                        delay = await self._next_due_in()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery round failed")
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, delay))

    def _start(self, hook_id: str, items: list[tuple[WebhookDelivery, Webhook]]) -> None:
        assert self._sup is not None, "start() first"
        task = self._sup.run_soon(f"webhook-{hook_id}", self._attempt_in_order(items))
        self._inflight[hook_id] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._inflight.get(hook_id) is task:
                del self._inflight[hook_id]
            self._wake.set()

        task.add_done_callback(done)

    def _not_in_flight(self) -> list[Any]:
        return [Webhook.id.not_in(list(self._inflight))] if self._inflight else []

    async def _due(self) -> list[tuple[WebhookDelivery, Webhook]]:
        async with self.db.session() as s:
            rows = await s.execute(
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= utcnow(),
                    Webhook.active,
                    *self._not_in_flight(),
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.seq)
                .limit(BATCH)
            )
            return [(d, h) for d, h in rows]

    async def _next_due_in(self) -> float:
        """Seconds until the earliest pending delivery is due (at most 5: other nodes add deliveries too)."""
        async with self.db.session() as s:
            earliest = await s.scalar(
                select(WebhookDelivery.next_attempt_at)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", Webhook.active, *self._not_in_flight())
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(1)
            )
        if earliest is None:
            return 5.0
        return min(5.0, max(0.0, (as_utc(earliest) - utcnow()).total_seconds()))

    async def _claim(self, d: WebhookDelivery) -> bool:
        """Take the delivery for one attempt; another worker (node) that read it too loses."""
        return await claim_attempt(self.db, WebhookDelivery, d, LEASE)

    async def _attempt_in_order(self, items: list[tuple[WebhookDelivery, Webhook]]) -> None:
        """One hook's due deliveries one after another (hooks in parallel): a failing endpoint is not sent
        several requests at once. The run stops at the first failure, or once it has taken the deadline: the
        rest stay due and go back into the next round with everyone else's (a slow or failing endpoint does
        not keep its slot), and once its consecutive failures disable it, they are not attempted (the disable
        marks them failed)."""
        started = time.monotonic()
        for d, h in items:
            if not await self._attempt(d, h) or time.monotonic() - started >= self.deadline:
                return

    async def _attempt(self, d: WebhookDelivery, hook: Webhook) -> bool:
        """Claim, send, record; False if the attempt failed."""
        try:
            if not await self._claim(d):
                return True
            code, error = await self._send(d, hook)
            await self._record(d, hook, code, error)
            return error is None
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", d.id)
            return False

    async def _send(self, d: WebhookDelivery, hook: Webhook) -> tuple[int | None, str | None]:
        """One HTTP attempt: (status code, error or None when delivered), within the deadline as a whole
        (``webhook_timeout_seconds``: httpx's timeouts are per read, and a receiver sending a byte every few
        seconds never trips them)."""
        status: list[int] = []
        try:
            async with asyncio.timeout(self.deadline):
                return await self._post(d, hook, status)
        except TimeoutError:
            if status:  # the answer came; only reading its body ran out of time
                return self._outcome(status[0])
            return None, f"no answer within the {self.deadline:g} s deadline"

    async def _post(self, d: WebhookDelivery, hook: Webhook, status: list[int]) -> tuple[int | None, str | None]:
        try:
            addresses = await resolve_allowed(hook.url, self.allow_private)
        except UnsafeUrl as exc:
            log.warning("webhook %s: delivery %s refused: %s", hook.id, d.id, exc)
            return None, f"refused: {exc}"
        body = json.dumps(d.payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        url, headers, extensions = pinned_request(hook.url, addresses[0])
        headers.update(
            {
                "Content-Type": "application/json",
                "User-Agent": "Plait-Webhooks/1",
                "X-Plait-Event": d.event,
                "X-Plait-Delivery": d.id,
                "X-Plait-Timestamp": timestamp,
                "X-Plait-Signature": sign(hook.secret, timestamp, body),
            }
        )
        try:
            async with self._client.stream(
                "POST", url, content=body, headers=headers, extensions=extensions
            ) as response:
                status.append(response.status_code)
                read = 0
                async for chunk in response.aiter_raw():  # raw: a compressed body is never inflated
                    read += len(chunk)
                    if read >= RESPONSE_READ_LIMIT:
                        break  # leaving the block closes the connection with the rest unread
        # AttributeError: httpcore on anyio, when a receiver's socket is gone before the pool reads its peer
        # (seen with a receiver that hangs up at once): a failed attempt like any other transport error.
        except (httpx.HTTPError, OSError, AttributeError) as exc:
            if not status:
                return None, f"{type(exc).__name__}: {exc}"[:500]
        return self._outcome(status[0])

    @staticmethod
    def _outcome(code: int) -> tuple[int | None, str | None]:
        if 200 <= code < 300:
            return code, None
        return code, f"HTTP {code}"

    async def _record(self, d: WebhookDelivery, hook: Webhook, code: int | None, error: str | None) -> None:
        now = utcnow()
        attempts = d.attempts + 1
        async with self.db.transaction() as s:
            if error is None:
                await s.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == d.id)
                    .values(
                        status="delivered",
                        attempts=attempts,
                        last_status_code=code,
                        last_error=None,
                        delivered_at=now,
                        next_attempt_at=None,
                    )
                )
                await s.execute(update(Webhook).where(Webhook.id == hook.id).values(failure_count=0))
                self.sent += 1
                metrics.WEBHOOK_ATTEMPTS.labels("delivered").inc()
                return
            final = attempts >= self.max_attempts
            metrics.WEBHOOK_ATTEMPTS.labels("failed" if final else "retry").inc()
            await s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == d.id)
                .values(
                    status="failed" if final else "pending",
                    attempts=attempts,
                    last_status_code=code,
                    last_error=error[:500],
                    next_attempt_at=None if final else now + timedelta(seconds=self.base * 2 ** (attempts - 1)),
                )
            )
            failures = await s.scalar(
                update(Webhook)
                .where(Webhook.id == hook.id)
                .values(failure_count=Webhook.failure_count + 1)
                .returning(Webhook.failure_count)
            )
            if failures is not None and failures >= self.max_failures:
                await s.execute(
                    update(Webhook).where(Webhook.id == hook.id, Webhook.active).values(active=False, disabled_at=now)
                )
                await s.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")
                    .values(status="failed", next_attempt_at=None, last_error="webhook disabled: too many failures")
                )
                log.warning("webhook %s disabled after %d consecutive failed attempts", hook.id, failures)
                metrics.WEBHOOKS_DISABLED.inc()
                self._on_disabled(hook.workspace_id)
