"""When each session was last used, without a write per request: authenticated REST calls mark their session in
memory, and each pass of the node's session sweep writes those marks, with the sessions of its open sockets and
streams, as one ``last_active_at`` (``GET /api/me/sessions``)."""

from __future__ import annotations

from sqlalchemy import update

from persistence.db import Database
from persistence.models import AuthSession, utcnow

WRITE_BATCH = 500  # ids per UPDATE


class SessionActivity:
    def __init__(self) -> None:
        self._seen: set[str] = set()

    def seen(self, session_id: str) -> None:
        """A request was made with this session (or personal access token, which has its own ``last_used_at``)."""
        self._seen.add(session_id)

    async def flush(self, db: Database, also: set[str]) -> int:
        """Write now as the last activity of what was seen since the last flush and of ``also``; how many ids."""
        ids, self._seen = self._seen | also, set()
        if not ids:
            return 0
        now, ordered = utcnow(), sorted(ids)
        async with db.transaction() as s:
            for at in range(0, len(ordered), WRITE_BATCH):
                chunk = ordered[at : at + WRITE_BATCH]
                await s.execute(
                    update(AuthSession)
                    .where(AuthSession.id.in_(chunk), AuthSession.revoked_at.is_(None))
                    .values(last_active_at=now)
                )
        return len(ids)
