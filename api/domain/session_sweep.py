"""The session sweep: each node re-checks, every ``PLAIT_SESSION_SWEEP_SECONDS``, the sessions and personal
access tokens its open sync sockets and notification streams were admitted with, and ends (4401) those no
longer live. Revocation already closes them at once on every node through Redis; the sweep catches what that
cannot: a session that timed out (not refreshed for ``PLAIT_REFRESH_TOKEN_TTL_SECONDS``), a token that expired,
and a revocation broadcast this node missed while Redis was away. Each pass also writes when the node's sessions
were last active (``SessionActivity``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from api.domain.session_activity import SessionActivity
from api.domain.sessions import SessionWatch, live_ids
from persistence.db import Database

if TYPE_CHECKING:
    from sync_server.service import SyncService
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.auth")


class SessionSweep:
    def __init__(
        self, db: Database, sync: SyncService, watch: SessionWatch, activity: SessionActivity, every: float
    ) -> None:
        self.db = db
        self.sync = sync
        self.watch = watch
        self.activity = activity
        self.every = every
        self.swept = 0  # sessions ended by the sweep on this node
        self._task: asyncio.Task[None] | None = None

    def start(self, sup: Supervisor) -> None:
        self._task = sup.spawn("session-sweep", self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        try:  # what was used since the last pass
            await self.activity.flush(self.db, set())
        except Exception:
            log.warning("session activity not written at stop", exc_info=True)

    async def sweep(self) -> set[str]:
        """End what is open here with a session that no longer lives (returns those ids); record the others, and
        the sessions requests were made with since the last pass, as active now."""
        held = self.sync.open_session_ids() | self.watch.watched_ids()
        dead: set[str] = set()
        if held:
            async with self.db.session() as s:
                dead = held - await live_ids(s, held)
        if dead:
            log.info("session sweep: %d ended session(s) still had sockets or streams here", len(dead))
            self.sync.end_sessions_here(dead)
            self.swept += len(dead)
        await self.activity.flush(self.db, held - dead)
        return dead

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("session sweep failed")
