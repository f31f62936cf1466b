"""Two nodes (PostgreSQL + Redis): a session ended on one node closes its sync socket (4401) and its
notification stream on the other node; so does deleting a personal access token."""

from __future__ import annotations

import httpx
import pytest

from tests.support.pyclient import YClient, sync_url
from tests.support.sse import SseReader
from tests.support.users import create_workspace, register
from tests.test_multinode import Cluster, cluster  # noqa: F401 (the two-node fixture)

pytestmark = pytest.mark.redis


async def test_an_ended_session_closes_on_the_other_node(cluster: Cluster) -> None:  # noqa: F811
    with httpx.Client(base_url=cluster.a.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        r = http.post("/api/auth/login", json={"email": owner.email, "password": owner.password})
        session = r.json()
        r = http.post("/api/me/tokens", json={"name": "bot", "scopes": ["write"]}, headers=owner.headers)
        pat = r.json()
    on_b = YClient()
    await on_b.connect(sync_url(cluster.b.ws_url, wid, session["access_token"]))
    await on_b.wait_synced()
    bot_on_b = YClient()
    await bot_on_b.connect(sync_url(cluster.b.ws_url, wid, pat["token"]))
    await bot_on_b.wait_synced()
    kept_on_b = YClient()  # the account's other session
    await kept_on_b.connect(sync_url(cluster.b.ws_url, wid, owner.token))
    await kept_on_b.wait_synced()
    url = f"{cluster.b.base_url}/api/notifications/stream?token={session['access_token']}"
    with SseReader(url) as sse, httpx.Client(base_url=cluster.a.base_url) as http:
        assert sse.wait_open() == 200
        r = http.post("/api/auth/logout", headers={"Authorization": f"Bearer {session['access_token']}"})
        assert r.status_code == 204, r.text
        assert await on_b.wait_closed() == 4401
        sse._thread.join(timeout=10)
        assert not sse._thread.is_alive(), "the ended session's stream on the other node is still open"
        assert http.delete(f"/api/me/tokens/{pat['id']}", headers=owner.headers).status_code == 204
        assert await bot_on_b.wait_closed() == 4401
    assert kept_on_b.connected
    await kept_on_b.close()
