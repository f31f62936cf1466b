"""Which log sequence numbers of a document are in a room's memory: the multi-node gap detector.

Another node's updates arrive over pub/sub, at most once and possibly out of order; a hole that stays open
means a message was lost, and the room catches up from the database (the truth)."""

from __future__ import annotations

import time


class AppliedSeqs:
    __slots__ = ("_above", "gap_since", "last_seq", "upto")

    def __init__(self, last_seq: int) -> None:
        self.upto = last_seq  # every seq <= this is applied here
        self.last_seq = last_seq  # highest log sequence number known in memory
        self._above: set[int] = set()  # applied seqs past a hole
        self.gap_since: float | None = None  # when the oldest open hole appeared (monotonic)

    def has(self, seq: int) -> bool:
        return seq <= self.upto or seq in self._above

    @property
    def has_gap(self) -> bool:
        return bool(self._above)

    def mark(self, seq: int) -> bool:
        """Record that log entry ``seq`` is in memory; False if it already was."""
        if self.has(seq):
            return False
        self._above.add(seq)
        while self.upto + 1 in self._above:
            self.upto += 1
            self._above.discard(self.upto)
        self.last_seq = max(self.last_seq, seq)
        self.gap_since = (self.gap_since or time.monotonic()) if self._above else None
        return True

    def advance_to(self, last_seq: int) -> None:
        """Everything up to ``last_seq`` was merged from the database."""
        if last_seq > self.upto:
            self.upto = last_seq
            self._above = {s for s in self._above if s > last_seq}
            self.last_seq = max(self.last_seq, last_seq)
            self.gap_since = time.monotonic() if self._above else None

    def repair_soon(self) -> None:
        """An update could not be applied: catch up from the database at the next check."""
        self.gap_since = 0.0
