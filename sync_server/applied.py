"""Which log sequence numbers of a document are in a room's memory: the multi-node gap detector.

Another node's updates arrive over pub/sub, at most once and possibly out of order; a hole that stays open
means a message was lost, and the room catches up from the database (the truth). An update applied past a hole
is kept until the hole closes, to be applied again then: pycrdt (yrs) integrates an update across a missing
predecessor instead of holding it pending as Yjs does (y-crdt #632), and the document can differ from its source
for good; applied again in order, it converges."""

from __future__ import annotations

import time

# Updates kept past a hole; beyond, the hole's repair from the database (which merges in order) fixes it.
MAX_HELD = 256


class AppliedSeqs:
    __slots__ = ("_above", "_held", "gap_since", "last_seq", "upto")

    def __init__(self, last_seq: int) -> None:
        self.upto = last_seq  # every seq <= this is applied here
        self.last_seq = last_seq  # highest log sequence number known in memory
        self._above: set[int] = set()  # applied seqs past a hole
        self._held: dict[int, bytes] | None = None  # the updates of those seqs, to apply again once the hole closes
        self.gap_since: float | None = None  # when the oldest open hole appeared (monotonic)

    def has(self, seq: int) -> bool:
        return seq <= self.upto or seq in self._above

    @property
    def has_gap(self) -> bool:
        return bool(self._above)

    def mark(self, seq: int, update: bytes | None = None) -> list[bytes]:
        """Record that log entry ``seq`` is in memory. ``update``: its bytes, kept when it came past a hole.
        Returns the kept updates whose hole this closed, in seq order: apply them again."""
        if self.has(seq):
            return []
        if update is not None and seq > self.upto + 1:
            if self._held is None:
                self._held = {}
            if len(self._held) < MAX_HELD:
                self._held[seq] = update
        self._above.add(seq)
        while self.upto + 1 in self._above:
            self.upto += 1
            self._above.discard(self.upto)
        self.last_seq = max(self.last_seq, seq)
        self.gap_since = (self.gap_since or time.monotonic()) if self._above else None
        return self._release()

    def _release(self) -> list[bytes]:
        if not self._held:
            return []
        due = sorted(s for s in self._held if s <= self.upto)
        out = [self._held.pop(s) for s in due]
        if not self._held:
            self._held = None
        return out

    def advance_to(self, last_seq: int) -> None:
        """Everything up to ``last_seq`` was merged from the database."""
        if last_seq > self.upto:
            self.upto = last_seq
            self._above = {s for s in self._above if s > last_seq}
            self.last_seq = max(self.last_seq, last_seq)
            self.gap_since = time.monotonic() if self._above else None
            self._release()  # the database's merge was applied in order: nothing to apply again

    def repair_soon(self) -> None:
        """An update could not be applied: catch up from the database at the next check."""
        self.gap_since = 0.0
