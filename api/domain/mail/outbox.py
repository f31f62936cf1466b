"""The mail outbox: e-mails are stored (``mail_outbox``) in the transaction that decides to send them, then sent
by a worker, so no request waits on SMTP and a failing or unreachable SMTP server delays mail but loses none.

Each attempt that fails is retried with exponential backoff (``PLAIT_MAIL_RETRY_BASE_SECONDS``, doubling, at
most an hour apart) up to ``PLAIT_MAIL_MAX_ATTEMPTS``; then the mail is marked ``failed``, logged as an error
and counted (``plait_mail_failed_total``): nothing is dropped silently. Several nodes share the outbox: a node
claims a mail (a lease) before sending it, so two nodes do not send it at once; a node that dies mid-send
leaves the lease to run out and the mail is sent again (at least once). The body is emptied once the mail is
sent or given up: it may hold a password reset link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import aiosmtplib
from prometheus_client import Counter, Gauge
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.mail.smtp import SmtpConfig, build_message, send
from persistence.claims import claim_attempt
from persistence.db import Database
from persistence.models import MailMessage, as_utc, utcnow

if TYPE_CHECKING:
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.mail")

MAIL_SENT = Counter("plait_mail_sent_total", "E-mails the SMTP server accepted", ["kind"])
MAIL_ATTEMPT_FAILURES = Counter(
    "plait_mail_attempt_failures_total", "SMTP attempts that failed (the e-mail is retried later)", ["kind"]
)
MAIL_FAILED = Counter("plait_mail_failed_total", "E-mails given up after their last attempt", ["kind"])
MAIL_UNCONFIGURED = Counter(
    "plait_mail_unconfigured_total", "E-mails not sent because no SMTP server is configured", ["kind"]
)
MAIL_PENDING = Gauge("plait_mail_pending", "E-mails in the outbox waiting to be sent (all nodes)")

LEASE = timedelta(seconds=60)  # a claimed mail is not tried by another node before this (> one attempt)
MAX_BACKOFF_SECONDS = 3600.0
BATCH = 20
IDLE_POLL_SECONDS = 5.0  # other nodes store mail too: look at least this often


class MailOutbox:
    """Stores e-mails and sends them (one loop per node)."""

    def __init__(self, db: Database, config: SmtpConfig | None, *, retry_base: float, max_attempts: int) -> None:
        self.db = db
        self.config = config
        self.retry_base = retry_base
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    @property
    def configured(self) -> bool:
        return self.config is not None

    def queue(self, session: AsyncSession, kind: str, to: str, subject: str, body: str) -> bool:
        """Add an e-mail to the caller's transaction (the caller commits, then calls ``wake``); False (logged,
        counted) when no SMTP server is configured."""
        if self.config is None:
            self.not_sent(kind)
            return False
        session.add(
            MailMessage(
                kind=kind,
                to_address=to,
                subject=subject[:300],
                body=body,
                status="pending",
                attempts=0,
                next_attempt_at=utcnow(),
            )
        )
        return True

    def not_sent(self, kind: str) -> None:
        """An e-mail that would have been sent, had an SMTP server been configured (logged, counted)."""
        MAIL_UNCONFIGURED.labels(kind).inc()
        log.warning("no SMTP server configured (PLAIT_SMTP_HOST): %s e-mail not sent", kind)

    def wake(self) -> None:
        self._wake.set()

    def start(self, sup: Supervisor) -> None:
        if self.config is not None:
            self._task = sup.spawn("mail-send", self._loop())

    async def stop(self) -> None:
        """Stop sending: a mail cut short is sent again once its lease runs out (by this node after a restart,
        or by another)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            delay = IDLE_POLL_SECONDS
            try:
                due = await self._due()
                for mail in due:
                    await self._attempt(mail)
                if len(due) == BATCH:
                    continue
                delay = await self._next_due_in()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mail round failed")
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, delay))

    async def _due(self) -> list[MailMessage]:
        async with self.db.session() as s:
            rows = await s.scalars(
                select(MailMessage)
                .where(MailMessage.status == "pending", MailMessage.next_attempt_at <= utcnow())
                .order_by(MailMessage.next_attempt_at, MailMessage.seq)
                .limit(BATCH)
            )
            return list(rows.all())

    async def _next_due_in(self) -> float:
        async with self.db.session() as s:
            pending = await s.scalar(
                select(func.count()).select_from(MailMessage).where(MailMessage.status == "pending")
            )
            earliest = await s.scalar(
                select(func.min(MailMessage.next_attempt_at)).where(MailMessage.status == "pending")
            )
        MAIL_PENDING.set(int(pending or 0))
        if earliest is None:
            return IDLE_POLL_SECONDS
        return min(IDLE_POLL_SECONDS, max(0.0, (as_utc(earliest) - utcnow()).total_seconds()))

    async def _claim(self, mail: MailMessage) -> bool:
        return await claim_attempt(self.db, MailMessage, mail, LEASE)

    async def _attempt(self, mail: MailMessage) -> None:
        assert self.config is not None
        if not await self._claim(mail):
            return
        error: str | None = None
        try:
            await send(self.config, build_message(self.config, mail.to_address, mail.subject, mail.body, mail.id))
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        await self._record(mail, error)

    async def _record(self, mail: MailMessage, error: str | None) -> None:
        now = utcnow()
        attempts = mail.attempts + 1
        values: dict[str, object]
        if error is None:
            values = {"status": "sent", "attempts": attempts, "sent_at": now, "body": "", "last_error": None}
            MAIL_SENT.labels(mail.kind).inc()
            self.sent += 1
            log.info("mail %s (%s) sent", mail.id, mail.kind)
        elif attempts >= self.max_attempts:
            values = {"status": "failed", "attempts": attempts, "body": "", "last_error": error}
            MAIL_FAILED.labels(mail.kind).inc()
            log.error("mail %s (%s) given up after %d attempts: %s", mail.id, mail.kind, attempts, error)
        else:
            backoff = min(MAX_BACKOFF_SECONDS, self.retry_base * 2.0 ** (attempts - 1))
            values = {"attempts": attempts, "next_attempt_at": now + timedelta(seconds=backoff), "last_error": error}
            MAIL_ATTEMPT_FAILURES.labels(mail.kind).inc()
            log.warning(
                "mail %s (%s) attempt %d failed, retry in %.0f s: %s", mail.id, mail.kind, attempts, backoff, error
            )
        async with self.db.transaction() as s:
            await s.execute(update(MailMessage).where(MailMessage.id == mail.id).values(**values))
