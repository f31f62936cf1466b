"""``kill -USR1 <pid>``: log every asyncio task of the node with where it waits; and a process that has shut
down but does not exit is ended, with that list.

A node that does not stop, or a socket that never answers, is usually one coroutine waiting on something
that will not come; a thread dump only shows the event loop's ``select``. This walks each task's chain of
awaited coroutines instead and logs it, without stopping anything (docs/operations.md#a-stuck-node).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

log = logging.getLogger("plait.tasks")


def _frames(coro: Any) -> Iterator[FrameType]:
    """The frames of a coroutine and of what it awaits, outermost first."""
    seen = 0
    while coro is not None and seen < 64:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
        seen += 1


def describe_tasks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """One block per task: its name, then where each coroutine of its await chain is suspended."""
    blocks = []
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        lines = [f"task {task.get_name()}{' (cancelling)' if task.cancelling() else ''}:"]
        for frame in _frames(task.get_coro()):
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        blocks.append("\n".join(lines))
    return f"{len(blocks)} asyncio task(s)\n" + "\n".join(blocks)


def _dump() -> None:
    log.warning("task dump (SIGUSR1): %s", describe_tasks())


@contextlib.contextmanager
def task_dump_on_signal() -> Iterator[None]:
    """While the node runs, SIGUSR1 logs its tasks (a no-op where the loop cannot take signal handlers)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGUSR1, _dump)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no Unix signals
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def exit_if_stalled(seconds: float) -> None:
    """Called when the application has shut down: if the process is still running ``seconds`` later (the event
    loop waits at exit for every task it cancels, so one task that ignores its cancellation holds the process for
    ever), log the tasks that are left as an error and exit with status 1."""
    loop = asyncio.get_running_loop()

    def stalled() -> None:
        try:
            left = describe_tasks(loop)
        except RuntimeError:  # the loop's task set changed under us; what is left is still worth the exit
            left = "(the tasks could not be listed)"
        log.error("the process did not exit %g s after its shutdown completed; ending it. %s", seconds, left)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, stalled)
    timer.daemon = True  # a process that exits normally does not wait for it
    timer.start()
