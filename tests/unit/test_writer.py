"""The group-commit writer in-process, on an in-memory log: batching, order, and a failure that stays with
its own workspace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from persistence.doclog import UnknownDocument
from sync_server.writer import GroupCommitWriter, WriteRequest

from .memlog import MemoryLog


@pytest.fixture
async def running() -> AsyncIterator[tuple[GroupCommitWriter, MemoryLog]]:
    log = MemoryLog("a", "b")
    writer = GroupCommitWriter(log, max_batch=512)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    try:
        yield writer, log
    finally:
        await writer.stop()
        await asyncio.gather(task, return_exceptions=True)


async def test_what_is_queued_while_a_commit_is_in_flight_goes_into_the_next_one_together(
    running: tuple[GroupCommitWriter, MemoryLog],
) -> None:
    writer, log = running
    log.gate.clear()  # the first commit waits on the database
    first = WriteRequest("a", b"1", "u")
    writer.submit(first)
    await asyncio.sleep(0.01)
    later = [WriteRequest(w, d, "u") for w, d in (("a", b"2"), ("b", b"x"), ("a", b"3"))]
    for r in later:
        writer.submit(r)
    log.gate.set()
    await asyncio.gather(first.done, *(r.done for r in later))
    assert [len(b) for b in log.batches] == [1, 3]
    assert [first.seq] + [r.seq for r in later] == [1, 2, 1, 3]  # contiguous per workspace, in submit order
    assert log.rows["a"] == [(1, b"1"), (2, b"2"), (3, b"3")]


async def test_a_deleted_workspace_fails_only_its_own_requests(running: tuple[GroupCommitWriter, MemoryLog]) -> None:
    writer, log = running
    log.gate.clear()
    requests = [WriteRequest(w, d, None) for w, d in (("a", b"1"), ("gone", b"2"), ("b", b"3"))]
    for r in requests:
        writer.submit(r)
    log.gate.set()
    await asyncio.gather(*(r.done for r in requests), return_exceptions=True)
    assert [r.seq for r in requests] == [1, None, 1]
    assert isinstance(requests[1].error, UnknownDocument)
    assert requests[0].error is None and requests[2].error is None


@pytest.mark.allow_errors("commit of 2 updates failed")
async def test_a_failed_commit_fails_every_request_of_the_batch(running: tuple[GroupCommitWriter, MemoryLog]) -> None:
    writer, log = running
    log.gate.clear()
    log.fail_with = OSError("database gone")
    requests = [WriteRequest("a", b"1", None), WriteRequest("b", b"2", None)]
    for r in requests:
        writer.submit(r)
    log.gate.set()
    await asyncio.gather(*(r.done for r in requests), return_exceptions=True)
    assert all(isinstance(r.error, OSError) and r.seq is None for r in requests)
    assert log.heads == {"a": 0, "b": 0}


async def test_a_request_completed_before_its_commit_is_never_written(
    running: tuple[GroupCommitWriter, MemoryLog],
) -> None:
    """What a failed room does to its queued requests: a later update must never reach the log without an
    earlier one."""
    writer, log = running
    log.gate.clear()
    kept, dropped = WriteRequest("a", b"1", None), WriteRequest("a", b"2", None)
    writer.submit(kept)
    await asyncio.sleep(0.01)  # the first batch is in flight
    writer.submit(dropped)
    dropped.fail(RuntimeError("room failed"))
    log.gate.set()
    await kept.done
    await asyncio.sleep(0.01)
    assert log.rows["a"] == [(1, b"1")]
    assert dropped.seq is None


async def test_stop_drains_what_is_queued() -> None:
    log = MemoryLog("a")
    writer = GroupCommitWriter(log)
    requests = [WriteRequest("a", bytes([i]), None) for i in range(5)]
    for r in requests:
        writer.submit(r)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)  # running
    await asyncio.wait_for(writer.stop(), 5)
    await asyncio.gather(task, return_exceptions=True)
    assert [r.seq for r in requests] == [1, 2, 3, 4, 5]
