"""The audit log's retention: entries older than ``PLAIT_AUDIT_RETENTION_DAYS`` are deleted by one node of the
cluster (a leased job, every ``PLAIT_AUDIT_PRUNE_SECONDS``), oldest first, a batch per statement so a large
backlog never holds a long lock. Entries are appended in time order, so the oldest ones are the lowest ``seq``:
each batch looks only at the head of the primary key, never scans the table for old rows."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from prometheus_client import Counter
from sqlalchemy import delete, select

from api.domain.leased_job import LeasedJob
from persistence.db import Database
from persistence.models import AuditEntry, utcnow

if TYPE_CHECKING:
    from sync_server.supervisor import Supervisor

LEASE_NAME = "audit_retention"
PRUNED = Counter("plait_audit_entries_pruned_total", "Audit log entries deleted for being older than the retention")


async def prune_audit(db: Database, older_than: timedelta, batch: int) -> int:
    """Delete the entries older than ``older_than``; returns how many."""
    cutoff = utcnow() - older_than
    total = 0
    while True:
        async with db.transaction() as s:
            head = select(AuditEntry.seq).order_by(AuditEntry.seq).limit(batch).subquery()
            result = await s.execute(
                delete(AuditEntry).where(AuditEntry.seq.in_(select(head.c.seq)), AuditEntry.created_at < cutoff)
            )
        done = int(getattr(result, "rowcount", 0) or 0)
        total += done
        PRUNED.inc(done)
        if done < batch:
            return total


class AuditRetention:
    """The periodic prune, on the node that holds the lease; not started when the log is kept forever (0 days)."""

    def __init__(self, db: Database, *, node_id: str, days: int, every: float, batch: int) -> None:
        self.days = days
        self.batch = batch
        self.db = db
        self.job = LeasedJob(db, LEASE_NAME, node_id, every, self.run)

    def start(self, sup: Supervisor) -> None:
        if self.days > 0:
            self.job.start(sup)

    async def stop(self) -> None:
        await self.job.stop()

    async def run(self) -> int:
        return await prune_audit(self.db, timedelta(days=self.days), self.batch)
