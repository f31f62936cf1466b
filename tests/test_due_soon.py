"""``due_soon`` (issue 23): the assignee of a task not done, once, PLAIT_DUE_SOON_HOURS before its due date —
on one node with both databases, and on two nodes sharing PostgreSQL and Redis, across a restart of both."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from persistence.migrate import upgrade
from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.node import wait_until
from tests.support.redisproc import RedisProcess
from tests.support.server import ProcessServer, ThreadServer, free_port, node_env, start_all
from tests.support.users import Account, add_member, create_workspace, register

SCAN = 0.2  # PLAIT_DUE_SOON_SCAN_SECONDS


def _today(days: int = 0) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


def _due_soon(http: httpx.Client, acct: Account) -> list[dict[str, Any]]:
    r = http.get("/api/notifications", params={"limit": 200}, headers=acct.headers)
    assert r.status_code == 200, r.text
    return [n for n in r.json()["items"] if n["type"] == "due_soon"]


def _task(http: httpx.Client, wid: str, owner: Account, **fields: Any) -> str:
    r = http.post(f"/api/workspaces/{wid}/tasks", json={"title": uuid.uuid4().hex[:8], **fields}, headers=owner.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_assignee_hears_once_only_for_tasks_due_soon(
    backend: str, make_server: Callable[..., ThreadServer]
) -> None:
    # 48 h: due today and tomorrow are both "soon"; in three days is not
    srv = make_server(backend, due_soon_scan_seconds=SCAN, search_index_debounce_ms=100, due_soon_hours=48)
    with httpx.Client(base_url=srv.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        editor, muted = register(http, "editor"), register(http, "muted")
        add_member(http, wid, owner, editor, "editor")
        add_member(http, wid, owner, muted, "editor")
        r = http.put("/api/notifications/preferences", json={"due_soon": False}, headers=muted.headers)
        assert r.status_code == 200 and r.json()["due_soon"] is False
        # none of these: due later than 48 h, done, overdue, muted, unassigned, no due date
        _task(http, wid, owner, assignee_id=editor.id, due_date=_today(3))
        _task(http, wid, owner, assignee_id=editor.id, due_date=_today(), status="done")
        _task(http, wid, owner, assignee_id=editor.id, due_date=_today(-1))
        _task(http, wid, owner, assignee_id=muted.id, due_date=_today())
        _task(http, wid, owner, due_date=_today())
        _task(http, wid, owner, assignee_id=editor.id)
        # created last: once its notification is there, a scan has seen every task above
        due = _task(http, wid, owner, assignee_id=editor.id, due_date=_today())
        notes = wait_until(lambda: _due_soon(http, editor), 10, message="due_soon for the editor")
        assert [(n["task_id"], n["workspace_id"], n["data"]["due_date"]) for n in notes] == [(due, wid, _today())]
        assert notes[0]["actor"] is None and notes[0]["data"]["title"]
        assert _due_soon(http, muted) == [] and _due_soon(http, owner) == []
        # a new due date is announced again; the same one never twice (a later task proves later scans ran)
        r = http.patch(f"/api/workspaces/{wid}/tasks/{due}", json={"due_date": _today(1)}, headers=owner.headers)
        assert r.status_code == 200, r.text
        wait_until(lambda: len(_due_soon(http, editor)) == 2, 10, message="due_soon for the new date")
        barrier = _task(http, wid, owner, assignee_id=editor.id, due_date=_today())
        wait_until(lambda: barrier in {n["task_id"] for n in _due_soon(http, editor)}, 10, message="barrier")
        assert sorted(n["data"]["due_date"] for n in _due_soon(http, editor) if n["task_id"] == due) == [
            _today(),
            _today(1),
        ]


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    url = fresh_database("postgres", tmp_path)
    upgrade(url)
    rds = RedisProcess(free_port()).start()
    env = node_env(url, rds.url, tmp_path, PLAIT_DUE_SOON_SCAN_SECONDS=str(SCAN), PLAIT_SEARCH_INDEX_DEBOUNCE_MS="100")
    try:
        yield env
    finally:
        rds.stop()
        drop_postgres_database(url)


@pytest.mark.redis
@pytest.mark.slow
def test_due_soon_fires_once_across_two_nodes_and_after_a_restart(cluster_env: dict[str, str], tmp_path: Path) -> None:
    def start() -> tuple[ProcessServer, ProcessServer]:
        a = ProcessServer({**cluster_env, "PLAIT_NODE_ID": "node-a"}, log_path=tmp_path / "a.log")
        b = ProcessServer({**cluster_env, "PLAIT_NODE_ID": "node-b"}, log_path=tmp_path / "b.log")
        start_all(a, b)
        return a, b

    a, b = start()
    try:
        with httpx.Client(base_url=a.base_url) as http_a, httpx.Client(base_url=b.base_url) as http_b:
            owner = register(http_a, "owner")
            wid = create_workspace(http_a, owner)
            editor = register(http_a, "editor")
            add_member(http_a, wid, owner, editor, "editor")
            first = _task(http_a, wid, owner, assignee_id=editor.id, due_date=_today())
            second = _task(http_b, wid, owner, assignee_id=editor.id, due_date=_today())
            wait_until(lambda: len(_due_soon(http_b, editor)) == 2, 15, message="both tasks announced")
            # later scans (on whichever node holds the lease) add nothing: a third task is the barrier
            third = _task(http_b, wid, owner, assignee_id=editor.id, due_date=_today())
            wait_until(lambda: len(_due_soon(http_a, editor)) >= 3, 15, message="third task announced")
            assert sorted(n["task_id"] for n in _due_soon(http_a, editor)) == sorted([first, second, third])
    finally:
        a.stop()
        b.stop()
    a, b = start()
    try:
        with httpx.Client(base_url=b.base_url) as http:
            fourth = _task(http, wid, owner, assignee_id=editor.id, due_date=_today())
            wait_until(lambda: len(_due_soon(http, editor)) >= 4, 15, message="fourth task announced")
            assert sorted(n["task_id"] for n in _due_soon(http, editor)) == sorted([first, second, third, fourth])
    finally:
        a.stop()
        b.stop()
