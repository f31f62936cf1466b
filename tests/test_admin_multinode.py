"""Two nodes (PostgreSQL + Redis): disabling an account on one node closes its sync socket (4401) and its
notification stream on the other at once; the other node refuses its tokens from then on."""

from __future__ import annotations

import httpx
import pytest

from tests.support.admins import grant_admin
from tests.support.pyclient import YClient, sync_url
from tests.support.sse import SseReader
from tests.support.users import add_member, create_workspace, register
from tests.test_multinode import Cluster, cluster  # noqa: F401 (the two-node fixture)

pytestmark = pytest.mark.redis


async def test_disabling_on_one_node_closes_the_socket_on_the_other(cluster: Cluster) -> None:  # noqa: F811
    with httpx.Client(base_url=cluster.a.base_url, timeout=30) as http:
        root, owner, victim = register(http, "root"), register(http, "owner"), register(http, "victim")
        wid = create_workspace(http, owner)
        add_member(http, wid, owner, victim, "editor")
    grant_admin(cluster.env, root.email)
    on_b = YClient()
    await on_b.connect(sync_url(cluster.b.ws_url, wid, victim.token))
    await on_b.wait_synced()
    owner_on_b = YClient()
    await owner_on_b.connect(sync_url(cluster.b.ws_url, wid, owner.token))
    await owner_on_b.wait_synced()
    url = f"{cluster.b.base_url}/api/notifications/stream?token={victim.token}"
    with SseReader(url) as sse, httpx.Client(base_url=cluster.a.base_url, timeout=30) as http:
        assert sse.wait_open() == 200
        r = http.post(f"/api/admin/users/{victim.id}/disable", headers=root.headers)
        assert r.status_code == 200, r.text
        assert await on_b.wait_closed() == 4401
        sse._thread.join(timeout=10)
        assert not sse._thread.is_alive(), "the disabled account's stream on the other node is still open"
    with httpx.Client(base_url=cluster.b.base_url, timeout=30) as http:
        assert http.get("/api/me", headers=victim.headers).status_code == 401
    assert owner_on_b.connected
    await owner_on_b.close()
