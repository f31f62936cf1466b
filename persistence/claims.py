"""Claiming a row of an outbox (webhook deliveries, mail) for one attempt, so that of several nodes that read
it only one tries it: a conditional UPDATE that moves its ``next_attempt_at`` past the lease."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from persistence.db import Database
from persistence.models import utcnow


async def claim_attempt(db: Database, model: Any, row: Any, lease: timedelta) -> bool:
    """True if this caller took ``row`` (still pending, attempts unchanged, due); another that read it loses."""
    now = utcnow()
    async with db.transaction() as s:
        result = await s.execute(
            update(model)
            .where(
                model.id == row.id,
                model.status == "pending",
                model.attempts == row.attempts,
                model.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + lease)
            .execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0)) == 1
