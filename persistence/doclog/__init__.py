"""The update log of the Yjs documents: an append-only log per workspace plus one compacted snapshot.

Invariants that make it crash-safe (every backend keeps them):
- ``documents.last_seq`` is bumped in the same transaction that inserts log rows, so the log's sequence
  numbers are contiguous per workspace and a committed row is never renumbered;
- a snapshot is written together with the deletion of exactly the rows it covers, in one transaction, so at
  any instant ``snapshot + rows after snapshot.upto_seq`` is the whole document (no hole: yrs and Yjs disagree
  on how to integrate across holes, see docs/architecture.md).

Callers see the :class:`DocumentLog` protocol; :func:`open_document_log` picks the backend for the database
(``sqlite.py``, ``postgres.py``: siblings that share only ``types.py`` and ``common.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.sql.elements import ClauseElement

from persistence.db import Database
from persistence.doclog.postgres import PostgresDocumentLog
from persistence.doclog.sqlite import SqliteDocumentLog
from persistence.doclog.types import LogClosed, PendingUpdate, StoredDocument, UnknownDocument, doc_from_chunks

__all__ = [
    "DocumentLog",
    "LogClosed",
    "PendingUpdate",
    "StoredDocument",
    "UnknownDocument",
    "doc_from_chunks",
    "open_document_log",
]


class DocumentLog(Protocol):
    """The document store. Every method raises :class:`LogClosed` at once after :meth:`close`."""

    @property
    def db(self) -> Database:
        """The database the log lives in."""
        ...

    @property
    def writes_in_log_order(self) -> bool:
        """Whether other writers must queue among the appends (:meth:`store_activity_summaries`): SQLite,
        whose one write lock every append waits for."""
        ...

    async def load(self, workspace_id: str) -> StoredDocument:
        """Snapshot and the log rows after it, read as one consistent view; UnknownDocument without a head."""
        ...

    async def warm_up(self) -> None:
        """Run a load once before the first join, so its connection is open (and its statement prepared)."""
        ...

    async def append_batch(self, batch: Sequence[PendingUpdate]) -> list[int]:
        """Append every update of ``batch`` in ONE transaction (group commit); returns their sequence numbers.

        Order inside a workspace is the order of ``batch``. Raises UnknownDocument (nothing written) if a
        workspace has no document head.
        """
        ...

    async def save_snapshot(self, workspace_id: str, data: bytes, upto: int) -> tuple[int, int] | None:
        """Store ``data`` as the snapshot and delete the log rows up to ``upto``; returns (upto, rows_removed).

        ``data`` is the room's document as it is in memory, which holds every row up to ``upto`` (it may hold
        later ones too: applying those again on load is harmless). Taking it from memory costs one encoding;
        rebuilding it from the database would cost a read and an apply of the whole document, on the event
        loop. Appends go on meanwhile (they only add rows after ``upto``); a snapshot that is not newer than
        the stored one (another node's, or a concurrent one) is dropped: None.
        """
        ...

    async def heads(self, workspace_ids: Collection[str]) -> dict[str, int]:
        """The durable log head (last_seq) of each workspace."""
        ...

    async def info(self, workspace_id: str) -> dict[str, object]:
        """Epoch, log head and storage figures of one document."""
        ...

    async def log_size(self, workspace_id: str) -> tuple[int, int]:
        """(rows, bytes) in the log tail: what compaction would fold."""
        ...

    async def reset_epoch(self, workspace_id: str | None = None) -> int:
        """Give one document (None: every one) a new epoch after a restore; returns rows changed."""
        ...

    async def write_among_appends(
        self, statements: Sequence[tuple[ClauseElement, Sequence[Mapping[str, Any]]]], json_params: Collection[str] = ()
    ) -> None:
        """Only where :attr:`writes_in_log_order`: run module-level ``statements``, each for its rows (the
        ``json_params`` serialized), in one transaction among the appends, committed or rolled back whole;
        a violated constraint raises SQLAlchemy's ``IntegrityError``."""
        ...

    async def store_activity_summaries(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Only where :attr:`writes_in_log_order`: write grown activity summaries
        (``persistence.activity_summaries.SUMMARY_UPDATE``) among the appends, in order, each job committed or
        rolled back whole; returns the ``doc_seq`` each row holds afterwards."""
        ...

    async def close(self) -> None:
        """Release the threads or connections; later calls fail at once."""
        ...


def open_document_log(db: Database) -> DocumentLog:
    """The backend for ``db``'s dialect."""
    return SqliteDocumentLog(db) if db.is_sqlite else PostgresDocumentLog(db)
