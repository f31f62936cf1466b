"""Issue 21 follow-up: an unhandled error's 500 is JSON and carries the browser security headers every other
response has. Provoked for real: the server's SQLite database loses a table the login reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import httpx
import pytest

from tests.support.server import ThreadServer

API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _secured(r: httpx.Response) -> None:
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["content-security-policy"] == API_CSP


@pytest.mark.allow_errors(r"^unhandled error$")
def test_an_unhandled_500_is_json_with_the_security_headers(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite")
    login = {"email": "nobody@example.com", "password": "wrong password"}
    with httpx.Client(base_url=srv.base_url, timeout=60) as client:
        ordinary = client.post("/api/auth/login", json=login)
        assert ordinary.status_code == 401
        _secured(ordinary)
        db = sqlite3.connect(srv.settings.resolved_database_url().split("///", 1)[1], isolation_level=None)
        try:
            db.execute("ALTER TABLE login_failures RENAME TO login_failures_away")
            r = client.post("/api/auth/login", json=login)
            assert r.status_code == 500
            assert r.headers["content-type"].startswith("application/json")
            assert r.json() == {"detail": "Internal server error"}
            _secured(r)
        finally:
            db.execute("ALTER TABLE login_failures_away RENAME TO login_failures")
            db.close()
    # uvicorn closes the connection after an unhandled exception (the 500 is complete): a new one
    assert httpx.post(f"{srv.base_url}/api/auth/login", json=login, timeout=60).status_code == 401
