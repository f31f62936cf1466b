"""An in-memory update log for in-process tests of the writer and the room: the append contract of the real
backends (contiguous seqs per workspace, one batch all or nothing, ``UnknownDocument`` for a workspace with no
head), with every batch recorded, and a gate a test can close to hold commits back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from persistence.doclog import PendingUpdate, UnknownDocument


class MemoryLog:
    def __init__(self, *workspaces: str) -> None:
        self.heads: dict[str, int] = dict.fromkeys(workspaces, 0)
        self.rows: dict[str, list[tuple[int, bytes]]] = {w: [] for w in workspaces}
        self.batches: list[list[PendingUpdate]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: BaseException | None = None

    async def append_batch(self, batch: Sequence[PendingUpdate]) -> list[int]:
        await self.gate.wait()
        self.batches.append(list(batch))
        if self.fail_with is not None:
            raise self.fail_with
        for u in batch:
            if u.workspace_id not in self.heads:
                raise UnknownDocument(u.workspace_id)
        seqs = []
        for u in batch:
            self.heads[u.workspace_id] += 1
            seq = self.heads[u.workspace_id]
            self.rows[u.workspace_id].append((seq, u.data))
            seqs.append(seq)
        return seqs
