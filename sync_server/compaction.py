"""Folding a document's log tail into its snapshot: when (a pure policy) and the doing (the compactor).

The crash-safety invariant is the store's (persistence/doclog): the snapshot replaces the rows it
covers in one transaction. The snapshot is taken from the room's memory, durable state only, so a fold costs
one encoding of the document and no read of it from the database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from persistence.doclog import DocumentLog, UnknownDocument

from . import metrics
from .errors import RoomFailed

log = logging.getLogger("plait.sync.compaction")
SNAPSHOT_RATIO = 8  # a tail of 1/8 of the snapshot's bytes is worth re-encoding the document
ROWS_CAP = 20  # ... and so is one of 20 x compaction_max_updates rows, whatever their size

RunSoon = Callable[[str, Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class LogStats:
    """What a room's log holds beyond its stored snapshot: the counters the policy reads."""

    __slots__ = ("compacted_for_unload", "compacting", "snapshot_bytes", "tail_bytes", "tail_count")

    def __init__(self, tail_count: int, tail_bytes: int, snapshot_bytes: int) -> None:
        self.tail_count = tail_count
        self.tail_bytes = tail_bytes
        self.snapshot_bytes = snapshot_bytes
        self.compacting = False
        self.compacted_for_unload = False  # the janitor folded it once before unloading

    @property
    def stored_bytes(self) -> int:
        """Bytes stored for the document (snapshot + log tail): what the size quota counts."""
        return self.snapshot_bytes + self.tail_bytes

    def appended(self, rows: int, nbytes: int) -> None:
        self.tail_count += rows
        self.tail_bytes += nbytes
        self.compacted_for_unload = False

    def folded(self, snapshot_bytes: int, last_seq: int, upto: int) -> None:
        """The snapshot now covers every row up to ``upto``; rows above it stay in the log."""
        self.snapshot_bytes = snapshot_bytes
        self.tail_count = max(0, last_seq - upto)
        self.tail_bytes = 0 if self.tail_count == 0 else self.tail_bytes // 2


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    max_updates: int
    max_bytes: int

    def due(self, stats: LogStats) -> bool:
        """Fold the log tail once it is worth an encoding of the whole document: at least ``max_updates`` rows
        holding an eighth of the snapshot's bytes, so that the encodings' cost per update stays bounded as a
        workspace grows (why: docs/performance.md#compaction-ratio). ``max_bytes`` or ROWS_CAP times the row
        count fold it in any case (bounded replay after a crash; unload and shutdown fold it too)."""
        if stats.tail_bytes >= self.max_bytes or stats.tail_count >= ROWS_CAP * self.max_updates:
            return True
        return stats.tail_count >= self.max_updates and stats.tail_bytes * SNAPSHOT_RATIO >= stats.snapshot_bytes


class Foldable(Protocol):
    """What the compactor needs of a room."""

    @property
    def workspace_id(self) -> str: ...
    @property
    def log(self) -> LogStats: ...
    @property
    def last_seq(self) -> int: ...
    async def snapshot(self) -> tuple[bytes, int] | None: ...


class Compactor:
    """Runs folds, at most one per room at a time, and owns them (the shutdown fold waits for them)."""

    def __init__(self, store: DocumentLog, policy: CompactionPolicy, run_soon: RunSoon) -> None:
        self.store = store
        self.policy = policy
        self._run_soon = run_soon
        self._tasks: set[asyncio.Task[None]] = set()

    def committed(self, room: Foldable) -> None:
        """After a room's commit: fold when the policy says so."""
        if self.policy.due(room.log):
            self.soon(room)

    def soon(self, room: Foldable) -> None:
        if not room.log.compacting:
            room.log.compacting = True
            task = self._run_soon(f"compact-{room.workspace_id}", self._fold(room))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def fold_all(self, rooms: list[Foldable], within: float) -> None:
        """At shutdown: fold every room given, so the next start loads each as one chunk."""
        for room in rooms:
            self.soon(room)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=within)
            if late:
                log.warning(
                    "shutdown: %d compaction(s) still running after %.0f s, left to the next start", len(late), within
                )

    async def _fold(self, room: Foldable) -> None:
        try:
            taken = await room.snapshot()
            if taken is None:
                return
            data, upto = taken
            result = await self.store.save_snapshot(room.workspace_id, data, upto)
            if result is not None:
                _, removed = result
                metrics.COMPACTIONS.inc()
                room.log.folded(len(data), room.last_seq, upto)
                log.info(
                    "compacted %s: %d rows folded into the snapshot (upto seq %d)", room.workspace_id, removed, upto
                )
        except RoomFailed:
            pass  # the room is being rebuilt from the database; its log stays as it is
        except UnknownDocument:
            log.info("compaction of %s skipped: the workspace was deleted", room.workspace_id)
        except Exception:
            log.exception("compaction of %s failed (nothing lost; retried later)", room.workspace_id)
        finally:
            room.log.compacting = False
