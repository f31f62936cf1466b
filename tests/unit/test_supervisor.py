"""The supervisor in-process: stop order, bounded steps, crashed loops reported, jobs owned."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sync_server import supervisor
from sync_server.supervisor import Supervisor, SupervisorClosed


async def test_stop_steps_run_in_reverse_order_of_registration() -> None:
    order: list[str] = []

    def step(name: str):  # type: ignore[no-untyped-def]
        async def stop() -> None:
            order.append(name)

        return stop

    async with Supervisor() as sup:
        for name in ("database", "log", "workers", "sync"):
            sup.on_stop(name, step(name))
    assert order == ["sync", "workers", "log", "database"]


@pytest.mark.allow_errors("stopping stuck took more than")
async def test_a_stuck_stop_step_is_bounded_and_the_next_steps_still_run() -> None:
    ran: list[str] = []

    async def stuck() -> None:
        await asyncio.Event().wait()

    async def after() -> None:
        ran.append("after")

    async with Supervisor() as sup:
        sup.on_stop("after", after)
        sup.on_stop("stuck", stuck, timeout=0.05)
    assert ran == ["after"]


async def test_a_slow_stop_step_is_logged_with_its_duration(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(supervisor, "SLOW_STOP_STEP_SECONDS", 0.05)

    async def slow() -> None:
        await asyncio.sleep(0.06)

    async def quick() -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="plait.supervisor"):
        async with Supervisor() as sup:
            sup.on_stop("quick", quick)
            sup.on_stop("slow", slow)
    said = [r.getMessage() for r in caplog.records if r.name == "plait.supervisor"]
    assert len(said) == 1 and said[0].startswith("stopping slow took "), said


@pytest.mark.allow_errors("background loop writer crashed")
async def test_a_crashed_loop_is_a_failure_and_the_others_keep_running() -> None:
    ticks = 0

    async def crashes() -> None:
        raise RuntimeError("disk on fire")

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with Supervisor() as sup:
        sup.spawn("janitor", ticking())
        crashed = sup.spawn("writer", crashes())
        await crashed
        seen = ticks
        await asyncio.sleep(0.01)
        assert ticks > seen  # the group was not torn down by the crash
        assert not sup.healthy
        assert sup.failures == {"writer": "RuntimeError: disk on fire"}


@pytest.mark.allow_errors("background loop cluster ended before the node stopped")
async def test_a_loop_that_returns_early_is_a_failure() -> None:
    async def returns() -> None:
        return None

    async with Supervisor() as sup:
        await sup.spawn("cluster", returns())
        assert sup.failures == {"cluster": "ended"}


@pytest.mark.allow_errors("background job compaction failed")
async def test_a_failed_job_is_logged_but_not_a_failure_and_stop_cancels_what_runs() -> None:
    cancelled = asyncio.Event()

    async def fails() -> None:
        raise ValueError("bad snapshot")

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async with Supervisor() as sup:
        await sup.run_soon("compaction", fails())
        sup.spawn("listener", forever())
        await asyncio.sleep(0)
        assert sup.healthy
    assert cancelled.is_set()
    assert sup.healthy  # a loop cancelled by stop is not a failure


async def test_work_handed_to_a_supervisor_that_is_not_running_is_refused() -> None:
    sup = Supervisor()

    async def job() -> None:
        return None

    with pytest.raises(SupervisorClosed):
        sup.run_soon("early", job())
    async with sup:
        pass
    with pytest.raises(SupervisorClosed):
        sup.spawn("late", job())
