"""A node's e-mail: the outbox and its sender, password reset requests (in the background), invite e-mail and
the digest scheduler (built by the composition root, carried on the context as ``ctx.mail``)."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.errors import Refused
from api.domain.mail import password_reset, templates
from api.domain.mail.digest import DigestScheduler
from api.domain.mail.outbox import MailOutbox
from api.domain.mail.smtp import SmtpConfig
from persistence.db import Database
from persistence.settings import Settings

if TYPE_CHECKING:
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.mail")

MAX_PENDING_RESETS = 256  # reset requests being looked up at once on a node; beyond: 503


class SlidingLimit:
    """At most ``limit`` hits per key in a sliding window, in memory on this node (a bounded map of keys)."""

    MAX_KEYS = 65_536

    def __init__(self, limit: int, window: float, what: str) -> None:
        self.limit = limit
        self.window = window
        self.what = what
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str) -> None:
        """Count one hit, or raise 429 with ``Retry-After`` when the key is at its limit."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        times = self._seen.pop(key, None) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        self._seen[key] = times
        if len(times) >= self.limit:
            retry = max(1, math.ceil(times[0] + self.window - now))
            raise Refused(429, f"Too many {self.what}; try again later", headers={"Retry-After": str(retry)})
        times.append(now)
        while len(self._seen) > self.MAX_KEYS:
            self._seen.popitem(last=False)


class MailService:
    def __init__(self, db: Database, settings: Settings, *, node_id: str) -> None:
        self.db = db
        self.settings = settings
        self.outbox = MailOutbox(
            db,
            SmtpConfig.from_settings(settings),
            retry_base=settings.mail_retry_base_seconds,
            max_attempts=settings.mail_max_attempts,
        )
        self.digest = DigestScheduler(self, node_id=node_id)
        window = settings.password_reset_window_seconds
        self.resets_per_email = SlidingLimit(settings.password_reset_max_per_email, window, "reset requests")
        self.resets_per_address = SlidingLimit(settings.password_reset_max_per_address, window, "reset requests")
        self.invite_mails = SlidingLimit(settings.invite_mail_max_per_user, 3600.0, "invite e-mails")
        self._sup: Supervisor | None = None
        self._pending_resets = 0
        self.resets_done = 0  # reset requests looked up (tests wait on it)

    def start(self, sup: Supervisor) -> None:
        self._sup = sup
        self.outbox.start(sup)
        self.digest.start(sup)

    async def stop(self) -> None:
        await self.digest.stop()
        await self.outbox.stop()

    def base_url(self, request_base: str | None = None) -> str:
        """Where mailed links point: ``PLAIT_PUBLIC_URL``; without it (refused in production when SMTP is on)
        the request's own base URL, or the address the node serves on."""
        base = self.settings.public_url or request_base or f"http://{self.settings.host}:{self.settings.port}"
        return base.rstrip("/")

    def request_password_reset(self, email: str, address: str, request_base: str) -> None:
        """Count the request (429 past the limits), then look the address up in the background: the caller
        answers 202 at once, whoever the address belongs to (or nobody). 503 when too many wait already."""
        self.resets_per_address.hit(address)
        self.resets_per_email.hit(email)
        if self._pending_resets >= MAX_PENDING_RESETS or self._sup is None:
            raise Refused(503, "Server busy; try again shortly", headers={"Retry-After": "1"})
        self._pending_resets += 1
        self._sup.run_soon("password-reset", self._reset(email, self.base_url(request_base)))

    async def _reset(self, email: str, base: str) -> None:
        try:
            await password_reset.request(self, email, base)
        finally:
            self._pending_resets -= 1
            self.resets_done += 1

    def queue_invite(
        self,
        session: AsyncSession,
        *,
        inviter_id: str,
        inviter: str,
        to: str,
        workspace: str,
        role: str,
        link: str,
        expires: str,
    ) -> bool:
        """Add the invite's e-mail to the caller's transaction (429 past the inviter's hourly limit); False
        when no SMTP server is configured."""
        if not self.outbox.configured:
            return False
        self.invite_mails.hit(inviter_id)
        subject, body = templates.invite(inviter, workspace, role, link, expires)
        return self.outbox.queue(session, "invite", to, subject, body)
