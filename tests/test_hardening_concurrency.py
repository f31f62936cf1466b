"""Issue 21 follow-up: what one account can do with many requests at once, through a real server.

- Count quotas hold exactly under parallel requests (114 workspaces were created against a cap of 100).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from tests.support.server import ThreadServer
from tests.support.users import Account, create_workspace, register

BACKENDS = ["sqlite", "postgres"]


# ---- count quotas under parallel requests ---------------------------------------------------------------


def _quota(r: httpx.Response, quota: str) -> None:
    assert r.status_code == 413, (r.status_code, r.text)
    assert r.headers["x-plait-quota"] == quota
    assert r.json()["detail"].startswith(f"Quota exceeded ({quota}): "), r.text


async def _parallel(
    srv: ThreadServer, requests: list[tuple[str, str, dict[str, object], Account]]
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(client.request(method, url, json=body, headers=acct.headers) for method, url, body, acct in requests)
            )
        )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_count_quotas_are_exact_under_parallel_requests(
    make_server: Callable[..., ThreadServer], backend: str
) -> None:
    """Workspaces per owner, named versions and members per workspace, webhooks per workspace: N parallel
    creations against a cap give exactly the cap, the rest are refused."""
    srv = make_server(
        backend,
        quota_max_workspaces_per_user=5,
        quota_max_named_versions=3,
        quota_max_members=4,
        webhook_allow_private=True,
    )
    with httpx.Client(base_url=srv.base_url, timeout=60) as http:
        owner = register(http, "owner")
        joiners = [register(http, f"j{i}") for i in range(10)]
        wid = create_workspace(http, owner)
        r = http.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        token = r.json()["token"]

    # workspaces: the owner has 1, 20 more at once against a cap of 5
    answers = await _parallel(srv, [("POST", "/api/workspaces", {"name": f"w{i}"}, owner) for i in range(20)])
    assert sorted(r.status_code for r in answers) == [201] * 4 + [413] * 16
    for r in answers:
        if r.status_code == 413:
            _quota(r, "workspaces")
    # named versions: 12 at once against a cap of 3
    url = f"/api/workspaces/{wid}/versions"
    answers = await _parallel(srv, [("POST", url, {"label": f"v{i}"}, owner) for i in range(12)])
    assert sorted(r.status_code for r in answers) == [201] * 3 + [413] * 9
    for r in answers:
        if r.status_code == 413:
            _quota(r, "versions")
    # members: the owner and 10 accepting at once against a cap of 4
    answers = await _parallel(srv, [("POST", f"/api/invites/{token}/accept", {}, j) for j in joiners])
    assert sorted(r.status_code for r in answers) == [200] * 3 + [413] * 7
    for r in answers:
        if r.status_code == 413:
            _quota(r, "members")
    # webhooks: 30 at once against the fixed 20
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["task.created"]}
    answers = await _parallel(srv, [("POST", f"/api/workspaces/{wid}/webhooks", hook, owner) for _ in range(30)])
    assert sorted(r.status_code for r in answers) == [201] * 20 + [409] * 10

    with httpx.Client(base_url=srv.base_url, timeout=60) as http:
        assert len(http.get("/api/workspaces", headers=owner.headers).json()) == 5
        assert len(http.get(url, headers=owner.headers).json()["items"]) == 3
        assert len(http.get(f"/api/workspaces/{wid}/members", headers=owner.headers).json()) == 4
        assert len(http.get(f"/api/workspaces/{wid}/webhooks", headers=owner.headers).json()) == 20
