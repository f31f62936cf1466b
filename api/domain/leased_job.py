"""A periodic job that runs on one node of the cluster at a time: the holder of a ``scheduler_leases`` row,
renewed at each run and taken over by another node once it lapses (three times ``every``, at least 10 s). What the job
does must be safe to repeat (its writes keyed so a second run adds nothing): a lapsed holder may still be
finishing a run when the next one starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, update

from persistence.db import Database, insert_ignoring_conflicts
from persistence.models import SchedulerLease, utcnow

if TYPE_CHECKING:
    from sync_server.supervisor import Supervisor


async def take_lease(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Hold (take or renew) the lease ``name`` for ``ttl`` seconds; False while another holder's runs."""
    now = utcnow()
    until = now + timedelta(seconds=ttl)
    async with db.transaction() as s:
        done = await s.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == name, or_(SchedulerLease.holder == holder, SchedulerLease.expires_at < now))
            .values(holder=holder, expires_at=until)
        )
        if done.rowcount:  # type: ignore[attr-defined]
            return True
        row = {"name": name, "holder": holder, "expires_at": until}
        await insert_ignoring_conflicts(s, db, SchedulerLease.__table__, [row], ["name"])  # type: ignore[arg-type]
        current = await s.get(SchedulerLease, name)
        return current is not None and current.holder == holder


async def release_lease(db: Database, name: str, holder: str) -> None:
    """Let another node take over at once (a clean stop)."""
    async with db.transaction() as s:
        await s.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == name, SchedulerLease.holder == holder)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


class LeasedJob:
    """Runs ``run`` every ``every`` seconds while this node (``holder``) holds the lease ``name``."""

    def __init__(
        self, db: Database, name: str, holder: str, every: float, run: Callable[[], Awaitable[object]]
    ) -> None:
        self.db = db
        self.name = name
        self.holder = holder
        self.every = every
        self.ttl = max(3 * every, 10.0)  # a lapsed holder is replaced within this
        self._run_once = run
        self._task: asyncio.Task[None] | None = None
        self._log = logging.getLogger(f"plait.{name}")
        self.runs = 0  # loop turns completed, lease held or not (tests wait on it)

    def start(self, sup: Supervisor) -> None:
        self._task = sup.spawn(self.name.replace("_", "-"), self._loop())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.wait([self._task])
        with contextlib.suppress(Exception):
            await release_lease(self.db, self.name, self.holder)

    async def _loop(self) -> None:
        while True:
            try:
                if await take_lease(self.db, self.name, self.holder, self.ttl):
                    await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("%s run failed", self.name)
            self.runs += 1
            await asyncio.sleep(self.every)
