"""The browser security headers of every HTTP response: the content security policies and the rest.

Defined apart from the web mount because the error handlers need them too (Starlette answers an unhandled
exception outside every middleware)."""

from __future__ import annotations

import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The web client's policy: its own scripts only (Vite emits no inline script), its own styles plus inline ones
# (CodeMirror adds <style> elements and y-codemirror.next style attributes, e.g. the colour of a collaborator's
# cursor: without 'unsafe-inline' Chromium blocks both), the data: favicon, fetches and the sync socket to its
# own origin, its service worker. No frames, no plugins, no <base>.
WEB_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src {connect}; worker-src 'self'; manifest-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Everything else the server answers (JSON, SSE, metrics) is no page at all.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc start with an inline script: they are only kept out of frames.
DOCS_CSP = "frame-ancestors 'none'"
DOCS_PREFIXES = ("docs", "redoc")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Invite links carry their token in the path: never send it anywhere as a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def web_csp(scope: Scope) -> str:
    """The web client's CSP. 'self' covers the sync socket's ws(s): origin in current browsers (CSP 3); the
    exact socket origin is named too, for browsers that do not, when the Host header is a plain host[:port]."""
    connect = "'self'"
    host = Headers(scope=scope).get("host", "")
    if _HOST.fullmatch(host):
        connect += f" {'wss' if scope.get('scheme') in ('https', 'wss') else 'ws'}://{host.lower()}"
    return WEB_CSP.format(connect=connect)


class SecurityHeaders:
    """Adds the browser security headers to every HTTP response (sync sockets never reach this middleware).

    A response that sets its own ``Content-Security-Policy`` (the web client's pages) keeps it; /docs and
    /redoc get only ``frame-ancestors``; anything else the strict API policy.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = str(scope.get("path", "")).lstrip("/").split("/", 1)[0] in DOCS_PREFIXES

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else API_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)
