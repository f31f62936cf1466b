"""The update log's value types, in a module of their own so the backends import them and not each other."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc


@dataclass(frozen=True)
class PendingUpdate:
    """One Yjs update waiting for the group commit: which document, the bytes, who wrote it."""

    workspace_id: str
    data: bytes
    actor_id: str | None


def counts_by_workspace(batch: Iterable[PendingUpdate]) -> dict[str, int]:
    """How many rows each workspace's head moves by in one append (its seqs are allocated in one step)."""
    counts: dict[str, int] = {}
    for item in batch:
        counts[item.workspace_id] = counts.get(item.workspace_id, 0) + 1
    return counts


@dataclass(frozen=True)
class StoredDocument:
    """Everything needed to rebuild a document: snapshot, then the log after it, in order."""

    epoch: str
    snapshot: bytes | None
    snapshot_seq: int
    updates: list[tuple[int, bytes]]

    @property
    def last_seq(self) -> int:
        return self.updates[-1][0] if self.updates else self.snapshot_seq

    def chunks(self) -> list[bytes]:
        return ([self.snapshot] if self.snapshot else []) + [u for _, u in self.updates]

    def tail_bytes(self) -> int:
        return sum(len(u) for _, u in self.updates)

    def to_doc(self) -> Doc[Any]:
        """The document these chunks make, built on the calling thread (a 5 MB document takes tens of ms)."""
        return doc_from_chunks(self.chunks())


def doc_from_chunks(chunks: Iterable[bytes]) -> Doc[Any]:
    """A fresh ``Doc`` with ``chunks`` applied in order; an empty chunk (no stored state) is nothing to apply."""
    doc: Doc[Any] = Doc()
    for chunk in chunks:
        if chunk:
            doc.apply_update(chunk)
    return doc


class UnknownDocument(LookupError):
    """No ``documents`` row: the workspace does not exist (or was deleted)."""


class LogClosed(RuntimeError):
    """The document log was closed: it takes no more work (refused at once, never queued)."""
