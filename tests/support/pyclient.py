"""Python y-websocket clients for tests: a minimal pycrdt client we control byte by byte, and pycrdt's own provider.

:class:`YClient` is built on the ``websockets`` package and pycrdt's sync encoders rather than on
``pycrdt.Provider``, because tests need what that provider hides: the server's close code and reason,
a ``synced`` signal per connection, awareness (the provider has none), raw frames for malformed-input
tests, and offline edits followed by a reconnect on the same ``Doc``. :func:`pycrdt_provider` wraps
pycrdt-websocket's own provider (``HttpxWebsocket`` over httpx-ws) to prove that client works unchanged.

Usage (asyncio)::

    async with YClient() as c:
        await c.connect(f"{ws_url}/sync/{wid}?token={token}")
        await c.wait_synced()
        c.tasks_map()[...]           # pycrdt Map; edits are sent to the server as they happen
        await c.wait_for(lambda: "x" in c.tasks())
        await c.close()              # or c.abort() to drop the TCP connection without a close frame
    code = c.close_code              # e.g. 4401, 4403, 1009 after a server close
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from httpx_ws import AsyncWebSocketSession, aconnect_ws
from pycrdt import (
    Awareness,
    Decoder,
    Doc,
    Encoder,
    Map,
    Provider,
    Text,
    TransactionEvent,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)
from pycrdt.websocket.websocket import HttpxWebsocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

T = TypeVar("T")
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3


def sync_url(ws_base: str, workspace_id: str, token: str | None = None) -> str:
    """``ws://host:port/sync/{wid}?token=...`` (``ws_base`` is ``ws://host:port``)."""
    return f"{ws_base}/sync/{workspace_id}" + (f"?token={token}" if token is not None else "")


async def async_wait_until(
    fn: Callable[[], T | Awaitable[T | None] | None], timeout: float = 10.0, interval: float = 0.01
) -> T:
    """Poll ``fn`` (sync or async) until truthy; AssertionError with the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


class YClient:
    """One Doc + Awareness synchronised over one y-websocket connection at a time (reconnectable)."""

    def __init__(
        self, doc: Doc[Any] | None = None, *, user_state: dict[str, Any] | None = None, allow_errors: bool = False
    ) -> None:
        """``allow_errors``: the test reads ``errors`` itself; otherwise closing (or aborting) the client fails if
        a frame from the server could not be handled."""
        self.allow_errors = allow_errors
        self.doc = doc if doc is not None else Doc()
        self.awareness = Awareness(self.doc)
        if user_state is not None:
            self.awareness.set_local_state(user_state)
        self.ws: ClientConnection | None = None
        self.synced = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.messages_received = 0
        self.updates_received = 0
        self.auth_messages: list[bytes] = []
        self.errors: list[BaseException] = []
        self.awareness_clocks: dict[int, int] = {}  # highest clock the server sent per awareness client id
        self._probes = 0
        self._remote = False  # set while applying a server message: do not echo it back
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._doc_sub = self.doc.observe(self._on_doc_update)
        self._aw_sub = self.awareness.observe(self._on_awareness)

    # -- document helpers -------------------------------------------------------------------------
    def tasks_map(self) -> Map[Any]:
        tasks: Map[Any] = self.doc.get("tasks", type=Map)
        return tasks

    def tasks(self) -> dict[str, Any]:
        """The ``tasks`` map as plain Python (descriptions as strings)."""
        return dict(self.tasks_map().to_py() or {})

    def text(self, name: str) -> Text:
        text: Text = self.doc.get(name, type=Text)
        return text

    def map(self, name: str) -> Map[Any]:
        root: Map[Any] = self.doc.get(name, type=Map)
        return root

    # -- connection -------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.closed.is_set()

    async def connect(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        origin: str | None = None,
        max_size: int | None = None,
        open_timeout: float = 10.0,
        compression: str | None = None,
    ) -> None:
        """Open the socket, then send sync step 1 and our awareness state, as y-websocket does.

        A refusal before the upgrade raises ``websockets.exceptions.InvalidStatus`` (``.response.status_code``).
        """
        if self.connected:
            raise RuntimeError("already connected")
        self.synced.clear()
        self.closed.clear()
        self.close_code, self.close_reason = None, ""
        self._outbox = asyncio.Queue()
        self.ws = await connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            max_size=max_size,
            compression=compression,
            proxy=None,
            open_timeout=open_timeout,
            ping_interval=None,
        )
        self._outbox.put_nowait(create_sync_message(self.doc))
        if self.awareness.get_local_state() is not None:
            self.awareness.set_local_state(self.awareness.get_local_state())  # new clock; sent by _on_awareness
        self._tasks = [asyncio.create_task(self._reader(self.ws)), asyncio.create_task(self._writer(self.ws))]

    async def _reader(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    continue
                self.messages_received += 1
                try:
                    await self._handle(message)
                except Exception as exc:  # a bad server message: record it, keep reading
                    self.errors.append(exc)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""
            self.closed.set()
            self._outbox.put_nowait(None)

    async def _writer(self, ws: ClientConnection) -> None:
        while (data := await self._outbox.get()) is not None:
            try:
                await ws.send(data)
            except ConnectionClosed:
                return

    async def _handle(self, message: bytes) -> None:
        kind = message[0]
        if kind == YMessageType.SYNC:
            self._remote = True
            try:
                reply = handle_sync_message(message[1:], self.doc)
            finally:
                self._remote = False
            if message[1] in (YSyncMessageType.SYNC_STEP2, YSyncMessageType.SYNC_UPDATE):
                self.updates_received += 1
            if message[1] == YSyncMessageType.SYNC_STEP2:
                self.synced.set()
            if reply is not None:
                self._outbox.put_nowait(reply)
        elif kind == YMessageType.AWARENESS:
            payload = read_message(message[1:])
            dec = Decoder(payload)
            for _ in range(dec.read_var_uint()):
                cid, clock = dec.read_var_uint(), dec.read_var_uint()
                dec.read_var_string()
                self.awareness_clocks[cid] = max(clock, self.awareness_clocks.get(cid, -1))
            self.awareness.apply_awareness_update(payload, "remote")
        elif kind == MSG_QUERY_AWARENESS:
            self._send_awareness(list(self.awareness.states))
        elif kind == MSG_AUTH:
            self.auth_messages.append(message)

    def _on_doc_update(self, event: TransactionEvent) -> None:
        # Offline edits are not queued: the sync step 1/2 exchange on reconnect carries them.
        if not self._remote and self.connected:
            self._outbox.put_nowait(create_update_message(event.update))

    def _on_awareness(self, topic: str, change: tuple[dict[str, Any], Any]) -> None:
        changes, origin = change
        if topic == "update" and origin == "local" and self.connected:
            self._send_awareness(changes["added"] + changes["updated"] + changes["removed"])

    def _send_awareness(self, client_ids: list[int]) -> None:
        if self.connected:
            self._outbox.put_nowait(create_awareness_message(self.awareness.encode_awareness_update(client_ids)))

    async def send_raw(self, data: bytes | str) -> None:
        """Send one frame as given (binary for bytes, text for str), bypassing the protocol."""
        if self.ws is None:
            raise RuntimeError("not connected")
        await self.ws.send(data)

    async def handled(self, *observers: YClient, timeout: float = 10.0) -> None:
        """Barrier: the server has handled every frame this client sent before, and each of ``observers`` has
        received everything the server sent it before that. It sends a new awareness state (a ``probe`` counter
        added to the local state) and waits for the server's echo of it, on this socket and the observers'
        (a socket's frames are handled in order; awareness is broadcast at once, to the sender too). Use it
        before asserting that something did *not* happen."""
        self._probes += 1
        self.awareness.set_local_state({**(self.awareness.get_local_state() or {}), "probe": self._probes})
        cid = self.awareness.client_id
        clock = int(self.awareness.meta[cid]["clock"])
        for c in (self, *observers):
            await c.wait_for(lambda c=c: c.awareness_clocks.get(cid, -1) >= clock, timeout)

    async def wait_synced(self, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self.synced.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"not synced after {timeout}s (closed={self.closed.is_set()}, code={self.close_code})"
            ) from None

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Wait until the server (or we) closed the socket; returns the close code (1006 if abnormal)."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"socket still open after {timeout}s") from None
        return self.close_code

    async def wait_for(self, fn: Callable[[], T | Awaitable[T | None] | None], timeout: float = 10.0) -> T:
        return await async_wait_until(fn, timeout)

    def _null_awareness(self) -> bytes:
        """Our own state as "null" at the current clock, the disconnect notice y-websocket sends."""
        enc = Encoder()
        enc.write_var_uint(1)
        enc.write_var_uint(self.awareness.client_id)
        enc.write_var_uint(int(self.awareness.meta.get(self.awareness.client_id, {}).get("clock", 0)))
        enc.write_var_string("null")
        return create_awareness_message(enc.to_bytes())

    async def close(self, code: int = 1000, *, announce: bool = True) -> None:
        """Clean close; with ``announce`` first send our null awareness state like y-websocket's disconnect()."""
        if self.ws is None:
            return
        if announce and self.connected:
            with suppress(ConnectionClosed):
                await self.ws.send(self._null_awareness())
        await self.ws.close(code)
        await self._join()

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crashed tab / lost network)."""
        if self.ws is None:
            return
        self.ws.transport.abort()
        await self._join()

    async def _join(self) -> None:
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        self._tasks = []
        if self.errors and not self.allow_errors:
            errors, self.errors = self.errors, []
            raise AssertionError(f"the server sent frames this client could not handle: {errors!r}")

    async def __aenter__(self) -> YClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close(announce=False)
        self.doc.unobserve(self._doc_sub)
        self.awareness.unobserve(self._aw_sub)


@asynccontextmanager
async def pycrdt_provider(url: str, doc: Doc[Any], *, synced_timeout: float = 10.0) -> AsyncIterator[Provider]:
    """pycrdt-websocket's own Python client (``pycrdt.Provider`` + ``HttpxWebsocket``), synced on entry."""
    http_url = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    async with (
        httpx.AsyncClient() as http,
        aconnect_ws(http_url, http, session_class=AsyncWebSocketSession) as ws,
    ):
        async with Provider(doc, HttpxWebsocket(ws, urlsplit(url).path)) as provider:
            await asyncio.wait_for(provider.synced.wait(), synced_timeout)
            yield provider
