"""The abuse run of issue 21: every attack of the issue, scaled down, replayed by one account (or a handful) against
a real node on loopback, with the node's peak and remaining RSS, the growth of its data directory and what the
attacker and the bystanders saw (accepted/refused counts, close codes, HTTP statuses, latencies).

    python bench/abuse.py                                   # this checkout's server, SQLite, ~4 minutes
    python bench/abuse.py --server-root /path/to/checkout   # the same attacks against another checkout's server
    python bench/abuse.py --only 1,3 --aw-seconds 5         # some attacks, smaller
    python bench/abuse.py --render before.json after.json   # the before/after table (Markdown) of two runs

The node is ``<server-root>/.venv/bin/python -m api serve`` with ``PLAIT_DATA_DIR=<tmp>`` (SQLite), the
production password hashing cost and default limits; the only settings changed are
``PLAIT_WEBHOOK_ALLOW_PRIVATE=true`` (the webhook receivers are on loopback) and those given with ``--set``.
Every client connects from its own 127.x.y.z address where the address matters (logins, registrations), so
per-address throttles see distinct clients, as they would on a network.

Its RSS is sampled every ``--sample-ms`` (psutil) and the data directory's allocated size is read before and
after each attack. Each attack is one row: RSS before it, its peak and what is still held 2 s after the attack
let go of everything, disk growth, duration and the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from pycrdt import Doc, Map, Text, create_sync_message, create_update_message
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ROOT = Path(__file__).resolve().parent.parent
SECRET = "abuse-run-secret-key-long-enough-for-hs256-0123456789abcdef"
PASSWORD = "correct horse battery staple"
MB = 1024 * 1024
Outcome = tuple[str, dict[str, Any]]


# ---- the node -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """``python -m api serve`` of ``root`` (with that checkout's virtualenv) on a fresh SQLite data directory."""

    def __init__(self, root: Path, work: Path, extra: dict[str, str], allow_private: bool = True) -> None:
        self.root = root
        self.allow_private = allow_private
        self.data = work / "data"
        self.log = work / "server.log"
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        env.update(
            {
                "PLAIT_DATA_DIR": str(self.data),
                "PLAIT_SECRET_KEY": SECRET,
                "PLAIT_HOST": "127.0.0.1",
                "PLAIT_PORT": str(self.port),
                **({"PLAIT_WEBHOOK_ALLOW_PRIVATE": "true"} if self.allow_private else {}),
                **self.extra,
            }
        )
        self.data.mkdir(parents=True, exist_ok=True)
        python = self.root / ".venv" / "bin" / "python"
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(python), "-m", "api", "serve"], cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def disk_bytes(self) -> int:
        total = 0
        for path in self.data.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    total += path.stat().st_blocks * 512
        return total


class RssSampler(threading.Thread):
    """The node's RSS every ``interval`` seconds; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()

    def current(self) -> int:
        try:
            return int(self.proc.memory_info().rss)
        except psutil.Error:
            return 0

    def run(self) -> None:
        while not self._stop.is_set():
            rss = self.current()
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def reset(self) -> int:
        rss = self.current()
        self.peak = rss
        return rss

    def stop(self) -> None:
        self._stop.set()


# ---- clients ---------------------------------------------------------------------------------------------------


class Addresses:
    """Distinct loopback source addresses (127.1.0.1, 127.1.0.2, ...): one per client whose address counts."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"127.1.{self.n // 250}.{self.n % 250 + 1}"


@dataclass
class Account:
    email: str
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Ctx:
    args: argparse.Namespace
    node: Node
    sampler: RssSampler
    addrs: Addresses = field(default_factory=Addresses)
    big: tuple[Account, str, int] | None = None  # owner, workspace, document bytes
    baseline: tuple[int, int, float] | None = None  # RSS, disk, time at the attack's start

    async def mark(self) -> None:
        """The attack proper starts now: its accounts and workspaces are made (argon2 takes 64 MiB per hash,
        returned within a second or so by malloc_trim: wait for that first)."""
        await settle(self, limit=8.0, samples=4)
        self.baseline = (self.sampler.reset(), self.node.disk_bytes(), time.monotonic())

    @property
    def ws(self) -> str:
        return self.node.base.replace("http", "ws", 1)

    def http(self, address: str = "127.0.0.1", timeout: float = 120.0) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(
            local_address=address, limits=httpx.Limits(max_connections=None, max_keepalive_connections=None)
        )
        return httpx.AsyncClient(base_url=self.node.base, transport=transport, timeout=timeout)

    def sync_url(self, wid: str, token: str) -> str:
        return f"{self.ws}/sync/{wid}?token={token}"


async def register(ctx: Ctx, name: str, address: str | None = None) -> Account:
    email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
    async with ctx.http(address or ctx.addrs.next()) as http:
        r = await http.post("/api/auth/register", json={"email": email, "password": PASSWORD, "display_name": name})
        if r.status_code != 201:
            raise RuntimeError(f"registering {name}: {r.status_code} {r.text[:200]}")
        user_id = r.json()["id"]
        r = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        if r.status_code != 200:
            raise RuntimeError(f"logging {name} in: {r.status_code} {r.text[:200]}")
        return Account(email, user_id, r.json()["access_token"])


async def new_workspace(ctx: Ctx, owner: Account, name: str) -> str:
    async with ctx.http() as http:
        r = await http.post("/api/workspaces", json={"name": name}, headers=owner.headers)
        if r.status_code != 201:
            raise RuntimeError(f"creating workspace {name}: {r.status_code} {r.text[:200]}")
        return str(r.json()["id"])


async def document_bytes(ctx: Ctx, wid: str, acct: Account) -> int:
    async with ctx.http() as http:
        info = (await http.get(f"/api/workspaces/{wid}/document", headers=acct.headers)).json()
        return int(info["snapshot_bytes"]) + int(info["log_bytes"])


async def metric(ctx: Ctx, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
    async with ctx.http() as http:
        text = (await http.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def varuint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def awareness_frame(entries: list[tuple[int, int, str]]) -> bytes:
    """A y-websocket awareness message; each state is given as its JSON text (sent as is)."""
    payload = varuint(len(entries))
    for client_id, clock, state in entries:
        raw = state.encode("utf-8", "surrogatepass")
        payload += varuint(client_id) + varuint(clock) + varuint(len(raw)) + raw
    return b"\x01" + varuint(len(payload)) + payload


def _read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def awareness_states(frame: bytes) -> list[tuple[int, str]]:
    """(client id, state JSON text) of each entry of an awareness frame."""
    _, pos = _read_varuint(frame, 1)  # payload length
    count, pos = _read_varuint(frame, pos)
    out = []
    for _ in range(count):
        cid, pos = _read_varuint(frame, pos)
        _, pos = _read_varuint(frame, pos)
        n, pos = _read_varuint(frame, pos)
        out.append((cid, frame[pos : pos + n].decode("utf-8", "replace")))
        pos += n
    return out


def awareness_count(frame: bytes) -> int:
    _, pos = _read_varuint(frame, 1)
    return _read_varuint(frame, pos)[0]


def random_text(n: int) -> str:
    """Incompressible ASCII: stored sizes are not flattered by lz4."""
    return base64.b64encode(os.urandom(n * 3 // 4 + 3)).decode()[:n]


class Peer:
    """One raw y-websocket socket: sends what it is told, reads (and counts) everything, records its close."""

    def __init__(self, keep: bool = False) -> None:
        self.ws: ClientConnection | None = None
        self.keep = keep
        self.frames: list[bytes] = []
        self.received = 0
        self.awareness_frames = 0
        self.first_awareness: tuple[int, float, int] | None = None  # bytes, seconds after open, states
        self.got_awareness = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.refused_status: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._opened = 0.0

    async def open(self, url: str, *, step1: bool = True, timeout: float = 30.0) -> bool:
        try:
            self.ws = await connect(
                url, max_size=None, ping_interval=None, compression=None, open_timeout=timeout, proxy=None
            )
        except InvalidStatus as exc:
            self.refused_status = exc.response.status_code
            self.closed.set()
            return False
        self._opened = time.monotonic()
        self._task = asyncio.create_task(self._read(self.ws))
        if step1:
            await self.send(create_sync_message(Doc()))
        return True

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    continue
                self.received += len(message)
                if message[:1] == b"\x01":
                    self.awareness_frames += 1
                if message[:1] == b"\x01" and self.first_awareness is None:
                    self.first_awareness = (len(message), time.monotonic() - self._opened, awareness_count(message))
                    self.got_awareness.set()
                if self.keep:
                    self.frames.append(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""
            self.closed.set()

    @property
    def open_now(self) -> bool:
        return self.ws is not None and not self.closed.is_set()

    def outcome(self) -> str:
        if self.refused_status is not None:
            return f"http {self.refused_status}"
        return "open" if self.open_now else str(self.close_code)

    async def send(self, data: bytes | str) -> bool:
        if self.ws is None or self.closed.is_set():
            return False
        try:
            await self.ws.send(data)
            return True
        except ConnectionClosed:
            return False

    async def handled(self, timeout: float) -> bool:
        """Ask for the room's awareness (message 3) and wait for the answer: everything sent before it was
        handled with the socket open (True), or the socket was closed (False)."""
        seen = self.awareness_frames
        if not await self.send(b"\x03"):
            return False
        deadline = time.monotonic() + timeout
        while self.awareness_frames == seen and not self.closed.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.awareness_frames > seen and not self.closed.is_set()

    async def wait_closed(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        return self.closed.is_set()

    async def close(self) -> None:
        if self.ws is not None and not self.closed.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.ws is not None and self._task is not None and not self._task.done():
            self.ws.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)


async def close_all(peers: list[Peer]) -> None:
    await asyncio.gather(*(p.close() for p in peers))


async def open_peers(urls: list[str], concurrency: int = 20) -> list[Peer]:
    sem = asyncio.Semaphore(concurrency)
    peers = [Peer() for _ in urls]

    async def one(peer: Peer, url: str) -> None:
        async with sem:
            with contextlib.suppress(OSError, TimeoutError, ConnectionClosed):
                await peer.open(url)

    await asyncio.gather(*(one(p, u) for p, u in zip(peers, urls, strict=True)))
    return peers


class LatencyProbe:
    """GET ``path`` back to back (one at a time) until stopped; the latencies."""

    def __init__(self, ctx: Ctx, path: str, pause: float = 0.05, **kwargs: Any) -> None:
        self.ctx, self.path, self.pause, self.kwargs = ctx, path, pause, kwargs
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self, method: str, address: str) -> None:
        async with self.ctx.http(address) as http:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    r = await http.request(method, self.path, **self.kwargs)
                    self.statuses[r.status_code] += 1
                except httpx.HTTPError:
                    self.statuses[0] += 1
                self.latencies.append(time.monotonic() - t0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.pause)

    def start(self, method: str = "GET", address: str = "127.0.0.1") -> LatencyProbe:
        self._task = asyncio.create_task(self._run(method, address))
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        if not lat:
            return {"n": 0}
        return {
            "n": len(lat),
            "median_s": round(statistics.median(lat), 3),
            "max_s": round(lat[-1], 3),
            "statuses": dict(self.statuses),
        }


def codes(peers: list[Peer]) -> dict[str, int]:
    return dict(Counter(p.outcome() for p in peers))


# ---- the workspace with a large document (items 2 and 5) ---------------------------------------------------------


async def big_workspace(ctx: Ctx, fresh: bool = False) -> tuple[Account, str, int]:
    """A workspace whose document is ``--big-mb`` MB of incompressible text, written by several sockets (each
    under the socket byte quota's burst); the same one for every caller unless ``fresh``."""
    if ctx.big is not None and not fresh:
        return ctx.big
    owner = await register(ctx, "big-owner")
    wid = await new_workspace(ctx, owner, "large document")
    piece = 4 * MB
    pieces = max(1, round(ctx.args.big_mb * MB / piece))
    for i in range(pieces):
        doc: Doc[Any] = Doc()
        doc.get("blobs", type=Map)[f"blob{i}"] = random_text(piece)
        peer = Peer()
        await peer.open(ctx.sync_url(wid, owner.token))
        await peer.send(create_update_message(doc.get_update()))
        await asyncio.sleep(0.5)
        await peer.close()
    deadline = time.monotonic() + 60
    size = 0
    while time.monotonic() < deadline:
        size = await document_bytes(ctx, wid, owner)
        if size >= pieces * piece:
            break
        await asyncio.sleep(0.5)
    if fresh:
        return owner, wid, size
    ctx.big = (owner, wid, size)
    return ctx.big


# ---- the attacks ---------------------------------------------------------------------------------------------------


async def a1_awareness(ctx: Ctx) -> Outcome:
    """Awareness with a fresh client id in every message, then newcomers join."""
    a = ctx.args
    owner = await register(ctx, "aw-owner")
    wid = await new_workspace(ctx, owner, "awareness")
    url = ctx.sync_url(wid, owner.token)
    await ctx.mark()
    attackers = await open_peers([url] * a.aw_sockets)
    pad = "x" * (a.aw_state_kib * 1024 - 64)
    stop_at = time.monotonic() + a.aw_seconds

    async def flood(peer: Peer) -> int:
        sent, due = 0, time.monotonic()
        while time.monotonic() < stop_at:
            state = json.dumps({"user": {"color": "#123456"}, "pad": pad})
            if not await peer.send(awareness_frame([(random.randrange(1, 2**31), 1, state)])):
                break
            sent += 1
            due += 1 / a.aw_rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        return sent

    sent = sum(await asyncio.gather(*(flood(p) for p in attackers)))
    await asyncio.sleep(1.0)
    newcomers: list[dict[str, Any]] = []
    health = LatencyProbe(ctx, "/healthz").start()
    for _ in range(a.aw_newcomers):
        peer = Peer()
        await peer.open(url)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(peer.got_awareness.wait(), 30)
        size, seconds, states = peer.first_awareness or (0, 0.0, 0)
        newcomers.append({"first_awareness_bytes": size, "seconds": round(seconds, 2), "states": states})
        await peer.close()
    await health.stop()
    attacker_codes = codes(attackers)
    await close_all(attackers)
    first = newcomers[0] if newcomers else {"first_awareness_bytes": 0, "states": 0, "seconds": 0}
    hz = health.summary()
    outcome = (
        f"{sent} states of {a.aw_state_kib} KiB sent ({sent * a.aw_state_kib / 1024:.0f} MiB); "
        f"attackers {attacker_codes}; newcomer's first awareness frame {first['first_awareness_bytes'] / MB:.1f} MB "
        f"({first['states']} states, {first['seconds']} s); /healthz max {hz.get('max_s', 0) * 1000:.0f} ms"
    )
    return outcome, {
        "states_sent": sent,
        "attackers": attacker_codes,
        "newcomers": newcomers,
        "healthz_during_joins": hz,
    }


def _stalled_socket(port: int, path: str) -> socket.socket:
    """A WebSocket client at the byte level: handshake, sync step 1 (4 bytes), then no reading (4 KiB receive
    buffer, so the server's sends really back up)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    payload = create_sync_message(Doc())
    mask = os.urandom(4)
    sock.sendall(bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


def _drain_until_close(sock: socket.socket, quiet: float, limit: float) -> tuple[str, int]:
    """Read a stalled socket at last: (its end: a close code, "eof" without a close frame, "reset", or "open"
    when nothing came for ``quiet`` seconds or no close frame within ``limit`` seconds; payload bytes received)."""
    sock.settimeout(quiet)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MB)
    deadline = time.monotonic() + limit
    buf = b""
    received = 0

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            if time.monotonic() > deadline:
                raise TimeoutError
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    try:
        while True:
            b0, b1 = need(2)
            length = b1 & 0x7F
            if length == 126:
                length = int.from_bytes(need(2), "big")
            elif length == 127:
                length = int.from_bytes(need(8), "big")
            body = need(length)
            if b0 & 0x0F == 0x8:
                return (str(int.from_bytes(body[:2], "big")) if len(body) >= 2 else "close"), received
            received += length
    except EOFError:
        return "eof", received
    except TimeoutError:
        return "open", received
    except OSError:
        return "reset", received


async def a2_stall(ctx: Ctx) -> Outcome:
    """Sockets that send sync step 1 for a large document and never read."""
    a = ctx.args
    owner, wid, size = await big_workspace(ctx)
    await asyncio.sleep(1.0)
    await ctx.mark()
    base = await metric(ctx, "plait_connections")
    path = f"/sync/{wid}?token={owner.token}"
    t0 = time.monotonic()
    socks = await asyncio.gather(
        *(asyncio.to_thread(_stalled_socket, ctx.node.port, path) for _ in range(a.stall_sockets))
    )
    timeline: list[tuple[float, int]] = []
    peak_open = 0
    first_close: float | None = None
    all_closed: float | None = None
    while time.monotonic() - t0 < a.stall_seconds:
        await asyncio.sleep(0.5)
        held = int(await metric(ctx, "plait_connections") - base)
        peak_open = max(peak_open, held)
        now = round(time.monotonic() - t0, 1)
        if not timeline or timeline[-1][1] != held:
            timeline.append((now, held))
        if peak_open >= a.stall_sockets and held < a.stall_sockets and first_close is None:
            first_close = now
        if peak_open >= a.stall_sockets and held <= 0:
            all_closed = now
            break
    watched = round(time.monotonic() - t0, 1)
    ends = await asyncio.gather(*(asyncio.to_thread(_drain_until_close, s, 2.0, 5.0) for s in socks))
    for s in socks:
        s.close()
    by_end = Counter(end for end, _ in ends)
    most = max(received for _, received in ends) if ends else 0
    if all_closed is not None:
        when = f"all closed by the server after {first_close}-{all_closed} s"
    elif first_close is not None:
        when = f"some closed from {first_close} s, {timeline[-1][1]} still open at {watched} s"
    else:
        when = f"the server still held all of them after {watched} s"
    outcome = (
        f"{a.stall_sockets} sockets asked for a {size / MB:.0f} MB step 2 and never read: {when}; "
        f"read at last: {dict(by_end)}, at most {most / MB:.1f} MB had been sent to one"
    )
    return outcome, {
        "document_bytes": size,
        "sockets": a.stall_sockets,
        "open_timeline": timeline,
        "first_close_s": first_close,
        "all_closed_s": all_closed,
        "watched_s": watched,
        "ends": dict(by_end),
        "max_received_bytes": most,
    }


async def a3_missing_dependencies(ctx: Ctx) -> Outcome:
    """Updates whose dependencies were never sent, each on a fresh socket (under the socket byte quota)."""
    a = ctx.args
    owner = await register(ctx, "md-owner")
    wid = await new_workspace(ctx, owner, "missing dependencies")
    url = ctx.sync_url(wid, owner.token)
    keeper = Peer()  # keeps the room loaded until the end (rooms unload a few seconds after their last socket)
    await keeper.open(url)
    await ctx.mark()
    ends: Counter[str] = Counter()
    sent_bytes = 0
    for _ in range(a.md_count):
        author: Doc[Any] = Doc()
        updates: list[bytes] = []
        sub = author.observe(lambda e, updates=updates: updates.append(e.update))
        text = author.get("t", type=Text)
        text += "a"
        text += random_text(int(a.md_mb * MB))  # depends on the first: its left origin, the same client's clock
        author.unobserve(sub)
        second = updates[1]
        peer = Peer()
        await peer.open(url)
        await peer.send(create_update_message(second))
        sent_bytes += len(second)
        await peer.handled(30.0)
        await peer.wait_closed(0.2)
        ends[peer.outcome()] += 1
        await peer.close()
    await asyncio.sleep(1.0)
    stored = await document_bytes(ctx, wid, owner)
    assert ctx.baseline is not None
    held = (ctx.sampler.current() - ctx.baseline[0]) / MB
    await keeper.close()
    outcome = (
        f"{a.md_count} updates of {a.md_mb:g} MB without their dependencies ({sent_bytes / MB:.0f} MB): "
        f"sockets {dict(ends)}; /document {stored} bytes; RSS +{held:.0f} MB while the room stays loaded"
    )
    return outcome, {
        "sent_bytes": sent_bytes,
        "sockets": dict(ends),
        "document_bytes": stored,
        "rss_held_while_loaded_mb": round(held, 1),
    }


class Receiver:
    """A webhook receiver on loopback: ``fast`` (200 at once), ``huge`` (a ``body`` byte answer, streamed as fast
    as the server reads) or ``trickle`` (headers, then one byte every ``interval`` s for ``seconds`` s)."""

    def __init__(self, mode: str, body: int = 0, interval: float = 2.0, seconds: float = 20.0) -> None:
        self.mode, self.body, self.interval, self.seconds = mode, body, interval, seconds
        self.requests: list[float] = []
        self.got = asyncio.Event()
        self.done = asyncio.Event()
        self.sent = 0
        self.held: list[float] = []  # how long each answer was held open
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = time.monotonic()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            self.requests.append(time.monotonic())
            self.got.set()
            if self.mode == "fast":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                await writer.drain()
            elif self.mode == "huge":
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {self.body}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                chunk = b"a" * MB
                while self.sent < self.body:
                    n = min(len(chunk), self.body - self.sent)
                    writer.write(chunk[:n])
                    await writer.drain()
                    self.sent += n
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n")
                await writer.drain()
                while time.monotonic() - start < self.seconds:
                    writer.write(b".")
                    await writer.drain()
                    await asyncio.sleep(self.interval)
                    if reader.at_eof():
                        break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.held.append(round(time.monotonic() - start, 1))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self.done.set()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)


async def _hook(ctx: Ctx, http: httpx.AsyncClient, acct: Account, wid: str, url: str) -> str:
    r = await http.post(
        f"/api/workspaces/{wid}/webhooks", json={"url": url, "events": ["task.created"]}, headers=acct.headers
    )
    if r.status_code != 201:
        raise RuntimeError(f"webhook refused: {r.status_code} {r.text[:200]}")
    return str(r.json()["id"])


async def _task(http: httpx.AsyncClient, acct: Account, wid: str, title: str) -> None:
    r = await http.post(f"/api/workspaces/{wid}/tasks", json={"title": title}, headers=acct.headers)
    if r.status_code != 201:
        raise RuntimeError(f"task refused: {r.status_code} {r.text[:200]}")


async def _delivery_delay(
    http: httpx.AsyncClient, acct: Account, wid: str, receiver: Receiver, timeout: float
) -> float | None:
    before = len(receiver.requests)
    receiver.got.clear()
    t0 = time.monotonic()
    await _task(http, acct, wid, "deliver me")
    deadline = t0 + timeout
    while len(receiver.requests) == before and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.got.wait(), max(0.01, deadline - time.monotonic()))
        receiver.got.clear()
    return round(receiver.requests[before] - t0, 2) if len(receiver.requests) > before else None


async def a4_webhooks(ctx: Ctx) -> Outcome:
    """A receiver answering with a huge body; one that trickles while another tenant's hook must be delivered."""
    a = ctx.args
    owner = await register(ctx, "hook-owner")
    other = await register(ctx, "other-tenant")
    huge_ws = await new_workspace(ctx, owner, "huge answer")
    slow_ws = await new_workspace(ctx, owner, "trickling answer")
    other_ws = await new_workspace(ctx, other, "another tenant")
    huge = await Receiver("huge", body=int(a.hook_body_mb * MB)).start()
    trickle = await Receiver("trickle", interval=a.trickle_interval, seconds=a.trickle_seconds).start()
    fast = await Receiver("fast").start()
    await ctx.mark()
    details: dict[str, Any] = {}
    async with ctx.http() as http:
        hooks = [
            (owner, huge_ws, await _hook(ctx, http, owner, huge_ws, huge.url)),
            (owner, slow_ws, await _hook(ctx, http, owner, slow_ws, trickle.url)),
            (other, other_ws, await _hook(ctx, http, other, other_ws, fast.url)),
        ]
        # the huge answer
        t0 = time.monotonic()
        rss0 = ctx.sampler.current()
        ctx.sampler.peak = rss0
        await _task(http, owner, huge_ws, "huge")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(huge.done.wait(), a.hook_timeout)
        details["huge"] = {
            "body_bytes": huge.body,
            "read_by_server_bytes": huge.sent,  # written into the socket before the server hung up
            "seconds": round(time.monotonic() - t0, 1),
            "rss_peak_growth_mb": round((ctx.sampler.peak - rss0) / MB, 1),
        }
        await asyncio.sleep(2.0)
        details["huge"]["rss_held_after_mb"] = round((ctx.sampler.current() - rss0) / MB, 1)
        # the other tenant's delivery, alone and while a receiver trickles
        baseline = await _delivery_delay(http, other, other_ws, fast, 30)
        await _task(http, owner, slow_ws, "trickle")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(trickle.got.wait(), 15)
        await asyncio.sleep(0.5)
        during = await _delivery_delay(http, other, other_ws, fast, a.trickle_seconds + 30)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(trickle.done.wait(), a.trickle_seconds + 5)
        details["trickle"] = {
            "trickle_interval_s": a.trickle_interval,
            "receiver_gives_up_after_s": a.trickle_seconds,
            "trickling_answer_held_s": trickle.held[:1],
            "other_tenant_delay_alone_s": baseline,
            "other_tenant_delay_during_trickle_s": during,
        }
        for acct, wid, hook_id in hooks:
            await http.delete(f"/api/workspaces/{wid}/webhooks/{hook_id}", headers=acct.headers)
    for r in (huge, trickle, fast):
        await r.stop()
    h, t = details["huge"], details["trickle"]
    outcome = (
        f"huge answer: the receiver got {h['read_by_server_bytes'] / MB:.0f} of {h['body_bytes'] / MB:.0f} MB out "
        f"(RSS +{h['rss_peak_growth_mb']:.0f} MB peak, +{h['rss_held_after_mb']:.0f} MB held 2 s later); "
        f"trickling answer held {t['trickling_answer_held_s']} s; other tenant's delivery "
        f"{t['other_tenant_delay_alone_s']} s alone, {t['other_tenant_delay_during_trickle_s']} s during the trickle"
    )
    return outcome, details


async def a5_versions(ctx: Ctx) -> Outcome:
    """Named versions of the large document, as fast as they are accepted."""
    a = ctx.args
    return await _versions(ctx, await big_workspace(ctx), a.versions, a.versions_concurrency)


async def a5_versions_burst(ctx: Ctx) -> Outcome:
    """Many named versions at once (another owner's large document): what other users see meanwhile."""
    a = ctx.args
    return await _versions(ctx, await big_workspace(ctx, fresh=True), a.versions_burst, a.versions_burst)


async def _versions(ctx: Ctx, big: tuple[Account, str, int], count: int, concurrency: int) -> Outcome:
    a = ctx.args
    owner, wid, size = big
    bystander = await register(ctx, "bystander")
    await asyncio.sleep(1.0)
    await ctx.mark()
    statuses: Counter[int | str] = Counter()
    quota: Counter[str] = Counter()
    probe = LatencyProbe(ctx, "/api/workspaces", pause=0.2, headers=bystander.headers).start()
    t0 = time.monotonic()
    refused_in_a_row = 0
    todo = iter(range(count))

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal refused_in_a_row
        for i in todo:
            if time.monotonic() - t0 > a.versions_seconds or refused_in_a_row >= 3:
                return
            try:
                r = await http.post(f"/api/workspaces/{wid}/versions", json={"label": f"v{i}"}, headers=owner.headers)
            except httpx.HTTPError as exc:
                statuses[f"no answer ({type(exc).__name__})"] += 1
                refused_in_a_row += 1
                continue
            statuses[r.status_code] += 1
            if r.headers.get("x-plait-quota"):
                quota[r.headers["x-plait-quota"]] += 1
            refused_in_a_row = 0 if r.status_code == 201 else refused_in_a_row + 1

    async with ctx.http() as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    seconds = round(time.monotonic() - t0, 1)
    await probe.stop()
    by = probe.summary()
    # Afterwards, the other user (who stores almost nothing) writes to a workspace of their own.
    theirs: dict[str, int] = {}
    async with ctx.http() as http:
        r = await http.post("/api/workspaces", json={"name": "mine"}, headers=bystander.headers)
        theirs["create workspace"] = r.status_code
        if r.status_code == 201:
            own = r.json()["id"]
            r = await http.post(f"/api/workspaces/{own}/tasks", json={"title": "t"}, headers=bystander.headers)
            theirs["create task"] = r.status_code
            r = await http.post(f"/api/workspaces/{own}/versions", json={"label": "v"}, headers=bystander.headers)
            theirs["named version"] = r.status_code
    outcome = (
        f"{sum(statuses.values())} named versions of a {size / MB:.0f} MB document asked in {seconds} s, "
        f"{concurrency} at a time: "
        f"{dict(statuses)}" + (f", X-Plait-Quota {dict(quota)}" if quota else "") + f"; another user's "
        f"GET /api/workspaces meanwhile: max {by.get('max_s')} s, {by.get('statuses')}; then in their own "
        f"workspace: {theirs}"
    )
    return outcome, {
        "document_bytes": size,
        "statuses": {str(k): v for k, v in statuses.items()},
        "quota": dict(quota),
        "seconds": seconds,
        "bystander_list_workspaces": by,
        "bystander_own_workspace_after": theirs,
    }


async def a5_workspaces(ctx: Ctx) -> Outcome:
    """Workspace creation by one account, several at once."""
    a = ctx.args
    flooder = await register(ctx, "ws-flooder")
    await ctx.mark()
    statuses: Counter[int] = Counter()
    quota: Counter[str] = Counter()
    t0 = time.monotonic()
    todo = iter(range(a.ws_flood))

    async def worker(http: httpx.AsyncClient) -> None:
        for i in todo:
            if time.monotonic() - t0 > a.ws_flood_seconds:
                return
            r = await http.post("/api/workspaces", json={"name": f"flood {i}"}, headers=flooder.headers)
            statuses[r.status_code] += 1
            if r.headers.get("x-plait-quota"):
                quota[r.headers["x-plait-quota"]] += 1

    async with ctx.http() as http:
        await asyncio.gather(*(worker(http) for _ in range(a.ws_flood_concurrency)))
    seconds = round(time.monotonic() - t0, 1)
    outcome = (
        f"{sum(statuses.values())} workspaces asked in {seconds} s, {a.ws_flood_concurrency} at a time: "
        f"{dict(statuses)}"
    )
    outcome += f", X-Plait-Quota {dict(quota)}" if quota else ""
    return outcome, {"statuses": dict(statuses), "quota": dict(quota), "seconds": seconds}


async def a6_sockets_and_streams(ctx: Ctx) -> Outcome:
    """Many sync sockets, then many notification streams, of one account."""
    a = ctx.args
    acct = await register(ctx, "many-sockets")
    wid = await new_workspace(ctx, acct, "sockets")
    await ctx.mark()
    peers = await open_peers([ctx.sync_url(wid, acct.token)] * a.sockets)
    await asyncio.sleep(2.0)
    socket_codes = codes(peers)
    rss_sockets = ctx.sampler.current()
    await close_all(peers)
    streams: list[httpx.Response] = []
    statuses: Counter[int] = Counter()
    async with ctx.http(timeout=30) as http:
        for _ in range(a.sse):
            try:
                r = await http.send(
                    http.build_request("GET", "/api/notifications/stream", headers=acct.headers), stream=True
                )
            except httpx.HTTPError:
                statuses[0] += 1
                continue
            statuses[r.status_code] += 1
            if r.status_code == 200:
                streams.append(r)
            else:
                await r.aclose()
        await asyncio.sleep(2.0)
        rss_streams = ctx.sampler.current()
        for r in streams:
            await r.aclose()
    accepted = socket_codes.get("open", 0)
    outcome = f"{a.sockets} sync sockets of one account: {socket_codes}; {a.sse} notification streams: {dict(statuses)}"
    return outcome, {
        "sockets": socket_codes,
        "sockets_accepted": accepted,
        "streams": dict(statuses),
        "rss_with_sockets_mb": round(rss_sockets / MB, 1),
        "rss_with_streams_mb": round(rss_streams / MB, 1),
    }


async def a7_login_lockout(ctx: Ctx) -> Outcome:
    """Failed logins on someone else's account from one address, then the owner's correct password from another."""
    a = ctx.args
    victim = await register(ctx, "victim")
    await ctx.mark()
    failures: Counter[int] = Counter()
    slowest = 0.0
    async with ctx.http(ctx.addrs.next()) as http:
        for _ in range(a.login_failures):
            t0 = time.monotonic()
            r = await http.post("/api/auth/login", json={"email": victim.email, "password": "wrong password!"})
            slowest = max(slowest, time.monotonic() - t0)
            failures[r.status_code] += 1
    owner_tries = []
    async with ctx.http(ctx.addrs.next()) as http:
        for _ in range(2):
            t0 = time.monotonic()
            r = await http.post("/api/auth/login", json={"email": victim.email, "password": PASSWORD})
            owner_tries.append({"status": r.status_code, "seconds": round(time.monotonic() - t0, 2)})
    outcome = (
        f"{a.login_failures} wrong passwords from one address: {dict(failures)}; then the owner from another "
        f"address: " + ", ".join(f"{t['status']} in {t['seconds']} s" for t in owner_tries)
    )
    return outcome, {"attacker": dict(failures), "attacker_slowest_s": round(slowest, 2), "owner": owner_tries}


async def a9_registration_flood(ctx: Ctx) -> Outcome:
    """Parallel registrations (each from its own address), a legitimate login meanwhile; then a burst from one
    address."""
    a = ctx.args
    legit = await register(ctx, "legit")
    await ctx.mark()
    login = {"json": {"email": legit.email, "password": PASSWORD}}
    legit_address = ctx.addrs.next()
    quiet = LatencyProbe(ctx, "/api/auth/login", pause=0.2, **login).start("POST", legit_address)
    await asyncio.sleep(1.5)
    await quiet.stop()
    statuses: Counter[int] = Counter()

    async def one(address: str) -> None:
        email = f"flood-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "password": PASSWORD, "display_name": "flood"}
        try:
            async with ctx.http(address) as http:
                statuses[(await http.post("/api/auth/register", json=body)).status_code] += 1
        except httpx.HTTPError:
            statuses[0] += 1

    probe = LatencyProbe(ctx, "/api/auth/login", pause=0.2, **login).start("POST", legit_address)
    t0 = time.monotonic()
    await asyncio.gather(*(one(ctx.addrs.next()) for _ in range(a.reg_flood)))
    flood_seconds = round(time.monotonic() - t0, 1)
    await probe.stop()
    burst: Counter[int] = Counter()
    burst_address = ctx.addrs.next()

    async def from_one() -> None:
        email = f"burst-{uuid.uuid4().hex[:10]}@example.com"
        async with ctx.http(burst_address) as http:
            r = await http.post("/api/auth/register", json={"email": email, "password": PASSWORD, "display_name": "b"})
            burst[r.status_code] += 1

    await asyncio.gather(*(from_one() for _ in range(a.reg_burst)))
    q, p = quiet.summary(), probe.summary()
    outcome = (
        f"{a.reg_flood} parallel registrations from {a.reg_flood} addresses: {dict(statuses)} in {flood_seconds} s; "
        f"a login took {q.get('median_s')} s before, median {p.get('median_s')} / max {p.get('max_s')} s during "
        f"({p.get('statuses')}); {a.reg_burst} from one address: {dict(burst)}"
    )
    return outcome, {
        "flood": dict(statuses),
        "flood_seconds": flood_seconds,
        "login_before": q,
        "login_during": p,
        "burst_one_address": dict(burst),
    }


async def a10_invites(ctx: Ctx) -> Outcome:
    """An admin mints an admin invite, is removed, and accepts it."""
    owner = await register(ctx, "inv-owner")
    admin = await register(ctx, "inv-admin")
    wid = await new_workspace(ctx, owner, "invites")
    await ctx.mark()
    async with ctx.http() as http:
        r = await http.post(f"/api/workspaces/{wid}/invites", json={"role": "admin"}, headers=owner.headers)
        r = await http.post(f"/api/invites/{r.json()['token']}/accept", headers=admin.headers)
        r = await http.post(f"/api/workspaces/{wid}/invites", json={"role": "admin"}, headers=admin.headers)
        minted = r.json()["token"]
        removed = await http.delete(f"/api/workspaces/{wid}/members/{admin.id}", headers=owner.headers)
        r = await http.post(f"/api/invites/{minted}/accept", headers=admin.headers)
    outcome = f"removed admin ({removed.status_code}) accepts the admin invite they minted before: {r.status_code}"
    return outcome, {"removal": removed.status_code, "accept": r.status_code}


async def a11_bad_json(ctx: Ctx) -> Outcome:
    """NaN, Infinity, a lone surrogate in JSON bodies; cursors >= 2^63; a DNS label over 63 characters."""
    acct = await register(ctx, "bad-input")
    wid = await new_workspace(ctx, acct, "bad input")
    await ctx.mark()
    big = str(2**63)
    json_h = {"Content-Type": "application/json"}
    results: dict[str, Any] = {}
    address = ctx.addrs.next()
    async with ctx.http(address, timeout=30) as http:
        probes: list[tuple[str, str, str, dict[str, Any]]] = [
            ("login NaN", "POST", "/api/auth/login", {"content": '{"email":"a@example.com","password":NaN}'}),
            ("login Infinity", "POST", "/api/auth/login", {"content": '{"email":"a@example.com","password":Infinity}'}),
            (
                "login lone surrogate",
                "POST",
                "/api/auth/login",
                {"content": '{"email":"a@example.com","password":"\\ud800"}'},
            ),
            ("workspace NaN", "POST", "/api/workspaces", {"content": '{"name":NaN}', "auth": True}),
            ("notifications cursor 2^63", "GET", f"/api/notifications?cursor={big}", {"auth": True}),
            (
                "webhook 64-char label",
                "POST",
                f"/api/workspaces/{wid}/webhooks",
                {"json": {"url": f"http://{'a' * 64}.example.com/", "events": ["task.created"]}, "auth": True},
            ),
        ]
        for name, method, path, opts in probes:
            headers = {**json_h, **(acct.headers if opts.pop("auth", False) else {})}
            async with ctx.http(address, timeout=30) as one:  # a fresh connection: a dropped one breaks the next
                try:
                    r = await one.request(method, path, headers=headers, **opts)
                    results[name] = r.status_code
                except httpx.HTTPError as exc:
                    results[name] = f"no answer ({type(exc).__name__})"
        # SSE with Last-Event-ID >= 2^63: a status, then the stream stays open or is cut
        try:
            async with http.stream(
                "GET", "/api/notifications/stream", headers={**acct.headers, "Last-Event-ID": big}
            ) as r:
                state = str(r.status_code)
                if r.status_code == 200:
                    try:
                        async with asyncio.timeout(2.0):
                            async for _ in r.aiter_bytes():
                                pass
                        state += " then ended"
                    except TimeoutError:
                        state += " open"
                    except httpx.HTTPError as exc:
                        state += f" then cut ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            state = f"error {type(exc).__name__}"
        results["stream Last-Event-ID 2^63"] = state
    outcome = "; ".join(f"{k} {v}" for k, v in results.items())
    return outcome, results


async def a12_bad_awareness(ctx: Ctx) -> Outcome:
    """Awareness states with NaN/Infinity and nested 1200 deep."""
    acct = await register(ctx, "bad-awareness")
    wid = await new_workspace(ctx, acct, "bad awareness")
    await ctx.mark()
    url = ctx.sync_url(wid, acct.token)
    observer = Peer(keep=True)
    await observer.open(url)
    await asyncio.sleep(0.3)
    results: dict[str, Any] = {}
    for name, state in (
        ("NaN", '{"x": NaN, "y": Infinity}'),
        ("nested 1200", '{"a":' * 1200 + "1" + "}" * 1200),
    ):
        seen = len(observer.frames)
        peer = Peer()
        await peer.open(url)
        cid = random.randrange(1, 2**31)
        await peer.send(awareness_frame([(cid, 1, state)]))
        await peer.wait_closed(2.0)
        rebroadcast = []
        for frame in observer.frames[seen:]:
            if frame[:1] == b"\x01":
                rebroadcast += [s for c, s in awareness_states(frame) if c == cid]
        invalid = 0
        for s in rebroadcast:
            try:
                json.loads(s, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            except (ValueError, RecursionError):
                invalid += 1
        results[name] = {
            "sender": peer.outcome() + (f" ({peer.close_reason})" if peer.close_reason else ""),
            "rebroadcast": len(rebroadcast),
            "rebroadcast_invalid_json": invalid,
        }
        await peer.close()
    await observer.close()
    outcome = "; ".join(
        f"{k}: sender {v['sender']}, rebroadcast {v['rebroadcast']} (invalid JSON {v['rebroadcast_invalid_json']})"
        for k, v in results.items()
    )
    return outcome, results


async def a13_token_in_logs(ctx: Ctx) -> Outcome:
    """A sync socket authenticated by ``?%74oken=`` (percent-encoded name): is the token in the server's log?"""
    acct = await register(ctx, "log-token")
    wid = await new_workspace(ctx, acct, "log token")
    await ctx.mark()
    before = ctx.node.log.read_bytes().count(acct.token.encode())
    peer = Peer()
    await peer.open(f"{ctx.ws}/sync/{wid}?%74oken={acct.token}")
    await asyncio.sleep(0.5)
    accepted = peer.open_now
    await peer.close()
    async with ctx.http() as http:
        r = await http.get(f"/api/notifications?%74oken={acct.token}")
    await asyncio.sleep(0.5)
    found = ctx.node.log.read_bytes().count(acct.token.encode()) - before
    outcome = f"socket {'accepted' if accepted else peer.outcome()}, REST {r.status_code}; token in the log {found}x"
    return outcome, {"socket_accepted": accepted, "rest_status": r.status_code, "token_in_log": found}


async def a14_ssrf(ctx: Ctx) -> Outcome:
    """Webhook URLs on site-local and 6to4 IPv6 addresses, on a second node with the SSRF guard on (the main node
    has it off for the loopback receivers of item 4)."""
    work = ctx.node.data.parent / "guarded"
    node = Node(ctx.node.root, work, ctx.node.extra, allow_private=False)
    await asyncio.to_thread(node.start)
    results: dict[str, Any] = {}
    try:
        guarded = Ctx(ctx.args, node, ctx.sampler, ctx.addrs)
        acct = await register(guarded, "ssrf")
        wid = await new_workspace(guarded, acct, "ssrf")
        async with guarded.http() as http:
            for name, url in (
                ("site-local fec0::1", "http://[fec0::1]/hook"),
                ("6to4 of 127.0.0.1", "http://[2002:7f00:1::1]/hook"),
                ("6to4 of 192.168.1.1", "http://[2002:c0a8:101::1]/hook"),
                ("loopback ::1 (control)", "http://[::1]/hook"),
            ):
                r = await http.post(
                    f"/api/workspaces/{wid}/webhooks",
                    json={"url": url, "events": ["task.created"]},
                    headers=acct.headers,
                )
                results[name] = r.status_code
    finally:
        await asyncio.to_thread(node.stop)
    return "; ".join(f"{k} {v}" for k, v in results.items()), results


async def a15_headers(ctx: Ctx) -> Outcome:
    """Security headers of the web page and of the API."""
    wanted = ("content-security-policy", "x-frame-options", "referrer-policy", "x-content-type-options")
    found: dict[str, list[str]] = {}
    async with ctx.http() as http:
        for path in ("/", "/api/workspaces"):
            r = await http.get(path)
            found[f"{path} ({r.status_code})"] = [h for h in wanted if h in r.headers]
    outcome = "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in found.items())
    return outcome, found


ATTACKS: list[tuple[str, str, Callable[[Ctx], Awaitable[Outcome]]]] = [
    ("1", "awareness flood, fresh client id per message", a1_awareness),
    ("2", "sync step 2 to readers that never read", a2_stall),
    ("3", "updates with missing dependencies", a3_missing_dependencies),
    ("4", "webhook receivers: huge answer, trickling answer", a4_webhooks),
    ("5a", "named versions of a large document", a5_versions),
    ("5b", "workspace creation flood", a5_workspaces),
    ("5c", "named versions, many at once: other users meanwhile", a5_versions_burst),
    ("6", "sync sockets and notification streams per account", a6_sockets_and_streams),
    ("7", "failed logins lock the owner out", a7_login_lockout),
    ("9", "registration flood vs a legitimate login", a9_registration_flood),
    ("10", "invite outlives its creator's role", a10_invites),
    ("11", "NaN/Infinity/surrogate JSON, cursors >= 2^63, long DNS label", a11_bad_json),
    ("12", "awareness with NaN, nested 1200 deep", a12_bad_awareness),
    ("13", "?%74oken= in the server's log", a13_token_in_logs),
    ("14", "SSRF guard: site-local and 6to4 IPv6 webhook URLs", a14_ssrf),
    ("15", "security headers", a15_headers),
]


# ---- the run ---------------------------------------------------------------------------------------------------------


async def settle(ctx: Ctx, limit: float = 20.0, samples: int = 7, rooms: bool = False) -> None:
    """Wait until the node's RSS stops moving (the previous attack's frees and malloc_trim landed); with
    ``rooms``, first until the previous attack's rooms are unloaded."""
    await asyncio.sleep(1.0)
    deadline = time.monotonic() + limit
    while rooms and time.monotonic() < deadline and await metric(ctx, "plait_rooms_loaded") > 0:
        await asyncio.sleep(0.5)
    history = [ctx.sampler.current()]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        history.append(ctx.sampler.current())
        if len(history) >= samples and max(history[-samples:]) - min(history[-samples:]) < MB:
            return


async def run_attack(ctx: Ctx, item: str, name: str, fn: Callable[[Ctx], Awaitable[Outcome]]) -> dict[str, Any]:
    await settle(ctx, rooms=True)
    await ctx.mark()
    log_at = ctx.node.log.stat().st_size
    try:
        outcome, details = await asyncio.wait_for(fn(ctx), ctx.args.attack_timeout)
    except Exception as exc:
        outcome, details = f"ERROR {type(exc).__name__}: {exc}", {"error": repr(exc)}
    assert ctx.baseline is not None
    rss0, disk0, t0 = ctx.baseline
    seconds = time.monotonic() - t0
    peak = ctx.sampler.peak
    await asyncio.sleep(2.0)
    rss_after = ctx.sampler.current()
    disk1 = ctx.node.disk_bytes()
    alive = ctx.node.alive()
    tracebacks = ctx.node.log.read_bytes()[log_at:].count(b"Traceback (most recent call last)")
    row = {
        "item": item,
        "attack": name,
        "outcome": outcome
        if alive
        else f"SERVER EXITED ({ctx.node.proc.returncode if ctx.node.proc else '?'}); " + outcome,
        "rss_before_mb": round(rss0 / MB, 1),
        "rss_peak_mb": round(peak / MB, 1),
        "rss_peak_growth_mb": round((peak - rss0) / MB, 1),
        "rss_held_after_mb": round((rss_after - rss0) / MB, 1),
        "disk_growth_mb": round((disk1 - disk0) / MB, 1),
        "seconds": round(seconds, 1),
        "server_tracebacks": tracebacks,
        "details": details,
    }
    print(
        f"[{item:>3}] {name}: peak +{row['rss_peak_growth_mb']} MB, held +{row['rss_held_after_mb']} MB, "
        f"disk +{row['disk_growth_mb']} MB, {row['seconds']} s, {tracebacks} tracebacks\n      {row['outcome']}",
        flush=True,
    )
    if not alive:
        ctx.node.start()
        ctx.sampler.stop()
        ctx.sampler = RssSampler(ctx.node.proc.pid if ctx.node.proc else 0, ctx.args.sample_ms / 1000)
        ctx.sampler.start()
    return row


def git_describe(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()[:100]
    except (OSError, subprocess.CalledProcessError):
        return "?"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="plait-abuse-"))
    extra = {"PLAIT_ROOM_IDLE_SECONDS": "4", **dict(kv.split("=", 1) for kv in args.set)}
    node = Node(args.server_root.resolve(), work, extra)
    wanted = {x.strip() for x in args.only.split(",")} if args.only else None
    started = time.time()
    load = os.getloadavg()
    node.start()
    sampler = RssSampler(node.proc.pid if node.proc else 0, args.sample_ms / 1000)
    sampler.start()
    ctx = Ctx(args, node, sampler)
    rows: list[dict[str, Any]] = []
    rss_start = sampler.current()
    disk_start = node.disk_bytes()
    try:
        for item, name, fn in ATTACKS:
            if wanted is None or item in wanted or item.rstrip("abc") in wanted:
                rows.append(await run_attack(ctx, item, name, fn))
        rss_end = ctx.sampler.current()
        disk_end = node.disk_bytes()
    finally:
        ctx.sampler.stop()
        node.stop()
    report = {
        "server_root": str(args.server_root.resolve()),
        "server_commit": git_describe(args.server_root.resolve()),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_before": [round(x, 2) for x in load],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {"PLAIT_WEBHOOK_ALLOW_PRIVATE": "true", **extra},  # and the defaults
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rss_start_mb": round(rss_start / MB, 1),
        "rss_end_mb": round(rss_end / MB, 1),
        "disk_start_mb": round(disk_start / MB, 1),
        "disk_end_mb": round(disk_end / MB, 1),
        "rows": rows,
    }
    if args.keep:
        report["work_dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        f"server: {report['server_commit']}  ({report['server_root']})",
        f"RSS {report['rss_start_mb']} -> {report['rss_end_mb']} MB, data directory {report['disk_start_mb']} -> "
        f"{report['disk_end_mb']} MB, {report['seconds']} s",
        "",
        f"{'item':<5}{'peak +MB':>9}{'held +MB':>9}{'disk +MB':>9}{'s':>6}{'tb':>4}  outcome",
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['item']:<5}{r['rss_peak_growth_mb']:>9}{r['rss_held_after_mb']:>9}{r['disk_growth_mb']:>9}"
            f"{r['seconds']:>6}{r['server_tracebacks']:>4}  {r['outcome']}"
        )
    return "\n".join(lines)


def render(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Markdown: one row per attack, RSS peak / held / disk and the outcome, before and after."""
    out = [
        "| item | attack | before: RSS peak / held, disk (MB) | after: RSS peak / held, disk (MB) | before | after |",
        "|---|---|---|---|---|---|",
    ]
    after_rows = {r["item"]: r for r in after["rows"]}
    for b in before["rows"]:
        a = after_rows.get(b["item"])

        def fig(r: dict[str, Any] | None) -> str:
            if r is None:
                return "—"
            return f"+{r['rss_peak_growth_mb']:.0f} / +{r['rss_held_after_mb']:.0f}, +{r['disk_growth_mb']:.0f}"

        out.append(
            f"| {b['item']} | {b['attack']} | {fig(b)} | {fig(a)} | {b['outcome']} | {a['outcome'] if a else '—'} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-root", type=Path, default=ROOT, help="checkout whose server runs (its .venv)")
    parser.add_argument("--only", help="comma-separated items (1,2,3,4,5,6,7,9,10,11,12,13,14,15; 5a, 5b, 5c)")
    parser.add_argument("--set", action="append", default=[], metavar="PLAIT_X=V", help="extra server setting")
    parser.add_argument("--out", type=Path, help="JSON report (default bench/results/abuse-<stamp>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and the server's log")
    parser.add_argument("--render", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="compare two reports")
    parser.add_argument("--sample-ms", type=float, default=50)
    parser.add_argument("--attack-timeout", type=float, default=150)
    g = parser.add_argument_group("sizes")
    g.add_argument("--aw-sockets", type=int, default=6)
    g.add_argument("--aw-state-kib", type=int, default=60)
    g.add_argument("--aw-rate", type=float, default=15, help="awareness messages per second per socket")
    g.add_argument("--aw-seconds", type=float, default=12)
    g.add_argument("--aw-newcomers", type=int, default=3)
    g.add_argument("--big-mb", type=float, default=16, help="the large document (items 2 and 5a)")
    g.add_argument("--stall-sockets", type=int, default=10)
    g.add_argument("--stall-seconds", type=float, default=30)
    g.add_argument("--md-count", type=int, default=12)
    g.add_argument("--md-mb", type=float, default=4)
    g.add_argument("--hook-body-mb", type=float, default=300)
    g.add_argument("--hook-timeout", type=float, default=60)
    g.add_argument("--trickle-interval", type=float, default=2)
    g.add_argument("--trickle-seconds", type=float, default=15)
    g.add_argument("--versions", type=int, default=80)
    g.add_argument("--versions-seconds", type=float, default=40)
    g.add_argument("--versions-concurrency", type=int, default=4)
    g.add_argument("--versions-burst", type=int, default=16, help="5c: this many named versions at once")
    g.add_argument("--ws-flood", type=int, default=300)
    g.add_argument("--ws-flood-seconds", type=float, default=15)
    g.add_argument("--ws-flood-concurrency", type=int, default=32)
    g.add_argument("--sockets", type=int, default=150)
    g.add_argument("--sse", type=int, default=30)
    g.add_argument("--login-failures", type=int, default=8)
    g.add_argument("--reg-flood", type=int, default=60)
    g.add_argument("--reg-burst", type=int, default=20)
    args = parser.parse_args()
    if args.render:
        before, after = (json.loads(p.read_text()) for p in args.render)
        print(render(before, after))
        return
    report = asyncio.run(main_async(args))
    print()
    print(table(report))
    out = args.out or ROOT / "bench" / "results" / f"abuse-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport: {out}")


if __name__ == "__main__":
    main()
