"""Group commit: every accepted update is appended to the log before anyone else sees it.

One writer task per process. Updates that arrive while a commit is in flight wait in the queue and go into
the next transaction together, so commits per second stay low while throughput grows with load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from persistence.doclog import PendingUpdate, UnknownDocument

from . import metrics

log = logging.getLogger("plait.sync.writer")


@dataclass(eq=False)
class WriteRequest:
    """One update waiting for its commit. ``done`` is its one completion channel: the log seq, or the error. A
    request completed before the writer takes it (its room failed) is never written: the log must never get a
    later update of a room without an earlier one."""

    workspace_id: str
    data: bytes
    actor_id: str | None
    received: float | None = None  # perf_counter when the update arrived (fan-out latency metric)
    source: str = ""  # Principal.source of the change: "ws:<id>", "rest", "server"
    changes: tuple[object, ...] = ()  # field-level changes of the document model (notifications, activity)
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def seq(self) -> int | None:
        done = self.done
        if done.done() and not done.cancelled() and done.exception() is None:
            return done.result()
        return None

    @property
    def error(self) -> BaseException | None:
        done = self.done
        return done.exception() if done.done() and not done.cancelled() else None

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
            self.done.exception()  # mark retrieved: whoever waits on it (or the room) reports it


class LogAppender(Protocol):
    """The one thing the writer needs of the update log: append a batch in one transaction, returning each
    update's log seq (contiguous per workspace), or raise ``UnknownDocument`` and write nothing."""

    async def append_batch(self, batch: Sequence[PendingUpdate]) -> list[int]: ...


class GroupCommitWriter:
    def __init__(self, store: LogAppender, *, max_batch: int = 512, max_wait_ms: float = 0.0) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[WriteRequest] = asyncio.Queue()
        self._task: asyncio.Task[object] | None = None
        self._stopped = False

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        self._stopped = True
        if self._task is None:
            return  # never ran (a loop that starts later returns at once)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=10)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def submit(self, request: WriteRequest) -> None:
        self._queue.put_nowait(request)

    async def run(self) -> None:
        """The writer loop (run it under the node's supervisor); ``stop`` drains the queue and ends it."""
        if self._stopped:
            return
        self._task = asyncio.current_task()
        while True:
            batch = [await self._queue.get()]
            if self.max_wait:
                await asyncio.sleep(self.max_wait)
            else:
                await asyncio.sleep(0)  # let readers woken in this loop turn enqueue too
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [r for r in batch if not r.done.done()]
            try:
                if live:
                    await self._commit(live)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[WriteRequest]) -> None:
        started = time.perf_counter()
        try:
            seqs = await self.store.append_batch([PendingUpdate(r.workspace_id, r.data, r.actor_id) for r in batch])
        except UnknownDocument as exc:
            # The workspace was deleted while its update waited (nothing of the batch was written): only its
            # own requests fail; the others are committed without it.
            gone = str(exc.args[0]) if exc.args else ""
            log.info("workspace %s was deleted before its update was committed: dropped", gone)
            self._fail([r for r in batch if r.workspace_id == gone], exc)
            rest = [r for r in batch if r.workspace_id != gone]
            if rest and len(rest) < len(batch):
                await self._commit(rest)
            elif rest:
                self._fail(rest, exc)
            return
        except Exception as exc:
            log.error("commit of %d updates failed: %r", len(batch), exc)
            metrics.COMMIT_FAILURES.inc()
            self._fail(batch, exc)
            return
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.COMMIT_BATCH.observe(len(batch))
        for r, seq in zip(batch, seqs, strict=True):
            if not r.done.done():
                r.done.set_result(seq)

    @staticmethod
    def _fail(requests: list[WriteRequest], exc: BaseException) -> None:
        for r in requests:
            r.fail(exc)
