"""Failed-login throttling per (account, address) and per client address; registrations per address.

Failures live in the ``login_failures`` table, so every node behind a load balancer sees the same counts.
Only failures count: any number of different users may log in successfully from one address.

Nobody can lock someone else out: an address that fails too often on one account (or on all accounts) is
refused (429), but failures from other addresses only slow an account down (a growing delay before the
password is checked), they never refuse the right password. The client address is ``request.client``,
which uvicorn takes from ``X-Forwarded-For`` only when the peer is a trusted proxy
(``PLAIT_FORWARDED_ALLOW_IPS``, see docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError
from api.security import HashLane
from persistence.models import LoginFailure, as_utc, utcnow
from persistence.settings import Settings

ADDRESS_CHARS = 64  # the column's width


class LoginThrottle:
    def __init__(self, settings: Settings) -> None:
        self.window = timedelta(seconds=settings.login_failure_window_seconds)
        self.per_account_address = settings.login_max_failures_per_account_address
        self.per_address = settings.login_max_failures_per_address
        self.per_account = settings.login_max_failures_per_account
        self.delay_base = settings.login_delay_base_seconds
        self.max_delay = settings.login_max_delay_seconds

    async def _blocked_until(
        self, session: AsyncSession, where: list[ColumnElement[bool]], limit: int, now: datetime
    ) -> datetime | None:
        """When the ``limit``-th most recent failure leaves the window (None: not at the limit)."""
        if limit <= 0:
            return None
        nth = (
            await session.execute(
                select(LoginFailure.created_at)
                .where(*where, LoginFailure.created_at > now - self.window)
                .order_by(LoginFailure.created_at.desc())
                .limit(1)
                .offset(limit - 1)
            )
        ).scalar_one_or_none()
        return None if nth is None else as_utc(nth) + self.window

    async def check(self, session: AsyncSession, email: str, address: str) -> float:
        """Raise 429 with ``Retry-After`` when this address has too many recent failures on this account or on
        all accounts; otherwise return how long to wait before checking the password (0 unless the account
        itself has had more than ``login_max_failures_per_account`` failures from anywhere)."""
        now = utcnow()
        address = address[:ADDRESS_CHARS]
        until = [
            t
            for t in (
                await self._blocked_until(
                    session,
                    [LoginFailure.email == email, LoginFailure.address == address],
                    self.per_account_address,
                    now,
                ),
                await self._blocked_until(session, [LoginFailure.address == address], self.per_address, now),
            )
            if t is not None and t > now
        ]
        if until:
            retry = max(1, math.ceil((max(until) - now).total_seconds()))
            raise ApiError(429, "Too many failed login attempts; try again later", headers={"Retry-After": str(retry)})
        if self.per_account <= 0 or self.delay_base <= 0:
            return 0.0
        failures = await session.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(LoginFailure.email == email, LoginFailure.created_at > now - self.window)
        )
        beyond = int(failures or 0) - self.per_account
        if beyond < 0:
            return 0.0
        return min(self.max_delay, self.delay_base * 2.0 ** min(beyond, 30))

    async def record_failure(self, session: AsyncSession, email: str, address: str) -> None:
        now = utcnow()
        # Old rows are useless: prune them as we go instead of needing a separate job.
        await session.execute(delete(LoginFailure).where(LoginFailure.created_at <= now - self.window))
        session.add(LoginFailure(email=email, address=address[:ADDRESS_CHARS], created_at=now))
        await session.commit()

    async def record_success(self, session: AsyncSession, email: str, address: str) -> None:
        """Forget this client's own mistakes on this account; others' failures (an attacker's) stay."""
        await session.execute(
            delete(LoginFailure).where(LoginFailure.email == email, LoginFailure.address == address[:ADDRESS_CHARS])
        )
        await session.commit()


class RegistrationLimit:
    """Registration attempts per client address in a sliding window, counted in memory on each node.

    Registering costs a password hash; this keeps one address from making a node hash for it all day. The map
    of addresses is bounded: beyond ``MAX_ADDRESSES`` the least recently seen address is forgotten.
    """

    MAX_ADDRESSES = 65_536

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, address: str) -> None:
        """Count one attempt, or raise 429 with ``Retry-After`` when the address is at its limit."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        times = self._seen.pop(address, None) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        self._seen[address] = times
        if len(times) >= self.limit:
            retry = max(1, math.ceil(times[0] + self.window - now))
            raise ApiError(
                429, "Too many registrations from this address; try again later", headers={"Retry-After": str(retry)}
            )
        times.append(now)
        while len(self._seen) > self.MAX_ADDRESSES:
            self._seen.popitem(last=False)


class OneAtATime:
    """Login attempts on one account from one address run one after another (on this node): each is checked
    against the throttle after the previous one recorded its failure, so a burst of parallel guesses gets no
    more than the limit. A lock lives only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            _, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass(frozen=True)
class AuthGuards:
    """A node's defences of the password endpoints: the two password-hashing lanes, the registration rate per
    address and the one-at-a-time login attempts (built by the composition root, carried on the context)."""

    login: HashLane
    register: HashLane
    registrations: RegistrationLimit
    attempts: OneAtATime = field(default_factory=OneAtATime)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthGuards:
        waiting = settings.password_hash_max_waiting
        return cls(
            login=HashLane("login", settings.password_hash_threads, waiting),
            register=HashLane("register", settings.password_hash_register_threads, waiting, nice=10),
            registrations=RegistrationLimit(settings.register_max_per_address, settings.register_window_seconds),
        )
