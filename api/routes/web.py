"""The built web client (web/dist) at ``/``, with SPA fallback so deep links like /invite/{token} load the app."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"

# Paths that belong to the server; an unknown one is a JSON 404, never the app's HTML.
RESERVED_PREFIXES = ("api", "sync", "docs", "redoc", "openapi.json", "healthz", "readyz", "metrics")

# Vite puts content-hashed files under assets/: a changed file gets a new name, so they can be cached for ever.
IMMUTABLE = "public, max-age=31536000, immutable"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Plait</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem">
<h1>Plait is running</h1>
<p>The web client has not been built yet. From the repository root, run:</p>
<pre style="background:#f1f3f5;padding:1rem">npm ci --prefix web &amp;&amp; npm run build --prefix web</pre>
<p>then reload this page. The REST API is documented at <a href="/docs">/docs</a>.</p>
</body></html>
"""


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
        docs = _reserved(str(scope.get("path", "")).lstrip("/"), DOCS_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else API_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _reserved(path: str, prefixes: tuple[str, ...] = RESERVED_PREFIXES) -> bool:
    first = path.split("/", 1)[0]
    return first in prefixes


def _response(root: Path, path: str, csp: str) -> Response:
    index = root / "index.html"
    if not index.is_file():
        return HTMLResponse(NOT_BUILT, headers={"Cache-Control": "no-cache", "Content-Security-Policy": csp})
    if path:
        candidate = (root / path).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            # Other files (sw.js, icons) keep their names across builds: revalidate them.
            cache = IMMUTABLE if path.startswith("assets/") else "no-cache"
            return FileResponse(candidate, headers={"Cache-Control": cache, "Content-Security-Policy": csp})
        if path.startswith("assets/"):
            return JSONResponse({"detail": "Not Found"}, status_code=404)
    return FileResponse(index, headers={"Cache-Control": "no-cache", "Content-Security-Policy": csp})


def mount_web(app: FastAPI, dist: Path | None = None) -> None:
    """Serve the client from the router's fallback, which runs only when no route matched.

    A catch-all route would shadow routes registered after it; the fallback cannot, whatever the order.
    ``dist`` is looked up per request, so building the client while the server runs needs no restart.
    Also installs the security headers on every HTTP response of the app (``SecurityHeaders``).
    """
    root = (dist or DEFAULT_DIST).resolve()
    not_found = app.router.default

    async def web_client(scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", "/")).lstrip("/")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or _reserved(path):
            await not_found(scope, receive, send)
            return
        await _response(root, path, web_csp(scope))(scope, receive, send)

    app.router.default = web_client
    app.add_middleware(SecurityHeaders)
