"""Fuzzing the sync socket: frame generators, an independent oracle of what the server must do with each frame,
and an async harness that sends one suspect frame and learns whether the socket stayed open, how it was closed
and whether the document changed. Shared by tests/test_reliability_fuzz.py (hypothesis, a few hundred frames)
and bench/fuzz.py (a million frames).

The oracle is written from docs/protocol.md, not from sync_server/protocol.py, so a parser bug on either side
shows up as a disagreement:
- ``open``: a well-formed message; the socket must stay open (awareness, query-awareness, auth, and the
  updates/state vectors we built from real documents);
- ``reject``: malformed (truncated or overlong varints, unknown message or sync type, a length past the end of
  the frame, invalid awareness, a text frame): closed with 1003 (or 1002);
- ``too_big``: larger than the message limit: closed with 1009;
- ``maybe``: a well-framed sync message whose update or state vector may not be applicable: open, or closed
  with 1003 — and then the document must not have changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from pycrdt import Doc, Map, Text, create_awareness_message, create_sync_message, write_var_uint
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Expect = Literal["open", "reject", "too_big", "maybe"]
REJECT_CODES = {1002, 1003}
RATE_LIMITED = 4529
KINDS = ("random", "valid", "truncated", "mutated", "huge_varint", "bad_awareness", "text", "oversize")


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def uint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise _Truncated
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 63:  # more than 10 bytes: not a 64-bit varint
                raise _Truncated

    def bytes(self) -> bytes:
        n = self.uint()
        if self.pos + n > len(self.data):
            raise _Truncated
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def _awareness_ok(payload: bytes) -> bool:
    r = _Reader(payload)
    try:
        count = r.uint()
        if count > 10_000:
            return False
        for _ in range(count):
            r.uint()
            r.uint()
            state = json.loads(r.bytes().decode("utf-8"))
            if state is not None and not isinstance(state, dict):
                return False
    except (_Truncated, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return r.pos == len(payload)


def classify(frame: bytes | str, max_message_bytes: int) -> Expect:
    """What the protocol says must happen to a socket that sends ``frame`` (see the module docstring)."""
    if isinstance(frame, str):
        return "too_big" if len(frame.encode()) > max_message_bytes else "reject"
    if len(frame) > max_message_bytes:
        return "too_big"
    r = _Reader(frame)
    try:
        kind = r.uint()
        if kind == 0:
            if r.uint() not in (0, 1, 2):
                return "reject"
            r.bytes()
            return "maybe"
        if kind == 1:
            return "open" if _awareness_ok(r.bytes()) else "reject"
        if kind in (2, 3):
            return "open"
    except _Truncated:
        return "reject"
    return "reject"


# ---- generators -------------------------------------------------------------------------------------------


@dataclass
class FrameContext:
    """What a generator may build valid frames from."""

    max_message_bytes: int
    state_vector: bytes = b"\x00"
    pool: list[bytes] = field(default_factory=list)  # valid messages, the seeds of truncation and mutation
    # Long runs: updates are increments of this one document, so the server's state vector (and every sync
    # step 1 that carries it) stays small instead of growing by one client per update.
    doc: Doc[Any] | None = None


def _bulk(rng: random.Random, n: int) -> bytes:
    """Many random bytes from one draw (hypothesis' ``randoms()`` records every byte drawn; keep that small)."""
    return random.Random(rng.getrandbits(64)).randbytes(n) if n > 64 else rng.randbytes(n)


def _update(rng: random.Random, ctx: FrameContext) -> bytes:
    doc: Doc[Any] = ctx.doc if ctx.doc is not None else Doc(client_id=rng.randrange(1, 2**32))
    before = doc.get_state()
    if rng.random() < 0.5:
        doc.get("fuzz", type=Map)[f"k{rng.randrange(10**6)}"] = rng.choice([1, "x" * rng.randrange(40), None, True])
    else:
        doc.get("fuzztext", type=Text).insert(0, "".join(rng.choice("ab€😀\n") for _ in range(rng.randrange(1, 30))))
    return bytes(doc.get_update(before))


def _awareness(rng: random.Random) -> bytes:
    state: object = rng.choice(
        [None, {}, {"user": {"id": "someone-else", "name": "x"}}, {"cursor": {"anchor": rng.randrange(99)}}]
    )
    body = json.dumps(state).encode()
    entries = write_var_uint(1) + write_var_uint(rng.randrange(1, 2**31)) + write_var_uint(rng.randrange(9))
    return create_awareness_message(entries + write_var_uint(len(body)) + body)


def valid_frame(rng: random.Random, ctx: FrameContext, changes: bool | None = None) -> bytes:
    """A well-formed message the server must accept without closing; ``changes``: only document updates (True),
    none (False), or either."""
    pick = rng.random()
    if changes is True:
        pick *= 0.45
    elif changes is False:
        pick = 0.45 + pick * 0.55
    if pick < 0.35:
        return b"\x00\x02" + write_var_uint(len(u := _update(rng, ctx))) + u  # sync update
    if pick < 0.45:
        return b"\x00\x01" + write_var_uint(len(u := _update(rng, ctx))) + u  # sync step 2
    if pick < 0.6:
        return b"\x00\x00" + write_var_uint(len(ctx.state_vector)) + ctx.state_vector  # sync step 1
    if pick < 0.9:
        return _awareness(rng)
    if pick < 0.95:
        return b"\x03"
    return b"\x02" + rng.randbytes(rng.randrange(8))  # auth: ignored


def _seed(rng: random.Random, ctx: FrameContext) -> bytes:
    if ctx.pool and rng.random() < 0.5:
        return rng.choice(ctx.pool)
    frame = valid_frame(rng, ctx)
    if len(ctx.pool) < 256:
        ctx.pool.append(frame)
    return frame


def _huge_varint(rng: random.Random) -> bytes:
    big = write_var_uint(rng.choice([2**32, 2**53 + 1, 2**63 - 1, 2**64 - 1, 2**69]))
    overlong = b"\xff" * rng.randrange(10, 40) + b"\x01"
    num = rng.choice([big, overlong, b"\x80" * rng.randrange(1, 12)])
    prefix = rng.choice([b"", b"\x00", b"\x00\x00", b"\x00\x02", b"\x01", b"\x01\x05\x01"])
    return prefix + num + rng.randbytes(rng.randrange(0, 8))


def _bad_awareness(rng: random.Random) -> bytes:
    state = rng.choice([b"[1,2]", b"42", b'"s"', b"{", b"\xff\xfe", b'{"a":1}trailing', b"nul"])
    entries = write_var_uint(1) + write_var_uint(rng.randrange(1, 2**31)) + write_var_uint(1)
    body = entries + write_var_uint(len(state)) + state
    if rng.random() < 0.3:
        body = write_var_uint(rng.randrange(2, 20_000)) + body[1:]  # count larger than what follows
    if rng.random() < 0.2:
        body += b"\x00"  # trailing bytes
    return b"\x01" + write_var_uint(len(body)) + body


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 5)):
        op = rng.random()
        pos = rng.randrange(len(data) + 1)
        if op < 0.5 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op < 0.7:
            data[pos:pos] = rng.randbytes(rng.randrange(1, 4))
        elif op < 0.9 and data:
            del data[pos : pos + rng.randrange(1, 4)]
        elif data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
    return bytes(data)


def make_frame(rng: random.Random, ctx: FrameContext, kind: str | None = None) -> tuple[str, bytes | str, Expect]:
    """One fuzz frame of ``kind`` (random kind if None), with what the server must do with it."""
    kind = kind or rng.choice(KINDS)
    frame: bytes | str
    if kind == "valid":
        frame = _seed(rng, ctx)
        return kind, frame, "open"
    if kind == "random":
        frame = _bulk(rng, rng.choice([0, 1, 2, 3, rng.randrange(4, 64), rng.randrange(64, 2048)]))
        if frame[:1] in (b"\x02", b"\x03") and rng.random() < 0.9:
            frame = b"\x07" + frame[1:]  # mostly keep random frames random, not ignored-by-design auth/query
    elif kind == "truncated":
        seed = _seed(rng, ctx)
        frame = seed[: rng.randrange(len(seed))] if len(seed) > 1 else b""
    elif kind == "mutated":
        frame = mutate(rng, _seed(rng, ctx))
    elif kind == "huge_varint":
        frame = _huge_varint(rng)
    elif kind == "bad_awareness":
        frame = _bad_awareness(rng)
    elif kind == "text":
        frame = "".join(rng.choice("\x00\x01\x02abc{}€") for _ in range(rng.randrange(0, 50)))
    elif kind == "oversize":
        extra = rng.choice([1, rng.randrange(2, 1024), rng.randrange(1024, 8192)])
        frame = _bulk(rng, ctx.max_message_bytes + extra)
    else:
        raise ValueError(kind)
    return kind, frame, classify(frame, ctx.max_message_bytes)


# ---- harness ----------------------------------------------------------------------------------------------


async def open_socket(url: str, max_size: int | None = None) -> ClientConnection:
    return await connect(url, max_size=max_size, compression=None, proxy=None, ping_interval=None, open_timeout=15)


class Observer:
    """A raw client that learns the server's document only through explicit sync step 1 / step 2 round trips,
    so a change the server made in memory without telling anyone is still visible to it."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.ws: ClientConnection | None = None

    async def open(self, url: str) -> None:
        self.ws = await open_socket(url, max_size=None)

    async def state(self, timeout: float = 15) -> bytes:
        """Ask for everything we lack; return the state vector after applying it (the server's, in memory)."""
        assert self.ws is not None
        await self.ws.send(create_sync_message(self.doc))
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.recv()
                assert isinstance(msg, bytes)
                if msg[:1] == b"\x00" and msg[1:2] in (b"\x01", b"\x02"):
                    r = _Reader(msg[2:])
                    self.doc.apply_update(r.bytes())
                    if msg[1:2] == b"\x01":
                        return bytes(self.doc.get_state())

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@dataclass
class Outcome:
    open: bool
    code: int | None


class Prober:
    """One fuzz socket: send a frame, then an awareness probe (which the server echoes to its sender); the
    echo means every frame before it was handled and the socket is still open, a close means it was refused."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.client_id = 0
        self.clock = 0

    async def ensure_open(self) -> None:
        if self.ws is None:
            self.ws = await open_socket(self.url, max_size=None)
            # A new awareness id per socket: the server keeps the clock of a closed socket's id (bumped on leave).
            self.client_id = int.from_bytes(os.urandom(6), "big") | 1  # unknown to the generators
            self.clock = 0

    async def send(self, frames: list[bytes | str], timeout: float = 15) -> Outcome:
        await self.ensure_open()
        assert self.ws is not None
        self.clock += 1
        body = json.dumps({"probe": self.clock}).encode()
        probe = create_awareness_message(
            write_var_uint(1)
            + write_var_uint(self.client_id)
            + write_var_uint(self.clock)
            + write_var_uint(len(body))
            + body
        )
        ws = self.ws
        try:
            for frame in frames:
                await ws.send(frame)
            await ws.send(probe)
            async with asyncio.timeout(timeout):
                while True:
                    msg = await ws.recv()
                    if isinstance(msg, bytes) and msg[:1] == b"\x01" and self._is_echo(msg):
                        return Outcome(True, None)
        except ConnectionClosed:
            pass
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await ws.wait_closed()
        self.ws = None
        return Outcome(False, ws.close_code)

    def _is_echo(self, msg: bytes) -> bool:
        r = _Reader(msg[1:])
        try:
            payload = _Reader(r.bytes())
            for _ in range(payload.uint()):
                cid, clock = payload.uint(), payload.uint()
                payload.bytes()
                if cid == self.client_id and clock == self.clock:
                    return True
        except _Truncated:
            return False
        return False

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
            self.ws = None


def verdict(expect: Expect, outcome: Outcome) -> str | None:
    """None when the outcome is what the protocol demands, else a description of the violation."""
    if not outcome.open and outcome.code == RATE_LIMITED:
        return None  # the socket's byte quota: documented, transient, independent of the frame's content
    if expect == "open" and not outcome.open:
        return f"a valid frame closed the socket with {outcome.code}"
    if expect == "reject" and (outcome.open or outcome.code not in REJECT_CODES):
        return "a malformed frame " + ("was accepted" if outcome.open else f"closed with {outcome.code}")
    if expect == "too_big" and outcome.code != 1009:
        return "an oversize frame " + ("was accepted" if outcome.open else f"closed with {outcome.code}")
    if expect == "maybe" and not outcome.open and outcome.code not in REJECT_CODES:
        return f"a sync frame closed the socket with undocumented code {outcome.code}"
    return None
