"""The long fuzz run: a million frames (by default) against a running Plait server, reporting crashes, closes by
code, violations of the protocol (a valid frame closing its socket, a malformed one accepted or closed with an
undocumented code) and changes to the document caused by refused frames. The CI variant is
tests/test_reliability_fuzz.py; both use the generators and the oracle of tests/support/fuzz.py.

    python bench/fuzz.py                       # starts its own server (SQLite, 32 KiB message limit)
    python bench/fuzz.py --frames 20000        # a smoke run
    python bench/fuzz.py --base-url http://127.0.0.1:8000 --max-message-bytes 16777216 \
        --database-url sqlite+aiosqlite:///data/plait.db   # an already running server (it must allow
                                                           # registration and a high awareness rate)

Each worker owns one workspace and two sockets: a fuzz socket and an observer. It sends batches of valid frames
that do not change the document, then one suspect frame, then an awareness probe; the probe's echo proves every
frame before it was handled with the socket open, a close proves the suspect frame was refused. After a refusal
the observer asks the server for everything it lacks (sync step 1/2) and the update log head is read: neither may
have moved since just before the suspect frame. Document-changing valid frames (updates) go in their own
batches. Two bystander clients in another workspace keep syncing all along.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from pycrdt import Doc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from persistence.db import Database  # noqa: E402
from persistence.doclog import DocumentLog, open_document_log  # noqa: E402
from tests.support.fuzz import (  # noqa: E402
    KINDS,
    FrameContext,
    Observer,
    Prober,
    make_frame,
    valid_frame,
    verdict,
)
from tests.support.pyclient import YClient, sync_url  # noqa: E402
from tests.support.server import SECRET, free_port  # noqa: E402

VALID_PER_BATCH = 60  # valid frames that do not change the document, before each suspect frame
UPDATES_PER_BATCH = 20
SUSPECT_KINDS = tuple(k for k in KINDS if k != "valid")


class Stats:
    def __init__(self) -> None:
        self.frames = 0
        self.suspects: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()  # "<kind>:<open|code>"
        self.closes: Counter[int] = Counter()
        self.violations: list[str] = []
        self.doc_changes: list[str] = []
        self.reconnects = 0
        self.bystander_rounds = 0
        self.bystander_failures: list[str] = []
        self.observer_failures: list[str] = []


def _non_mutating(rng: random.Random, ctx: FrameContext) -> bytes:
    return valid_frame(rng, ctx, changes=False)


def _mutating(rng: random.Random, ctx: FrameContext) -> bytes:
    return valid_frame(rng, ctx, changes=True)


async def worker(
    n: int, url: str, store: DocumentLog | None, wid: str, stats: Stats, quota: list[int], max_message: int, seed: int
) -> None:
    rng = random.Random(seed * 1000 + n)
    ctx = FrameContext(max_message, doc=Doc(client_id=rng.randrange(1, 2**32)))
    # Suspect frames seed from documents of their own: a truncated increment of ``ctx.doc`` would leave a hole
    # in its clock that every later valid increment depends on.
    suspects = FrameContext(max_message)
    observer = Observer()
    await observer.open(url)
    prober = Prober(url)
    baseline: tuple[bytes, int] | None = None

    async def head() -> int:
        return (await store.heads([wid])).get(wid, 0) if store is not None else 0

    try:
        while quota[0] > 0:
            if rng.random() < 0.3:  # a batch of document updates: the document moves on
                frames: list[bytes | str] = [_mutating(rng, ctx) for _ in range(UPDATES_PER_BATCH)]
                outcome = await prober.send(frames)
                stats.frames += len(frames)
                quota[0] -= len(frames)
                if not outcome.open:
                    stats.violations.append(f"valid updates closed the socket with {outcome.code}")
                    stats.reconnects += 1
                baseline = None
                continue
            if baseline is None:
                state = await observer.state()
                ctx.state_vector = suspects.state_vector = state
                baseline = (state, await head())
            kind = rng.choice(SUSPECT_KINDS)
            _, suspect, expect = make_frame(rng, suspects, kind)
            frames = [_non_mutating(rng, ctx) for _ in range(VALID_PER_BATCH)]
            outcome = await prober.send([*frames, suspect])
            stats.frames += len(frames) + 1
            quota[0] -= len(frames) + 1
            stats.suspects[kind] += 1
            stats.outcomes[f"{kind}:{'open' if outcome.open else outcome.code}"] += 1
            problem = verdict(expect, outcome)
            if problem is not None:
                shown = suspect[:60] if isinstance(suspect, str) else suspect[:60].hex()
                stats.violations.append(f"{problem}: {kind} {shown!r}")
            if outcome.open:
                if expect != "open":
                    baseline = None  # an applicable "maybe" frame may have changed the document
                continue
            stats.closes[outcome.code or 0] += 1
            stats.reconnects += 1
            state_after = await observer.state()
            head_after = await head()
            if (state_after, head_after) != baseline:
                shown = suspect[:60] if isinstance(suspect, str) else suspect[:60].hex()
                stats.doc_changes.append(
                    f"refused {kind} frame (closed {outcome.code}) changed the document: {shown!r}"
                )
                baseline = None
    except Exception as exc:  # the observer's socket must never be closed by someone else's bad frames
        stats.observer_failures.append(f"worker {n}: {exc!r}")
    finally:
        await prober.close()
        await observer.close()


def _has(client: YClient, marker: str) -> bool:
    return marker in str(client.text("t"))


async def bystanders(url: str, stats: Stats, stop: asyncio.Event) -> None:
    writer, reader = YClient(), YClient()
    for c in (writer, reader):
        await c.connect(url)
        await c.wait_synced()
    i = 0
    while not stop.is_set():
        i += 1
        writer.text("t").insert(0, f"<{i}>")
        try:
            await reader.wait_for(functools.partial(_has, reader, f"<{i}>"), timeout=10)
            stats.bystander_rounds += 1
        except AssertionError as exc:
            stats.bystander_failures.append(f"round {i}: {exc}")
        if not (writer.connected and reader.connected):
            stats.bystander_failures.append(
                f"round {i}: a bystander was closed ({writer.close_code}, {reader.close_code})"
            )
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2)
    for c in (writer, reader):
        await c.close(announce=False)


def start_server(tmp: Path, max_message: int) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    db_url = f"sqlite+aiosqlite:///{tmp / 'plait.db'}"
    env = {
        **os.environ,
        "PLAIT_DATABASE_URL": db_url,
        "PLAIT_DATA_DIR": str(tmp),
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_MIGRATE_ON_START": "true",
        "PLAIT_ENV": "test",
        "PLAIT_PORT": str(port),
        "PLAIT_HOST": "127.0.0.1",
        "PLAIT_MAX_MESSAGE_BYTES": str(max_message),
        "PLAIT_MAX_AWARENESS_PER_SECOND": "1000000000",
        "PLAIT_QUOTA_REST_WRITES_PER_MINUTE": "100000",
    }
    log = open(tmp / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base, db_url
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {tmp / 'server.log'}")
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def _rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="plait-fuzz-"))
    proc: subprocess.Popen[bytes] | None = None
    if args.base_url:
        base, db_url = args.base_url.rstrip("/"), args.database_url
    else:
        proc, base, db_url = start_server(tmp, args.max_message_bytes)
    ws_base = base.replace("http", "ws", 1)
    email = f"fuzz-{os.urandom(5).hex()}@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post(
            "/api/auth/register", json={"email": email, "password": "fuzz fuzz fuzz", "display_name": "fuzz"}
        )
        r.raise_for_status()
        r = await http.post("/api/auth/login", json={"email": email, "password": "fuzz fuzz fuzz"})
        r.raise_for_status()
        token = r.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        wids = []
        for i in range(args.workers + 1):
            r = await http.post("/api/workspaces", json={"name": f"fuzz {i}"}, headers=headers)
            r.raise_for_status()
            wids.append(r.json()["id"])
    db = Database(db_url) if db_url else None
    store = open_document_log(db) if db is not None else None
    stats = Stats()
    quota = [args.frames]
    stop = asyncio.Event()
    rss_start = _rss_kib(proc.pid) if proc else None
    started = time.monotonic()
    by = asyncio.create_task(bystanders(sync_url(ws_base, wids[-1], token), stats, stop))

    async def progress() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 15)
            rate = stats.frames / max(1e-9, time.monotonic() - started)
            print(
                f"  {stats.frames:>9,} frames  {rate:,.0f}/s  closes {dict(stats.closes)}  "
                f"violations {len(stats.violations)}  doc changes {len(stats.doc_changes)}",
                flush=True,
            )
            if proc is not None and proc.poll() is not None:
                print(f"SERVER EXITED with {proc.returncode}", flush=True)
                return

    prog = asyncio.create_task(progress())
    await asyncio.gather(
        *(
            worker(
                n, sync_url(ws_base, wids[n], token), store, wids[n], stats, quota, args.max_message_bytes, args.seed
            )
            for n in range(args.workers)
        )
    )
    elapsed = time.monotonic() - started
    stop.set()
    await by
    await prog
    crashed = proc is not None and proc.poll() is not None
    ready = False
    with contextlib.suppress(httpx.HTTPError):
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"{base}/readyz", timeout=10)).status_code == 200
    rss_end = _rss_kib(proc.pid) if proc else None
    if db is not None:
        await db.dispose()
    if proc is not None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
    return {
        "frames": stats.frames,
        "seconds": round(elapsed, 1),
        "frames_per_second": round(stats.frames / elapsed),
        "suspect_frames": dict(sorted(stats.suspects.items())),
        "outcomes": dict(sorted(stats.outcomes.items())),
        "closes_by_code": {str(k): v for k, v in sorted(stats.closes.items())},
        "reconnects": stats.reconnects,
        "violations": len(stats.violations),
        "violation_examples": stats.violations[:20],
        "document_changes_from_refused_frames": len(stats.doc_changes),
        "document_change_examples": stats.doc_changes[:20],
        "log_head_checked": store is not None,
        "observer_failures": stats.observer_failures,
        "bystander_rounds": stats.bystander_rounds,
        "bystander_failures": stats.bystander_failures[:20],
        "server_crashed": crashed,
        "server_ready_after": ready,
        "server_rss_kib": {"start": rss_start, "end": rss_end},
        "max_message_bytes": args.max_message_bytes,
        "workers": args.workers,
        "seed": args.seed,
        "_tmp": str(tmp),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-message-bytes", type=int, default=32 * 1024)
    parser.add_argument("--base-url", help="fuzz this running server instead of starting one")
    parser.add_argument("--database-url", help="its database, to check the update log head after refusals")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    tmp = report.pop("_tmp")
    bad = bool(
        report["violations"]
        or report["document_changes_from_refused_frames"]
        or report["server_crashed"]
        or report["observer_failures"]
        or report["bystander_failures"]
        or not report["server_ready_after"]
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if bad:
        print(f"FAILED; the server's log and database are kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
