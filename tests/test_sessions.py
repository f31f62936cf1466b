"""Sessions that can end: refresh-token rotation and reuse, logout, log out everywhere, password change, and the
open sync sockets and notification streams of an ended session (closed 4401 / ended at once)."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from tests.support.pyclient import YClient, sync_url
from tests.support.server import SECRET, ThreadServer
from tests.support.sse import SseReader
from tests.support.users import Account, register, workspace_with


def login(client: httpx.Client, acct: Account) -> dict[str, str]:
    r = client.post("/api/auth/login", json={"email": acct.email, "password": acct.password})
    assert r.status_code == 200, r.text
    body: dict[str, str] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def joined(server: ThreadServer, wid: str, token: str) -> YClient:
    c = YClient()
    await c.connect(sync_url(server.ws_url, wid, token))
    await c.wait_synced()
    return c


def test_login_keeps_its_fields_and_adds_a_refresh_token(client: httpx.Client, server: ThreadServer) -> None:
    acct = register(client, "pair")
    body = login(client, acct)
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == server.settings.access_token_ttl_seconds
    assert body["refresh_token"].startswith("plait_rt_")
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == acct.id and claims["sid"]


def test_refresh_rotates_and_reuse_ends_the_whole_session(client: httpx.Client) -> None:
    acct = register(client, "rotate")
    first = login(client, acct)
    r = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/me", headers=bearer(second["access_token"])).status_code == 200
    # the used token comes back (a stolen copy): the session and every token of it end
    r = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    assert client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
    for token in (first["access_token"], second["access_token"]):
        assert client.get("/api/me", headers=bearer(token)).status_code == 401
    # other sessions of the account are not affected
    assert client.get("/api/me", headers=acct.headers).status_code == 200


@pytest.mark.parametrize("value", ["", "plait_rt_unknown", "x" * 201])
def test_unknown_or_malformed_refresh_tokens_are_refused(client: httpx.Client, value: str) -> None:
    r = client.post("/api/auth/refresh", json={"refresh_token": value})
    assert r.status_code in (401, 422)
    assert "detail" in r.json()


def test_tokens_without_a_session_are_refused(client: httpx.Client) -> None:
    """A correctly signed token from before sessions (no ``sid``) cannot be revoked, so it is not accepted."""
    acct = register(client, "legacy")
    now = int(time.time())
    old = jwt.encode({"sub": acct.id, "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")
    assert client.get("/api/me", headers=bearer(old)).status_code == 401


async def test_logout_ends_this_session_its_socket_and_its_stream(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    mine = login(client, owner)
    sock = await joined(server, wid, mine["access_token"])
    other = await joined(server, wid, owner.token)  # another session of the same account
    with SseReader(f"{server.base_url}/api/notifications/stream?token={mine['access_token']}") as sse:
        assert sse.wait_open() == 200
        r = client.post("/api/auth/logout", headers=bearer(mine["access_token"]))
        assert r.status_code == 204, r.text
        assert await sock.wait_closed() == 4401
        sse._thread.join(timeout=10)
        assert not sse._thread.is_alive(), "the notification stream of the ended session is still open"
    assert other.connected
    assert client.get("/api/me", headers=bearer(mine["access_token"])).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": mine["refresh_token"]}).status_code == 401
    # a new socket with the ended session's token is refused too
    again = YClient()
    await again.connect(sync_url(server.ws_url, wid, mine["access_token"]))
    assert await again.wait_closed() == 4401
    await other.close()


async def test_logout_everywhere_ends_every_session(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    a, b = login(client, owner), login(client, owner)
    sa = await joined(server, wid, a["access_token"])
    sb = await joined(server, wid, b["access_token"])
    assert client.post("/api/auth/logout-all", headers=bearer(a["access_token"])).status_code == 204
    assert await sa.wait_closed() == 4401
    assert await sb.wait_closed() == 4401
    for pair in (a, b):
        assert client.get("/api/me", headers=bearer(pair["access_token"])).status_code == 401
        assert client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401


async def test_password_change_ends_every_other_session(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    here, elsewhere = login(client, owner), login(client, owner)
    stays = await joined(server, wid, here["access_token"])
    goes = await joined(server, wid, elsewhere["access_token"])
    r = client.post(
        "/api/me/password",
        json={"current_password": "wrong password", "new_password": "a new secret 1"},
        headers=bearer(here["access_token"]),
    )
    assert r.status_code == 403 and r.json() == {"detail": "Current password is wrong"}
    r = client.post(
        "/api/me/password",
        json={"current_password": owner.password, "new_password": "a new secret 1"},
        headers=bearer(here["access_token"]),
    )
    assert r.status_code == 204, r.text
    assert await goes.wait_closed() == 4401
    assert stays.connected
    assert client.get("/api/me", headers=bearer(here["access_token"])).status_code == 200
    assert client.get("/api/me", headers=bearer(elsewhere["access_token"])).status_code == 401
    old = client.post("/api/auth/login", json={"email": owner.email, "password": owner.password})
    assert old.status_code == 401
    new = client.post("/api/auth/login", json={"email": owner.email, "password": "a new secret 1"})
    assert new.status_code == 200
    await stays.close()


def test_profile_update(client: httpx.Client) -> None:
    acct = register(client, "renamed")
    r = client.patch("/api/me", json={"display_name": "  New Name "}, headers=acct.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": acct.id, "email": acct.email, "display_name": "New Name"}
    assert client.get("/api/me", headers=acct.headers).json()["display_name"] == "New Name"
    assert client.patch("/api/me", json={"display_name": ""}, headers=acct.headers).status_code == 422
    assert client.patch("/api/me", json={"email": "x@example.com"}, headers=acct.headers).status_code == 422


@pytest.mark.db_agnostic
def test_wrong_current_passwords_are_throttled_like_logins(make_server: object) -> None:
    srv = make_server(login_max_failures_per_account_address=2)  # type: ignore[operator]
    with httpx.Client(base_url=srv.base_url) as c:
        acct = register(c, "throttled")
        body = {"current_password": "nope nope", "new_password": "whatever 12"}
        codes = [c.post("/api/me/password", json=body, headers=acct.headers).status_code for _ in range(3)]
    assert codes == [403, 403, 429]
