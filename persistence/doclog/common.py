"""What both backends do the same way, through SQLAlchemy sessions: the reads and the epoch reset, none of
them on the hot path (the appends, the loads and the snapshots are each backend's own)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select, update
from sqlalchemy.sql.elements import ColumnElement

from persistence.db import Database
from persistence.doclog.types import LogClosed, UnknownDocument
from persistence.models import DocSnapshot, Document, DocUpdate


class SessionReads:
    """The base of both backends: the database, the closed flag, and the reads through sessions."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._closed = False

    def _check_open(self) -> None:
        """Refuse at once after ``close``: work queued behind the end would never run, nor its caller wake."""
        if self._closed:
            raise LogClosed("the document log is closed")

    def _new_epoch(self) -> ColumnElement[str]:
        """SQL for a fresh random epoch (the dialects have no common random function)."""
        raise NotImplementedError

    async def reset_epoch(self, workspace_id: str | None = None) -> int:
        """Give documents a new epoch (after storage was reset or restored from a backup), so clients holding
        history from before are refused instead of merging it back as duplicates. Returns rows changed."""
        self._check_open()
        async with self.db.transaction() as s:
            q = update(Document).values(epoch=self._new_epoch())
            if workspace_id is not None:
                q = q.where(Document.workspace_id == workspace_id)
            result = await s.execute(q)
        return int(getattr(result, "rowcount", 0))

    async def info(self, workspace_id: str) -> dict[str, object]:
        """Epoch, log head and storage figures of one document."""
        self._check_open()
        async with self.db.session() as s:
            head = await s.get(Document, workspace_id)
            if head is None:
                raise UnknownDocument(workspace_id)
            # The document's size, not the stored one (the quota counts what a client would download).
            snap = (
                await s.execute(
                    select(
                        DocSnapshot.upto_seq,
                        func.coalesce(DocSnapshot.raw_bytes, func.length(DocSnapshot.data)),
                    ).where(DocSnapshot.workspace_id == workspace_id)
                )
            ).one_or_none()
        rows, size = await self.log_size(workspace_id)
        return {
            "epoch": head.epoch,
            "last_seq": head.last_seq,
            "snapshot_seq": int(snap[0]) if snap else 0,
            "snapshot_bytes": int(snap[1]) if snap else 0,
            "log_rows": rows,
            "log_bytes": size,
        }

    async def heads(self, workspace_ids: Collection[str]) -> dict[str, int]:
        """The durable log head (last_seq) of each workspace; a workspace without a head is left out."""
        self._check_open()
        async with self.db.session() as s:
            rows = await s.execute(
                select(Document.workspace_id, Document.last_seq).where(Document.workspace_id.in_(workspace_ids))
            )
        return {wid: int(seq) for wid, seq in rows}

    async def log_size(self, workspace_id: str) -> tuple[int, int]:
        """(rows, bytes) in the log tail: what compaction would fold."""
        self._check_open()
        async with self.db.session() as s:
            n, size = (
                await s.execute(
                    select(func.count(), func.coalesce(func.sum(func.length(DocUpdate.data)), 0)).where(
                        DocUpdate.workspace_id == workspace_id
                    )
                )
            ).one()
        return int(n), int(size)
