"""The Plait server serves the built client: SPA fallback for deep links, cached assets, API 404s stay JSON."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from api.routes.web import mount_web
from tests.support.server import ThreadServer, free_port


def test_deep_links_get_the_app_and_assets_are_cached(live_server: ThreadServer, web_dist: Path) -> None:
    with httpx.Client(base_url=live_server.base_url) as c:
        index = c.get("/")
        assert index.status_code == 200
        assert '<div id="root">' in index.text
        assert index.headers["cache-control"] == "no-cache"
        for path in ["/invite/abc123", "/w/8a1c2f9e-0000-4000-8000-000000000000", "/signin", "/w/x/t/y"]:
            r = c.get(path)
            assert r.status_code == 200 and '<div id="root">' in r.text, path
        asset = next((web_dist / "assets").glob("*.js")).name
        r = c.get(f"/assets/{asset}")
        assert r.status_code == 200
        assert "immutable" in r.headers["cache-control"]
        assert c.get("/assets/missing-file.js").status_code == 404
        r = c.get("/api/no-such-route")
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/docs").status_code == 200
        assert c.get("/../../etc/passwd").status_code in (200, 404)
        assert "root:" not in c.get("/assets/..%2f..%2f..%2fetc%2fpasswd").text


def test_missing_build_serves_instructions_and_later_routes_still_win(tmp_path: Path) -> None:
    """mount_web uses the router's fallback, so routes registered after it are not shadowed."""
    app = FastAPI()
    mount_web(app, tmp_path / "dist")

    @app.get("/api/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            r = c.get("/")
            assert r.status_code == 200
            assert "npm ci --prefix web &amp;&amp; npm run build --prefix web" in r.text
            assert c.get("/invite/abc").status_code == 200
            assert c.get("/api/ping").json() == {"ok": True}
            assert c.get("/api/nope").status_code == 404
            assert c.post("/somewhere").status_code == 404
    finally:
        server.should_exit = True
        thread.join(10)


def test_api_docs_render_on_an_air_gapped_host(anonymous: Any, live_server: ThreadServer) -> None:
    """/docs (Swagger UI) and /redoc load every script from this server: with every other host unreachable
    they still render the API's operations."""
    page = anonymous()
    elsewhere: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(live_server.base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(live_server.base_url + "/docs")
    page.locator(".opblock-summary-path", has_text="/api/auth/login").first.wait_for()
    page.goto(live_server.base_url + "/redoc")
    page.get_by_text("/api/auth/login").first.wait_for(state="attached")
    # ReDoc's bundle shows Redocly's logo from their CDN and hides it when that fails: decoration, nothing else.
    decoration = ["https://cdn.redoc.ly/redoc/logo-mini.svg"]
    assert [url for url in elsewhere if url not in decoration] == [], f"the docs asked other hosts: {elsewhere}"
