"""The built web client (web/dist) at ``/``, with SPA fallback so deep links like /invite/{token} load the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from api.security_headers import SecurityHeaders, web_csp

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
