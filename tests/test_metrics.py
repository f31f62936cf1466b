"""/metrics in Prometheus format, with the sync layer's counters."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Map, Text

from tests.support.node import wait_until
from tests.support.pyclient import YClient, async_wait_until, sync_url
from tests.support.server import ThreadServer
from tests.support.users import register, workspace_with

pytestmark = pytest.mark.db_agnostic  # what the counters count does not depend on the backend


def test_metrics_exposes_sync_counters_to_loopback(server: ThreadServer, client: httpx.Client) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    for name in (
        "plait_connections",
        "plait_rooms_loaded",
        "plait_commit_seconds",
        "plait_fanout_seconds",
        "plait_schema_repairs_total",
        "plait_socket_closes_total",
    ):
        assert name in r.text


def test_metrics_token_is_required_when_configured(make_server: object) -> None:
    srv = make_server(metrics_token="scrape-me")  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def _samples(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels (the registry is the process's: tests compare deltas)."""
    r = http.get("/metrics")
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _delta(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _once_moved(http: httpx.Client, before: dict[Any, float], name: str, **labels: str) -> Any:
    """A poll for wait_until: the samples once ``name`` has moved since ``before``, else None."""

    def poll() -> dict[Any, float] | None:
        now = _samples(http)
        return now if _delta(before, now, name, **labels) >= 1 else None

    return poll


async def test_an_update_moves_the_traffic_and_commit_metrics(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a, b = YClient(), YClient()
    await a.connect(sync_url(server.ws_url, wid, owner.token))
    await b.connect(sync_url(server.ws_url, wid, editor.token))
    await a.wait_synced()
    await b.wait_synced()
    await asyncio.sleep(0.2)  # let the joins' own frames settle before the baseline
    before = _samples(client)
    a.text("t").insert(0, "hello metrics")
    await b.wait_for(lambda: str(b.text("t")) == "hello metrics")
    after = await async_wait_until(_once_moved(client, before, "plait_fanout_seconds_count"))
    assert _delta(before, after, "plait_updates_in_total") == 1
    assert _delta(before, after, "plait_updates_out_total") == 1, "to b only: a wrote it"
    assert _delta(before, after, "plait_commit_batch_size_count") >= 1
    assert _delta(before, after, "plait_commit_seconds_count") >= 1
    assert _delta(before, after, "plait_bytes_in_total") >= len("hello metrics")
    assert _delta(before, after, "plait_bytes_out_total") >= len("hello metrics")
    await a.close()
    await b.close()


def test_notifications_sent_and_suppressed_are_counted(client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    r = client.put("/api/notifications/preferences", json={"task_completed": False}, headers=editor.headers)
    assert r.status_code == 200
    base = f"/api/workspaces/{wid}/tasks"
    before = _samples(client)
    tid = client.post(base, json={"title": "counted", "assignee_id": editor.id}, headers=owner.headers).json()["id"]
    wait_until(_once_moved(client, before, "plait_notifications_sent_total", type="task_assigned"))
    # done: the creator is the actor (never notified) and the assignee switched task_completed off
    assert client.patch(f"{base}/{tid}", json={"status": "done"}, headers=owner.headers).status_code == 200
    after = wait_until(_once_moved(client, before, "plait_notifications_suppressed_total", reason="preference"))
    assert _delta(before, after, "plait_notifications_suppressed_total", reason="preference") == 1
    assert _delta(before, after, "plait_notifications_sent_total", type="task_assigned") == 1
    assert _delta(before, after, "plait_notifications_sent_total", type="task_completed") == 0


async def test_a_notification_for_a_non_member_is_suppressed(server: ThreadServer, client: httpx.Client) -> None:
    """A live client may write any assignee; the derivation drops notifications to non-members (and the schema
    guard then clears the field)."""
    wid, owner, _ = workspace_with(client)
    outsider = register(client, "outsider")
    a = YClient()
    await a.connect(sync_url(server.ws_url, wid, owner.token))
    await a.wait_synced()
    before = _samples(client)
    tid = str(uuid.uuid4())
    a.tasks_map()[tid] = Map(
        {
            "id": tid,
            "title": "for an outsider",
            "description": Text(""),
            "status": "todo",
            "assignee_id": outsider.id,
            "due_date": None,
            "created_by": owner.id,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "completed_at": None,
        }
    )
    await a.wait_for(lambda: a.tasks_map()[tid].get("assignee_id") is None)  # repaired by the guard
    after = await async_wait_until(
        _once_moved(client, before, "plait_notifications_suppressed_total", reason="not_member")
    )
    assert _delta(before, after, "plait_notifications_sent_total", type="task_assigned") == 0
    assert client.get("/api/notifications", headers=outsider.headers).json()["items"] == []
    await a.close()
