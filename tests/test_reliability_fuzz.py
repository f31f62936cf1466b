"""Abuse of the sync socket on a real server: hypothesis-fuzzed frames (random bytes, truncated and mutated valid
messages, huge varints, invalid awareness, text and oversize frames) and repeated kill -9 under a write storm.

Fuzzing asserts, frame by frame (tests/support/fuzz.py has the generators and the oracle): the server never
crashes and the clients beside the fuzzer keep syncing; a malformed frame closes its socket with a documented
code and a valid one leaves it open; a refused frame changes neither the live document (as an independent client
sees it through sync step 1/2) nor the update log. The long variant is bench/fuzz.py (a million frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Map

from persistence.db import Database
from persistence.doclog import open_document_log
from tests.support.databases import fresh_database, stored_doc
from tests.support.fuzz import KINDS, FrameContext, Observer, Prober, make_frame, verdict
from tests.support.metrics import scrape, value
from tests.support.pyclient import YClient, sync_url
from tests.support.server import SECRET, ProcessServer, ThreadServer
from tests.support.users import create_workspace, register

T = TypeVar("T")
MAX_MESSAGE = 32 * 1024
FUZZ_EXAMPLES = 300
KILL_ROUNDS = 3


class LoopThread:
    """An event loop in a thread, so hypothesis' synchronous examples can drive long-lived async clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


@pytest.mark.slow
def test_fuzzed_frames_close_with_documented_codes_and_never_change_the_document(
    make_server: Callable[..., ThreadServer], loop_thread: LoopThread
) -> None:
    server = make_server("sqlite", max_message_bytes=MAX_MESSAGE, max_awareness_per_second=1e6)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        owner = register(http, "fuzzer")
        wid = create_workspace(http, owner)
    url = sync_url(server.ws_url, wid, owner.token)
    db_url = server.settings.resolved_database_url()
    ctx = FrameContext(MAX_MESSAGE)
    counts: Counter[str] = Counter()
    run = loop_thread.run

    async def setup() -> tuple[Observer, YClient, YClient, Database]:
        observer = Observer()
        await observer.open(url)
        ctx.state_vector = await observer.state()
        a, b = YClient(), YClient()
        for c in (a, b):
            await c.connect(url)
            await c.wait_synced()
        return observer, a, b, Database(db_url)

    observer, writer, reader, db = run(setup())
    store = open_document_log(db)

    async def head() -> int:
        return (await store.heads([wid])).get(wid, 0)

    async def bystanders_sync(n: int) -> None:
        writer.map("bystander")[str(n)] = n
        await reader.wait_for(lambda: reader.map("bystander").get(str(n)) == n, timeout=10)
        assert writer.connected and reader.connected, "the clients beside the fuzzer must never be closed"

    async def check(kind: str, frame: bytes | str, expect: str) -> None:
        before_state, before_head = await observer.state(), await head()
        prober = Prober(url)
        outcome = await prober.send([frame])
        await prober.close()
        problem = verdict(expect, outcome)  # type: ignore[arg-type]
        shown = frame[:80] if isinstance(frame, str) else frame[:80].hex()
        assert problem is None, f"{problem}: {kind} frame ({len(frame)} bytes) {shown!r}"
        counts[f"{kind}:{'open' if outcome.open else outcome.code}"] += 1
        if not outcome.open:
            after_state = await observer.state()
            assert after_state == before_state, f"a refused {kind} frame changed the live document: {shown!r}"
            assert await head() == before_head, f"a refused {kind} frame reached the update log: {shown!r}"

    done = 0

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(kind=st.sampled_from(KINDS), rng=st.randoms(use_true_random=False))
    def one_frame(kind: str, rng: random.Random) -> None:
        nonlocal done
        # Generation must not depend on earlier examples (hypothesis replays them): a fresh pool each time and the
        # state vector from the start (an older state vector of the same document is still valid).
        _, frame, expect = make_frame(rng, FrameContext(MAX_MESSAGE, ctx.state_vector), kind)
        run(check(kind, frame, expect))
        done += 1
        if done % 25 == 0:
            run(bystanders_sync(done))

    try:
        one_frame()
        run(bystanders_sync(-1))
        assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200
        assert server._thread is not None and server._thread.is_alive(), "the server crashed"
        assert not writer.errors and not reader.errors, (writer.errors, reader.errors)
        assert {k.split(":")[0] for k in counts} == set(KINDS), f"some kinds of frame were never tried: {counts}"
        rejected = sum(v for k, v in counts.items() if not k.endswith(":open"))
        assert rejected > FUZZ_EXAMPLES // 4, f"too few malformed frames reached the server: {counts}"
        print("\nRELIABILITY-FUZZ " + json.dumps(dict(sorted(counts.items()))))
    finally:

        async def teardown() -> None:
            await observer.close()
            for c in (writer, reader):
                await c.close(announce=False)
            await db.dispose()

        run(teardown())


# ---- kill -9 under a write storm, repeated ---------------------------------------------------------------


def _keys(c: YClient) -> set[str]:
    return set((c.map("m").to_py() or {}).keys())


async def _stored_keys(url: str, wid: str) -> set[str]:
    doc = await stored_doc(url, wid)
    return set((doc.get("m", type=Map).to_py() or {}).keys())


@pytest.mark.slow
async def test_repeated_kill_9_under_write_storm_loses_nothing_any_peer_received(tmp_path: Path) -> None:
    db_url = fresh_database("sqlite", tmp_path)
    env = {
        "PLAIT_DATABASE_URL": db_url,
        "PLAIT_DATA_DIR": str(tmp_path),
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_MIGRATE_ON_START": "true",
        "PLAIT_ENV": "test",
        # compactions throughout the storm (every 5 to 100 rows), so the kill lands around them too: "a crash at
        # any point leaves the old or the new snapshot, never a hole" (docs/architecture.md)
        "PLAIT_COMPACTION_MAX_UPDATES": "5",
    }
    log = tmp_path / "server.log"
    server = ProcessServer(env, log_path=log).start()
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
    url = sync_url(server.ws_url, wid, owner.token)
    writers = [YClient() for _ in range(3)]
    written: list[set[str]] = [set() for _ in writers]
    rng = random.Random(7)
    checked = 0
    try:
        for rnd in range(KILL_ROUNDS):
            if rnd:
                server = ProcessServer(env, port=server.port, log_path=log).start()
            receivers = [YClient() for _ in range(2)]
            for c in writers + receivers:
                await c.connect(url)  # writers resend what never became durable in the previous round
                await c.wait_synced()

            async def storm(n: int, c: YClient, rnd: int = rnd) -> None:
                i = 0
                with contextlib.suppress(Exception):
                    while c.connected:
                        key = f"r{rnd}-w{n}-{i}"
                        c.map("m")[key] = i
                        written[n].add(key)
                        i += 1
                        await asyncio.sleep(0.002)

            tasks = [asyncio.create_task(storm(n, c)) for n, c in enumerate(writers)]
            await asyncio.sleep(rng.uniform(0.8, 1.5))
            compactions = value(scrape(server.base_url), "plait_compactions_total")  # this process's own count
            server.kill()
            await asyncio.gather(*tasks)
            for c in writers + receivers:
                await c.abort()

            seen = set().union(*(_keys(c) for c in receivers))
            seen |= set().union(*(_keys(c) - written[n] for n, c in enumerate(writers)))
            this_round = {k for k in seen if k.startswith(f"r{rnd}-")}
            assert len(this_round) > 50, f"round {rnd}: the storm delivered too little to mean anything"
            assert compactions >= 1, f"round {rnd}: no compaction ran during the storm"
            stored = await _stored_keys(db_url, wid)  # before anyone reconnects and re-sends
            lost = seen - stored
            assert not lost, f"round {rnd}: {len(lost)} updates a peer received were lost, e.g. {sorted(lost)[:5]}"
            checked += len(this_round)

        server = ProcessServer(env, port=server.port, log_path=log).start()
        for c in writers:
            await c.connect(url)
            await c.wait_synced()
        everything = set().union(*written)
        fresh = YClient()
        await fresh.connect(url)
        await fresh.wait_synced()
        await fresh.wait_for(lambda: _keys(fresh) == everything, timeout=30)
        for c in writers:
            await c.wait_for(functools.partial(lambda c: _keys(c) == everything, c), timeout=30)
        assert await _stored_keys(db_url, wid) == everything
        print(
            "\nRELIABILITY-KILL9 "
            + json.dumps({"rounds": KILL_ROUNDS, "updates_seen_checked": checked, "final_keys": len(everything)})
        )
        for c in [*writers, fresh]:
            await c.close()
    finally:
        server.stop()
