"""/metrics in Prometheus format, with the sync layer's counters."""

from __future__ import annotations

import httpx

from tests.support.server import ThreadServer


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
