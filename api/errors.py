"""Every error is JSON ``{"detail": ...}`` with the right status."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.domain.errors import Refused
from api.security_headers import API_CSP, SECURITY_HEADERS

log = logging.getLogger("plait.api")


class ApiError(Refused):
    """A refusal decided in the HTTP layer (authentication, permissions, quotas); answered like the domain's."""


# ---- request bodies: JSON as RFC 8259 has it ---------------------------------------------------------------


class _Unrepresentable(ValueError):
    """A value JSON cannot represent: NaN, ±Infinity (or a number that overflows to it), a lone surrogate."""


def _refuse_constant(name: str) -> Any:
    raise _Unrepresentable(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unrepresentable(f"the number {text[:40]} is out of range")
    return value


# A surrogate gets into parsed JSON through an escape, or through raw bytes: Python decodes a bytes body with
# "surrogatepass" (UTF-8 ED A0..BF xx, or a UTF-16/32 body), so any non-ASCII body is checked too.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # after parsing, a valid pair is one code point: any left is lone


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def json_body_problem(body: bytes) -> str | None:
    """Why ``body`` is JSON Plait refuses (non-finite numbers, lone surrogates), else None.

    Python's parser accepts ``NaN``/``Infinity`` and ``"\\ud800"``; neither can be written back as JSON (the
    422 that echoes the input failed with a 500) nor stored as UTF-8. Malformed JSON is left to FastAPI (422).
    """
    try:
        parsed = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _Unrepresentable as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return None  # malformed: FastAPI answers it (422 json_invalid, or 400)
    if (not body.isascii() or _SURROGATE_ESCAPE.search(body)) and _has_lone_surrogate(parsed):
        return "a string holds a lone UTF-16 surrogate"
    return None


def _is_json(content_type: str | None) -> bool:
    """The content types FastAPI parses as JSON (none given counts: FastAPI may parse it too)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonBodyGuard:
    """ASGI middleware: a JSON request body with ``NaN``, ``Infinity`` or a lone surrogate gets 422
    ``{"detail": "Invalid JSON body: ..."}`` before any route sees it (the body is read once and replayed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), None)
        if not _is_json(content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        first: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # the client went away: let the app see it
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = json_body_problem(body) if body and first is None else None
        if problem is not None:
            response = JSONResponse({"detail": f"Invalid JSON body: {problem}"}, status_code=422)
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first or {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(JsonBodyGuard)
    # Starlette answers an unhandled exception outside every middleware, SecurityHeaders included: the 500 gets
    # the headers every other response has here (a JSON body: the API's policy).
    unexpected_headers = {**SECURITY_HEADERS, "Content-Security-Policy": API_CSP}

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse({"detail": "Internal server error"}, status_code=500, headers=unexpected_headers)

    @app.exception_handler(Refused)  # ApiError too
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
