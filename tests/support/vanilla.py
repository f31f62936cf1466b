"""Vanilla pycrdt-websocket (``ASGIServer(WebsocketServer())``) under uvicorn in a thread.

It speaks the same y-websocket protocol as Plait's ``/sync`` endpoint, so the client harnesses are
tested against it independently of Plait. Its room key is the whole path: connect to
``{ws_url}/sync`` with room ``name`` (Node) or to ``{ws_url}/sync/name`` (Python).
Test routes: ``/close/{code}`` accepts the socket and closes it at once with that code (close-code
capture); ``/reject`` refuses before the upgrade (HTTP 403); ``/echo-headers`` closes with code 4000 and
reason ``"<Origin>|<Authorization>|<query string>"`` (handshake headers and the token reach the server).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer, exception_logger

from tests.support.server import free_port

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _CloseRoutes:
    """ASGI wrapper: ``/close/{code}`` closes after accept; everything else goes to pycrdt-websocket."""

    def __init__(self, inner: ASGIServer) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "websocket" and path == "/reject":
            await receive()
            await send({"type": "websocket.close", "code": 1008})  # before accept: uvicorn answers HTTP 403
            return
        if scope["type"] == "websocket" and path == "/echo-headers":
            await receive()
            await send({"type": "websocket.accept"})
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            query = scope.get("query_string", b"").decode()
            reason = f"{headers.get('origin', '')}|{headers.get('authorization', '')}|{query}"
            await send({"type": "websocket.close", "code": 4000, "reason": reason})
            return
        if scope["type"] == "websocket" and path.startswith("/close/"):
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": int(path.rsplit("/", 1)[1]), "reason": "test close"})
            return
        await self.inner(scope, receive, send)  # type: ignore[arg-type]


class VanillaServer:
    """Start/stop a vanilla pycrdt-websocket server on a free port in a background thread."""

    def __init__(self, *, ws_max_size: int = 16 * 1024 * 1024) -> None:
        self.port = free_port()
        self.ws_max_size = ws_max_size
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _main(self) -> None:
        async with WebsocketServer(exception_handler=exception_logger) as websocket_server:
            app = _CloseRoutes(ASGIServer(websocket_server))
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                ws_max_size=self.ws_max_size,
                lifespan="off",
                timeout_graceful_shutdown=1,
            )
            self._server = uvicorn.Server(config)
            serve = asyncio.create_task(self._server.serve())
            while not self._server.started and not serve.done():
                await asyncio.sleep(0.01)
            self._started.set()
            await serve

    def start(self) -> VanillaServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        if not self._started.wait(15):
            raise RuntimeError("vanilla pycrdt-websocket server did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
