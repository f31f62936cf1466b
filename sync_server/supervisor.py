"""One owner for every background task of a node, on ``asyncio.TaskGroup``.

Components are started in dependency order by the composition root; each registers how it stops
(``on_stop``), and ``stop`` runs those steps in the reverse order, each bounded in time, then cancels what is
still running. A long-lived loop (``spawn``) that raises is logged and recorded in ``failures``, which turns
``/readyz`` red: a dead writer or janitor must not go unnoticed until shutdown. Short jobs (``run_soon``) are
owned the same way but their failure is only logged: one failed compaction does not make a node unready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

log = logging.getLogger("plait.supervisor")
STOP_STEP_SECONDS = 15.0
SLOW_STOP_STEP_SECONDS = 2.0  # a step slower than this is logged: where a slow shutdown went


@dataclass(frozen=True, slots=True)
class _StopStep:
    name: str
    stop: Callable[[], Awaitable[object]]
    timeout: float


class SupervisorClosed(RuntimeError):
    """A task was handed to a supervisor that is not running (not entered yet, or already stopped)."""


class Supervisor:
    """Start, watch and stop the node's background work. Use as ``async with Supervisor() as sup:``."""

    def __init__(self) -> None:
        self._group: asyncio.TaskGroup | None = None
        self._steps: list[_StopStep] = []
        self._loops: set[asyncio.Task[None]] = set()
        self._jobs: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.failures: dict[str, str] = {}

    async def __aenter__(self) -> Supervisor:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(exc_type, exc, tb)

    @property
    def healthy(self) -> bool:
        return not self.failures

    @property
    def running(self) -> bool:
        return self._group is not None and not self._stopping

    def on_stop(self, name: str, stop: Callable[[], Awaitable[object]], timeout: float = STOP_STEP_SECONDS) -> None:
        """Register a component's stop step; steps run in the reverse order of registration."""
        self._steps.append(_StopStep(name, stop, timeout))

    def spawn(self, name: str, loop: Coroutine[Any, Any, object]) -> asyncio.Task[None]:
        """Run a loop meant to live as long as the node. Its end by an exception is a failure of the node."""
        self._refuse_unless_running(name, loop)
        task = self._create(name, self._watch_loop(name, loop))
        self._loops.add(task)
        task.add_done_callback(self._loops.discard)
        return task

    def run_soon(self, name: str, job: Coroutine[Any, Any, object]) -> asyncio.Task[None]:
        """Run a short job in the background; an exception is logged, not fatal."""
        self._refuse_unless_running(name, job)
        task = self._create(name, self._watch_job(name, job))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return task

    async def stop(self) -> None:
        """Run the stop steps in reverse order (each bounded by its timeout), then cancel what still runs."""
        if self._stopping:
            return
        self._stopping = True
        for step in reversed(self._steps):
            began = time.monotonic()
            try:
                await asyncio.wait_for(step.stop(), step.timeout)
                if (took := time.monotonic() - began) >= SLOW_STOP_STEP_SECONDS:
                    log.warning("stopping %s took %.1f s", step.name, took)
            except TimeoutError:
                log.error("stopping %s took more than %.0f s; going on", step.name, step.timeout)
            except Exception:
                log.exception("stopping %s failed; going on", step.name)
        self._steps.clear()
        pending = [t for t in (*self._loops, *self._jobs) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _refuse_unless_running(self, name: str, coro: Coroutine[Any, Any, object]) -> None:
        if self._group is None:
            coro.close()
            raise SupervisorClosed(f"supervisor not running: cannot start {name}")

    def _create(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._group is not None
        return self._group.create_task(coro, name=f"plait-{name}")

    async def _watch_loop(self, name: str, loop: Coroutine[Any, Any, object]) -> None:
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures[name] = f"{type(exc).__name__}: {exc}"[:200]
            log.exception("background loop %s crashed; the node reports not ready", name)
        else:
            if not self._stopping:
                self.failures[name] = "ended"
                log.error("background loop %s ended before the node stopped", name)

    @staticmethod
    async def _watch_job(name: str, job: Coroutine[Any, Any, object]) -> None:
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job %s failed", name)
