"""The ASGI application: REST under /api, the sync endpoint under /sync, the web client at /."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from api.composition import running_node
from api.log_redaction import install_log_redaction
from api.quotas import RestWriteRateLimit
from api.security import configure_password_hashing
from api.startup import check_dependencies, check_settings
from api.task_dump import exit_if_stalled, task_dump_on_signal
from persistence.settings import Settings, StartupError, get_settings

log = logging.getLogger("plait")
SYNC_PATH = re.compile(r"/sync/([^/]+)")


class PlaitApp(FastAPI):
    """FastAPI, except that sync sockets go straight to the sync service.

    A socket lives for hours: through the middleware stack and router it would hold a coroutine frame per
    layer for all that time (about 4 KB of a connection's memory), and every frame it sends would pass the
    exception-handling wrapper of the stack. None of those layers does anything for a sync socket: the sync
    service authenticates, checks the origin and handles its own errors (close codes).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and (match := SYNC_PATH.fullmatch(scope["path"])):
            scope["app"] = self
            await self.state.ctx.sync.serve(scope, receive, send, match[1])
            return
        if scope["type"] == "lifespan":
            send = _clear_startup_failure(send)
        await super().__call__(scope, receive, send)


def _clear_startup_failure(send: Send) -> Send:
    """A start-up check that fails (StartupError) reaches the server as its one-line message, not a traceback.

    Starlette reports a failing lifespan with the formatted traceback, which uvicorn logs; the message is sent
    from the handler of the exception, so the exception being handled is the one that failed the start."""

    async def send_clearly(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "lifespan.startup.failed":
            failure: BaseException | None = sys.exc_info()[1]
            while failure is not None and not isinstance(failure, StartupError):
                failure = failure.__cause__ or failure.__context__
            if failure is not None:
                message = {**message, "message": f"plait: {failure}"}
        await send(message)

    return send_clearly


def create_app(
    settings: Settings | None = None, *, startup_checks: bool = True, exit_stalled_after: float | None = None
) -> FastAPI:
    """The application. ``startup_checks``: refuse settings unsafe in production here, and check Redis and the
    database (migrating it if the node migrates on start) in the lifespan; ``plait serve`` has run them itself
    before uvicorn starts and passes False. ``exit_stalled_after``: ``plait serve``'s process is ended this many
    seconds after the application shut down if it has not exited by then (``task_dump.exit_if_stalled``)."""
    settings = settings or get_settings()
    install_log_redaction()
    if startup_checks:
        check_settings(settings)
    secret = settings.resolved_secret_key()  # fail fast in production without a key
    configure_password_hashing(
        settings.password_hash_time_cost, settings.password_hash_memory_kib, settings.password_hash_parallelism
    )
    url = settings.resolved_database_url()  # resolved once: a relative data directory is the creator's

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_redaction()  # (idempotent) in case the logging configuration was replaced since create_app
        if startup_checks:
            await check_dependencies(settings)  # StartupError: see _clear_startup_failure
        with task_dump_on_signal():
            async with running_node(settings, secret, url) as ctx:
                app.state.ctx = ctx  # for the sync endpoint, which bypasses the router (routes use deps.Ctx)
                yield
        if exit_stalled_after is not None:
            exit_if_stalled(exit_stalled_after)

    app = PlaitApp(title="Plait", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    from api.errors import install_error_handlers
    from api.routes import register_routes

    install_error_handlers(app)
    app.add_middleware(RestWriteRateLimit, settings=settings)
    register_routes(app, settings)
    return app
