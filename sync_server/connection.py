"""One client socket: a pycrdt ``Channel`` over ASGI's websocket interface, and its outbound path.

A broadcast frame is written straight to the socket's transport while it keeps up; only a socket whose
transport pushes back gets a writer task and a bounded queue, and one whose backlog passes the limit (or that
stops reading) is closed with 1013 and resyncs on reconnect. So a slow reader can neither stall a room nor grow
memory without bound: the room never awaits a send.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Send
from starlette.websockets import WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from . import close_codes, metrics
from .close_codes import ABNORMAL, GOING_AWAY, NORMAL, CloseEvent

log = logging.getLogger("plait.sync")

# A message larger than this is sent as a fragmented WebSocket message, one fragment at a time as the socket drains:
# a client that stops reading holds one fragment in the server's memory, not a whole large sync step 2, and a close
# frame can still go out between two fragments (RFC 6455 5.4).
FRAGMENT_BYTES = 256 * 1024
CLOSE_GRACE_SECONDS = 10.0  # a close frame stuck behind data the client does not read: then the TCP is dropped

# A reconnecting client's updates that arrive before its sync step 2 and depend on what that step 2 brings are
# held, up to this many bytes per socket (more: refused, 1003, as any update with missing dependencies).
HELD_MAX_BYTES = 64 * 1024
_ids = itertools.count(1)
AWARENESS_BURST = 30.0


class TextFrame(Exception):
    """The client sent a text frame; the protocol is binary only."""


def binary_frame(message: bytes) -> bytes:
    """``message`` as one unmasked, uncompressed binary WebSocket frame: what the server writes to every socket
    without an extension, so a broadcast encodes it once (``WebSocketChannel.write_frame``)."""
    return Frame(Opcode.BINARY, message).serialize(mask=False)


class WebSocketChannel:
    """pycrdt's ``Channel`` protocol (path, send, recv, async iteration) over ASGI's ``receive`` and ``send``.

    Not over Starlette's ``WebSocket``: that wrapper runs a state machine on every frame sent and received and
    keeps the headers and query it parsed for the life of the socket (memory per idle connection:
    docs/performance.md#connection-memory).
    The sync service reads what it needs from the scope once, at admission."""

    __slots__ = ("_direct", "_path", "_proto", "_receive", "_send")

    def __init__(self, receive: Receive, send: Send, path: str) -> None:
        self._receive = receive
        self._send = send
        self._path = path
        self._direct: WebSocketsSansIOProtocol | None = None  # set when frames may be written as they are
        self._proto: WebSocketsSansIOProtocol | None = None  # uvicorn's protocol, to see its transport

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WebSocketChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except WebSocketDisconnect:
            raise StopAsyncIteration from None

    async def accept(self) -> None:
        """Complete the upgrade (the server's first message is ``websocket.connect``)."""
        msg = await self._receive()
        if msg["type"] != "websocket.connect":
            raise WebSocketDisconnect(msg.get("code", ABNORMAL))
        await self._send({"type": "websocket.accept"})
        # ASGI's send is uvicorn's protocol method when nothing wraps it. Without an extension (compression)
        # every socket's frame of a message is the same bytes, so a broadcast can encode it once and write it.
        proto = getattr(self._send, "__self__", None)
        if isinstance(proto, WebSocketsSansIOProtocol):
            self._proto = proto
            if not proto.conn.extensions:
                self._direct = proto

    def buffered(self) -> int:
        """Bytes written to the socket's transport that the client has not taken yet (the kernel's buffer
        excluded): a send returns as soon as its frame is in there, so this is memory the connection holds."""
        proto = self._proto
        if proto is None:
            return 0
        return int(proto.transport.get_write_buffer_size())

    def write_frame(self, frame: bytes) -> bool:
        """Write a frame made by ``binary_frame`` straight to the transport, as uvicorn's ``send`` would have
        (its per-message work, an ASGI event, a coroutine and the frame's encoding, is most of a delivery's
        cost in a large room). False when that is not possible now (no direct transport, closing, or the
        transport pushes back): then the caller sends through ASGI, which waits, queues or fails as usual."""
        proto = self._direct
        if (
            proto is None
            or proto.close_sent
            or not proto.writable.is_set()
            or proto.conn.state is not State.OPEN
            or proto.transport.is_closing()
        ):
            return False
        proto.transport.write(frame)
        return True

    async def send(self, message: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": message})

    async def send_fragmented(self, message: bytes, stall_seconds: float) -> None:
        """Send ``message`` in fragments of FRAGMENT_BYTES, each written once the transport has drained below its
        low-water mark (as uvicorn's ``send`` waits for a whole message). TimeoutError when the client has not
        read for ``stall_seconds``; a fragment is never left half written, so a close frame may follow."""
        proto = self._proto
        if proto is None:
            await self.send(message)
            return
        view = memoryview(message)
        for start in range(0, len(message), FRAGMENT_BYTES):
            await asyncio.wait_for(proto.writable.wait(), stall_seconds)
            if proto.close_sent or proto.conn.state is not State.OPEN or proto.transport.is_closing():
                raise WebSocketDisconnect(ABNORMAL)
            chunk = view[start : start + FRAGMENT_BYTES]
            fin = start + FRAGMENT_BYTES >= len(message)
            if start == 0:
                proto.conn.send_binary(chunk, fin=fin)
            else:
                proto.conn.send_continuation(chunk, fin=fin)
            proto.transport.write(b"".join(proto.conn.data_to_send()))

    async def recv(self) -> bytes:
        msg = await self._receive()
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", NORMAL))
        data = msg.get("bytes")
        if data is None:
            raise TextFrame()
        return bytes(data)

    async def close(self, code: int, reason: str = "") -> None:
        if self._close_now(code, reason):
            return
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def _close_now(self, code: int, reason: str) -> bool:
        """Close a socket whose transport pushes back without waiting for it to drain (uvicorn's send would
        wait for ever on a client that stopped reading): the close frame goes behind what is buffered, and the
        connection is dropped if the client has not read up to it within CLOSE_GRACE_SECONDS. What uvicorn's
        ``send`` does for ``websocket.close``, minus the wait."""
        proto = self._proto
        if (
            proto is None
            or proto.writable.is_set()
            or proto.close_sent
            or proto.conn.state is not State.OPEN
            or proto.transport.is_closing()
        ):
            return False
        proto.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        proto.conn.send_close(code, reason)
        proto.transport.write(b"".join(proto.conn.data_to_send()))
        proto.close_sent = True
        transport = proto.transport
        transport.close()  # flushes what is buffered, then closes; abort() drops it
        proto.loop.call_later(CLOSE_GRACE_SECONDS, transport.abort)
        return True


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a change: the transaction origin of every update (hashable, as pycrdt requires)."""

    user_id: str | None
    source: str  # "ws:<conn id>", "rest", "server"


class Connection:
    # Slots: one of these lives per socket for hours (docs/performance.md#connection-memory).
    __slots__ = (
        "_byte_tokens",
        "_byte_tokens_at",
        "_closing",
        "_held",
        "_max_bytes",
        "_max_messages",
        "_queue",
        "_queued_bytes",
        "_stall_seconds",
        "_stalled",
        "_started",
        "_tokens",
        "_tokens_at",
        "_writer",
        "channel",
        "close_code",
        "connected_at",
        "controlled",
        "display_name",
        "id",
        "last_active",
        "last_sent",
        "principal",
        "read_scope",
        "role",
        "session_id",
        "step2_due",
        "synced",
        "user_id",
        "workspace_id",
    )

    def __init__(
        self,
        channel: WebSocketChannel,
        *,
        workspace_id: str,
        user_id: str,
        display_name: str,
        role: str,
        max_queue_bytes: int,
        max_queue_messages: int,
        stall_seconds: float = 15.0,
        session_id: str | None = None,
        read_scope: bool = False,
    ) -> None:
        self.id = next(_ids)
        self.session_id = session_id  # its revocation closes the socket (4401)
        self.read_scope = read_scope  # a read-scoped token: stays a viewer through role changes
        self.channel = channel
        self.workspace_id = workspace_id
        self.user_id = user_id
        self.display_name = display_name
        self.role = role
        self.principal = Principal(user_id, f"ws:{self.id}")
        self.synced = False  # receives broadcasts only after its own sync step 2 went out
        self.step2_due = False  # the server sent its step 1 and the client's step 2 has not arrived yet
        self._held: list[bytes] | None = None  # its updates waiting for that step 2 (Room.handle)
        self.controlled: dict[int, int] = {}  # awareness client id -> last clock
        self.connected_at = time.time()
        self.last_active = self.connected_at
        self.last_sent = time.monotonic()
        self.close_code: int | None = None
        # Made when the socket first backs up (an empty deque is not free: docs/performance.md#connection-memory):
        # (message, bytes it counts against the limit, whether to send it in fragments).
        self._queue: deque[tuple[bytes, int, bool]] | None = None
        self._queued_bytes = 0
        self._max_bytes = max_queue_bytes
        self._max_messages = max_queue_messages
        self._stall_seconds = stall_seconds
        self._started = False
        self._closing: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stalled: tuple[Coroutine[Any, Any, None], Any] | None = None  # a send waiting on the transport
        self._tokens = AWARENESS_BURST
        self._tokens_at = time.monotonic()
        self._byte_tokens: float | None = None
        self._byte_tokens_at = self._tokens_at

    def hold(self, update: bytes) -> bool:
        """Keep an update of this client's until its step 2 arrives, within HELD_MAX_BYTES; False: refuse it."""
        held = self._held if self._held is not None else []
        if not self.step2_due or sum(map(len, held)) + len(update) > HELD_MAX_BYTES:
            return False
        held.append(update)
        self._held = held
        return True

    def step2_arrived(self) -> list[bytes]:
        """The client's step 2 arrived: what was held for it, in the order received."""
        self.step2_due = False
        held, self._held = self._held or [], None
        return held

    @property
    def read_only(self) -> bool:
        return self.role == "viewer"

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def start(self) -> None:
        """The socket is accepted: from now on frames go out (anything sent before waits in the queue)."""
        self._started = True
        if self._queue:
            self._spawn_writer()

    def send(self, message: bytes, frame: bytes | None = None, *, shared: bool = False, fragment: bool = False) -> bool:
        """Send or queue a message; closes the connection (1013) instead of buffering past the limit. ``frame``,
        the message already encoded by ``binary_frame`` (a broadcast's), is written as it is when it can be.

        The limit counts what the connection holds: its queue and its transport's write buffer (a send returns
        as soon as the frame is in there). A ``shared`` message (a piece of the room's encoded document, which
        the room keeps anyway) is not counted while queued, only once it is in the transport. A ``fragment``
        message larger than FRAGMENT_BYTES (a sync step 2) is written in fragments as the socket drains.

        While nothing is queued the frame is written at once, in the caller's turn: the send coroutine only
        suspends when the transport pushes back, and a writer task per socket (woken per broadcast) would cost
        more than the write itself, in CPU and in memory. Only a socket that is backed up gets a writer task,
        which finishes the suspended send and drains the queue in order, then ends."""
        if self.closed:
            return False
        fragment = fragment and len(message) > FRAGMENT_BYTES
        if self._started and self._writer is None and not fragment:
            # Not backed up: the transport is below its high-water mark, or the send suspends (and is driven by
            # a writer task from now on) instead of writing.
            if frame is not None and self.channel.write_frame(frame):
                self.last_sent = time.monotonic()
                return True
            coro = self.channel.send(message)
            try:
                yielded = coro.send(None)
            except StopIteration:
                self.last_sent = time.monotonic()
                return True
            except Exception as exc:
                self._send_failed(exc)
                return False
            self._stalled = (coro, yielded)
            self._spawn_writer()
            return True
        cost = 0 if shared else len(message)
        if self._queued_bytes + self.channel.buffered() + cost > self._max_bytes or (
            self._queue is not None and len(self._queue) >= self._max_messages
        ):
            log.warning("closing slow client conn=%s user=%s: send buffer full", self.id, self.user_id)
            metrics.SEND_QUEUE_OVERFLOWS.inc()
            self.end(close_codes.SEND_BUFFER_FULL)
            return False
        if self._queue is None:
            self._queue = deque()
        self._queue.append((message, cost, fragment))
        self._queued_bytes += cost
        if self._started and self._writer is None:
            self._spawn_writer()  # a message to fragment: the writer sends it
        return True

    def _spawn_writer(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"plait-conn-{self.id}")

    def allow_awareness(self, rate: float) -> bool:
        """Token bucket for awareness messages: bursts of AWARENESS_BURST, then ``rate`` per second."""
        now = time.monotonic()
        self._tokens = min(AWARENESS_BURST, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def allow_bytes(self, n: int, rate: float, burst: float) -> bool:
        """Token bucket on bytes received (starts full, so an offline client's catch-up passes)."""
        now = time.monotonic()
        tokens = burst if self._byte_tokens is None else self._byte_tokens
        self._byte_tokens = min(burst, tokens + (now - self._byte_tokens_at) * rate) - n
        self._byte_tokens_at = now
        return self._byte_tokens >= 0

    def end(self, event: CloseEvent) -> None:
        """Close with a named event, counted in the close metric (what every server-side close goes through)."""
        metrics.CLOSES.labels(str(event.code)).inc()
        self.close(event.code, event.reason)

    def close(self, code: int, reason: str = "") -> None:
        """Close from any task: stops the writer and sends the close frame (queued data is dropped)."""
        if self.close_code is not None:
            return
        self.close_code = code
        self._queue = None
        self._queued_bytes = 0
        # Held by the connection, whose handler awaits it in ``stop`` (no module-global task set needed).
        self._closing = asyncio.get_running_loop().create_task(self.channel.close(code, reason))

    async def stop(self) -> None:
        """The socket's handler ends: drop what is unsent, but let a close frame already on its way go out
        (returning first would let the server abort the socket: the client would see 1006, not our code)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(BaseException):
                await self._writer
        if self._closing is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._closing), 5)

    async def _write_loop(self) -> None:
        try:
            if self._stalled is not None:
                await self._finish_stalled()
            while self._queue and not self.closed:  # (closing drops the queue)
                msg, cost, fragment = self._queue.popleft()
                self._queued_bytes -= cost
                try:
                    if fragment:
                        await self.channel.send_fragmented(msg, self._stall_seconds)
                    else:
                        # uvicorn's send waits until the transport has drained below its low-water mark, then writes
                        await asyncio.wait_for(self.channel.send(msg), self._stall_seconds)
                except TimeoutError:
                    self._stall()
                    return
                self.last_sent = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._send_failed(exc)
        finally:
            if self._stalled is not None:
                self._stalled[0].close()
                self._stalled = None
            self._writer = None  # nothing in flight or queued: sends are direct again

    async def _finish_stalled(self) -> None:
        """Drive a send that suspended in ``send`` to its end, exactly as its own task would have."""
        assert self._stalled is not None
        coro, yielded = self._stalled
        while True:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                done, _ = await asyncio.wait([yielded], timeout=self._stall_seconds)
                if not done:
                    self._stall()
                    return
            try:
                yielded = coro.send(None)
            except StopIteration:
                break
        self._stalled = None
        self.last_sent = time.monotonic()

    def _stall(self) -> None:
        """The client has not read anything for ``stall_seconds``: what it was sent stays in memory until it
        does. Close it (it resyncs on reconnect)."""
        log.warning("closing stalled client conn=%s user=%s: not reading", self.id, self.user_id)
        metrics.SEND_QUEUE_OVERFLOWS.inc()
        self.end(close_codes.NOT_READING)

    def _send_failed(self, exc: BaseException) -> None:
        """A send on a dead socket ends this connection only."""
        log.debug("send failed conn=%s: %r", self.id, exc)
        self.close_code = self.close_code or GOING_AWAY
