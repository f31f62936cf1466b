"""A background loop that dies turns /readyz red, naming the loop: a dead worker must not go unnoticed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import httpx
import pytest

from tests.support.server import ThreadServer
from tests.support.users import workspace_with


# the automatic-version worker loses the tables too
@pytest.mark.slow
@pytest.mark.allow_errors(r"^background loop notifications crashed", r"^automatic version of .* failed")
def test_a_crashed_derivation_loop_turns_readyz_red(make_server: Callable[..., ThreadServer]) -> None:
    """The notification worker waits ``derive_batch_ms`` after a commit before recording it. In that window
    the test takes away the tables it writes and reads (renamed under the running server, as a broken
    migration or a restore gone wrong would): recording fails, the report of that failure fails too, and
    the loop ends by an exception it does not survive."""
    srv = make_server("sqlite", derive_batch_ms=1500)
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        wid, owner, _ = workspace_with(http)
        r = http.post(f"/api/workspaces/{wid}/tasks", json={"title": "t"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        path = srv.settings.resolved_database_url().split("///", 1)[1]
        with sqlite3.connect(path, timeout=10) as db:
            db.execute("ALTER TABLE activity RENAME TO activity_gone")
            db.execute("ALTER TABLE workspaces RENAME TO workspaces_gone")
        try:
            deadline = time.monotonic() + 15
            while (ready := http.get("/readyz")).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert ready.status_code == 503, ready.text
            body = ready.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["loop notifications"].startswith("error: OperationalError"), body
        finally:
            with sqlite3.connect(path, timeout=10) as db:
                db.execute("ALTER TABLE activity_gone RENAME TO activity")
                db.execute("ALTER TABLE workspaces_gone RENAME TO workspaces")
