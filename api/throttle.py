"""Failed-login throttling per account and per client address.

Failures live in the ``login_failures`` table, so every node behind a load balancer sees the same counts.
Only failures count: any number of different users may log in successfully from one address.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from api.errors import ApiError
from api.schemas import as_utc
from persistence.models import LoginFailure, utcnow
from persistence.settings import Settings


class LoginThrottle:
    def __init__(self, settings: Settings) -> None:
        self.window = timedelta(seconds=settings.login_failure_window_seconds)
        self.per_account = settings.login_max_failures_per_account
        self.per_address = settings.login_max_failures_per_address

    async def _blocked_until(
        self, session: AsyncSession, column: InstrumentedAttribute[str], value: str, limit: int, now: datetime
    ) -> datetime | None:
        """When the ``limit``-th most recent failure leaves the window (None: not at the limit)."""
        if limit <= 0:
            return None
        nth = (
            await session.execute(
                select(LoginFailure.created_at)
                .where(column == value, LoginFailure.created_at > now - self.window)
                .order_by(LoginFailure.created_at.desc())
                .limit(1)
                .offset(limit - 1)
            )
        ).scalar_one_or_none()
        return None if nth is None else as_utc(nth) + self.window

    async def check(self, session: AsyncSession, email: str, address: str) -> None:
        """Raise 429 with ``Retry-After`` when the account or the address has too many recent failures."""
        now = utcnow()
        until = [
            t
            for t in (
                await self._blocked_until(session, LoginFailure.email, email, self.per_account, now),
                await self._blocked_until(session, LoginFailure.address, address, self.per_address, now),
            )
            if t is not None and t > now
        ]
        if until:
            retry = max(1, math.ceil((max(until) - now).total_seconds()))
            raise ApiError(429, "Too many failed login attempts; try again later", headers={"Retry-After": str(retry)})

    async def record_failure(self, session: AsyncSession, email: str, address: str) -> None:
        now = utcnow()
        # Old rows are useless: prune them as we go instead of needing a separate job.
        await session.execute(delete(LoginFailure).where(LoginFailure.created_at <= now - self.window))
        session.add(LoginFailure(email=email, address=address[:64], created_at=now))
        await session.commit()

    async def record_success(self, session: AsyncSession, email: str, address: str) -> None:
        """Forget this client's own mistakes on this account; others' failures (an attacker's) stay."""
        await session.execute(
            delete(LoginFailure).where(LoginFailure.email == email, LoginFailure.address == address[:64])
        )
        await session.commit()
