"""The account's session list (issue 25): ``GET /api/me/sessions`` shows the caller's live sessions, newest first,
marking the calling one; ``DELETE /api/me/sessions/{id}`` ends one of them like a logout does (its tokens stop
working, its sockets close 4401), and never reveals or touches another account's sessions. ``GET /api/me`` says
whether the caller is an instance administrator."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest

from tests.support.admins import grant_admin
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.sse import SseReader
from tests.support.users import Account, create_workspace, register, workspace_with
from tests.test_multinode import Cluster, cluster  # noqa: F401 (the two-node fixture)


def login(client: httpx.Client, acct: Account, agent: str = "test-agent") -> dict[str, str]:
    r = client.post(
        "/api/auth/login", json={"email": acct.email, "password": acct.password}, headers={"User-Agent": agent}
    )
    assert r.status_code == 200, r.text
    body: dict[str, str] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def listed(client: httpx.Client, token: str) -> list[dict[str, object]]:
    r = client.get("/api/me/sessions", headers=bearer(token))
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()
    return items


def test_lists_live_sessions_newest_first_and_marks_the_current_one(client: httpx.Client) -> None:
    acct = register(client, "lister")  # its registration helper's login is the oldest session
    phone = login(client, acct, "Phone browser/1.0")
    laptop = login(client, acct, "Laptop browser/2.0")
    gone = login(client, acct, "Gone browser/3.0")
    assert client.post("/api/auth/logout", headers=bearer(gone["access_token"])).status_code == 204

    items = listed(client, phone["access_token"])
    assert [s["user_agent"] for s in items[:2]] == ["Laptop browser/2.0", "Phone browser/1.0"]
    assert len(items) == 3  # the logged-out one is not live
    assert [s["current"] for s in items] == [False, True, False]
    assert set(items[0]) == {
        "id", "created_at", "last_refreshed_at", "last_active_at", "expires_at", "user_agent", "current"
    }  # fmt: skip
    created = [datetime.fromisoformat(str(s["created_at"])) for s in items]
    assert created == sorted(created, reverse=True)
    for s in items:
        assert datetime.fromisoformat(str(s["expires_at"])) > datetime.fromisoformat(str(s["last_refreshed_at"]))

    # refreshing moves last_refreshed_at, and the refreshed access token is still the same (current) session
    r = client.post("/api/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert r.status_code == 200, r.text
    again = listed(client, r.json()["access_token"])
    assert [s["current"] for s in again] == [True, False, False]
    assert again[0]["last_refreshed_at"] != items[0]["last_refreshed_at"]
    assert again[0]["id"] == items[0]["id"]

    # another account sees only its own
    other = register(client, "other")
    assert [s["current"] for s in listed(client, other.token)] == [True]


async def test_signing_out_another_session_closes_its_socket(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    here, there = login(client, owner, "here"), login(client, owner, "there")
    stays = YClient()
    await stays.connect(sync_url(server.ws_url, wid, here["access_token"]))
    await stays.wait_synced()
    goes = YClient()
    await goes.connect(sync_url(server.ws_url, wid, there["access_token"]))
    await goes.wait_synced()

    target = next(s for s in listed(client, here["access_token"]) if s["user_agent"] == "there")
    with SseReader(f"{server.base_url}/api/notifications/stream?token={there['access_token']}") as sse:
        assert sse.wait_open() == 200
        r = client.delete(f"/api/me/sessions/{target['id']}", headers=bearer(here["access_token"]))
        assert r.status_code == 204, r.text
        assert await goes.wait_closed() == 4401
        sse._thread.join(timeout=10)
        assert not sse._thread.is_alive(), "the signed-out session's notification stream is still open"
    assert stays.connected
    assert client.get("/api/me", headers=bearer(there["access_token"])).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": there["refresh_token"]}).status_code == 401
    assert target["id"] not in [s["id"] for s in listed(client, here["access_token"])]
    # gone is gone: a second sign-out of it is a 404
    again = client.delete(f"/api/me/sessions/{target['id']}", headers=bearer(here["access_token"]))
    assert again.status_code == 404
    await stays.close()


def test_signing_out_the_current_session_is_a_logout(client: httpx.Client) -> None:
    acct = register(client, "self")
    pair = login(client, acct)
    mine = next(s for s in listed(client, pair["access_token"]) if s["current"])
    assert client.delete(f"/api/me/sessions/{mine['id']}", headers=bearer(pair["access_token"])).status_code == 204
    assert client.get("/api/me", headers=bearer(pair["access_token"])).status_code == 401
    assert client.get("/api/me", headers=acct.headers).status_code == 200  # the account's other session lives


@pytest.mark.db_agnostic
def test_another_accounts_session_is_a_404_and_stays(client: httpx.Client) -> None:
    ann, bob = register(client, "ann"), register(client, "bob")
    bobs = listed(client, bob.token)[0]["id"]
    for sid in (bobs, str(uuid.uuid4()), "not-a-uuid"):
        r = client.delete(f"/api/me/sessions/{sid}", headers=ann.headers)
        assert r.status_code == 404, r.text
        assert r.json() == {"detail": "Session not found"}
    assert client.get("/api/me", headers=bob.headers).status_code == 200


@pytest.mark.db_agnostic
def test_personal_access_tokens_cannot_list_or_end_sessions(client: httpx.Client) -> None:
    acct = register(client, "pat")
    r = client.post("/api/me/tokens", json={"name": "script", "scopes": ["admin"]}, headers=acct.headers)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    sid = listed(client, acct.token)[0]["id"]
    assert client.get("/api/me/sessions", headers=bearer(token)).status_code == 403
    assert client.delete(f"/api/me/sessions/{sid}", headers=bearer(token)).status_code == 403
    assert client.get("/api/me", headers=acct.headers).status_code == 200


@pytest.mark.db_agnostic
def test_me_says_whether_the_caller_is_an_instance_admin(client: httpx.Client, server: ThreadServer) -> None:
    plain, boss = register(client, "plain"), register(client, "boss")
    assert client.get("/api/me", headers=plain.headers).json()["is_admin"] is False
    grant_admin(server.settings, boss.email)
    me = client.get("/api/me", headers=boss.headers).json()
    assert me == {"id": boss.id, "email": boss.email, "display_name": "boss", "is_admin": True}


@pytest.mark.redis
async def test_signing_out_a_session_closes_its_socket_on_the_other_node(cluster: Cluster) -> None:  # noqa: F811
    with httpx.Client(base_url=cluster.a.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        there = login(http, owner, "there")
    on_b = YClient()
    await on_b.connect(sync_url(cluster.b.ws_url, wid, there["access_token"]))
    await on_b.wait_synced()
    kept_on_b = YClient()  # the account's other session
    await kept_on_b.connect(sync_url(cluster.b.ws_url, wid, owner.token))
    await kept_on_b.wait_synced()
    with httpx.Client(base_url=cluster.a.base_url) as http:
        target = next(s for s in listed(http, owner.token) if not s["current"])
        assert http.delete(f"/api/me/sessions/{target['id']}", headers=owner.headers).status_code == 204
    assert await on_b.wait_closed() == 4401
    assert kept_on_b.connected
    await kept_on_b.close()
