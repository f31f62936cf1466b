"""Instance administration on a real server, both databases: admins made only on the command line, the admin
routes' authorization (the instance-admin column of the matrix, token scopes), users and workspaces lists with
cursors and search, disabling an account (its live socket and stream close with 4401, it cannot sign in, refresh
or use a token; enabling lets it back in), and the instance statistics."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from api.cli import admin_command
from tests.support.admins import grant_admin, plait_admin
from tests.support.pyclient import YClient, async_wait_until, sync_url
from tests.support.server import ThreadServer
from tests.support.sse import SseReader
from tests.support.users import Account, add_member, create_workspace, register


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def root(server: ThreadServer) -> Iterator[Account]:
    """An instance admin of the session's server (one per backend)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        acct = register(c, "root")
    grant_admin(server.settings, acct.email)
    yield acct


def login(client: httpx.Client, acct: Account) -> dict[str, str]:
    r = client.post("/api/auth/login", json={"email": acct.email, "password": acct.password})
    assert r.status_code == 200, r.text
    body: dict[str, str] = r.json()
    return body


ADMIN_ROUTES = [
    ("GET", "/api/admin/users", 200),
    ("GET", "/api/admin/workspaces", 200),
    ("GET", "/api/admin/stats", 200),
    ("GET", "/api/admin/audit", 200),
    ("POST", "/api/admin/users/{target}/disable", 200),
    ("POST", "/api/admin/users/{target}/enable", 200),
]


@pytest.mark.db_agnostic
def test_the_first_account_is_not_an_admin_until_granted_on_the_command_line(
    make_server: Callable[..., ThreadServer], capsys: pytest.CaptureFixture[str]
) -> None:
    srv = make_server()
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        first = register(c, "first")  # the first account of a fresh instance
        r = c.get("/api/admin/stats", headers=first.headers)
        assert r.status_code == 403 and r.json() == {"detail": "Only instance administrators may do this"}
        assert c.get("/api/admin/stats").status_code == 401
        done = plait_admin(srv.settings, "grant", first.email.upper())  # the command; emails compare in lower case
        assert done.returncode == 0, done.stderr
        assert "is now an instance administrator" in done.stdout
        assert c.get("/api/admin/stats", headers=first.headers).status_code == 200  # no new sign-in needed
        # the rest through the command's function in this process (starting Python again costs seconds)
        capsys.readouterr()
        assert admin_command(srv.settings, "list", None) == 0
        assert capsys.readouterr().out.split() == [first.email]
        assert admin_command(srv.settings, "grant", "nobody@example.com") == 1
        assert "no account with the email nobody@example.com" in capsys.readouterr().err
        assert admin_command(srv.settings, "revoke", first.email) == 0
        assert c.get("/api/admin/stats", headers=first.headers).status_code == 403
        capsys.readouterr()
        assert admin_command(srv.settings, "list", None) == 0
        assert capsys.readouterr().out == ""


@pytest.mark.db_agnostic
def test_instance_admin_column_of_the_matrix_and_token_scopes(
    client: httpx.Client, root: Account, server: ThreadServer
) -> None:
    """The matrix (tests/test_authz_matrix.py) gives every workspace role 403 and anonymous 401 on /api/admin;
    here the instance admin gets through, on a session and on an admin-scoped token only."""
    target = register(client, "target")
    for method, path, expected in ADMIN_ROUTES:
        r = client.request(method, path.format(target=target.id), headers=root.headers)
        assert r.status_code == expected, (method, path, r.text)
    tokens = {
        scope: client.post("/api/me/tokens", json={"name": scope, "scopes": [scope]}, headers=root.headers).json()[
            "token"
        ]
        for scope in ("read", "write", "admin")
    }
    for scope in ("read", "write"):
        r = client.get("/api/admin/users", headers=bearer(tokens[scope]))
        assert r.status_code == 403 and "admin" in r.json()["detail"], r.text
    assert client.get("/api/admin/users", headers=bearer(tokens["admin"])).status_code == 200
    r = client.post(f"/api/admin/users/{target.id}/disable", headers=bearer(tokens["admin"]))
    assert r.status_code == 200 and r.json()["disabled_at"]
    assert client.post(f"/api/admin/users/{target.id}/enable", headers=bearer(tokens["admin"])).status_code == 200
    # an admin cannot disable themselves; an unknown or malformed id is 404
    r = client.post(f"/api/admin/users/{root.id}/disable", headers=root.headers)
    assert r.status_code == 409 and "own account" in r.json()["detail"]
    for bad in ("00000000-0000-0000-0000-000000000000", "not-an-id"):
        assert client.post(f"/api/admin/users/{bad}/disable", headers=root.headers).status_code == 404


def test_users_are_listed_by_email_searched_and_paged(client: httpx.Client, root: Account) -> None:
    tag = f"zq{root.id[:6]}"
    made = [register(client, f"{tag}-{i}") for i in range(5)]
    seen: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"q": tag.upper(), "limit": 2}  # case-insensitive, display name
        if cursor:
            params["cursor"] = cursor
        r = client.get("/api/admin/users", params=params, headers=root.headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [u["id"] for u in seen] == [a.id for a in sorted(made, key=lambda a: a.email)]
    assert seen[0]["is_admin"] is False and seen[0]["disabled_at"] is None and seen[0]["workspaces"] == 0
    # search by part of an email; LIKE wildcards in the query are taken literally
    r = client.get("/api/admin/users", params={"q": made[2].email[:-12]}, headers=root.headers)
    assert [u["id"] for u in r.json()["items"]] == [made[2].id]
    assert client.get("/api/admin/users", params={"q": "%"}, headers=root.headers).json()["items"] == []
    me = client.get("/api/admin/users", params={"q": root.email}, headers=root.headers).json()["items"]
    assert me[0]["is_admin"] is True
    for bad in ("garbage!", "W10", "x" * 2000):
        r = client.get("/api/admin/users", params={"cursor": bad}, headers=root.headers)
        assert r.status_code == 422 and "detail" in r.json(), (bad, r.text)


async def test_disabling_closes_the_live_socket_and_stream_and_locks_the_account_out(
    server: ThreadServer, client: httpx.Client, root: Account
) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    victim = register(client, "victim")
    add_member(client, wid, owner, victim, "editor")
    pair = login(client, victim)
    pat = client.post("/api/me/tokens", json={"name": "bot", "scopes": ["write"]}, headers=victim.headers).json()
    sock = YClient()
    await sock.connect(sync_url(server.ws_url, wid, victim.token))
    await sock.wait_synced()
    bot = YClient()
    await bot.connect(sync_url(server.ws_url, wid, pat["token"]))
    await bot.wait_synced()
    bystander = YClient()  # the owner's socket in the same room stays
    await bystander.connect(sync_url(server.ws_url, wid, owner.token))
    await bystander.wait_synced()
    with SseReader(f"{server.base_url}/api/notifications/stream?token={pair['access_token']}") as sse:
        assert sse.wait_open() == 200
        r = client.post(f"/api/admin/users/{victim.id}/disable", headers=root.headers)
        assert r.status_code == 200, r.text
        assert r.json()["disabled_at"] and r.json()["workspaces"] == 1
        assert await sock.wait_closed() == 4401
        assert await bot.wait_closed() == 4401
        sse._thread.join(timeout=10)
        assert not sse._thread.is_alive(), "the disabled account's notification stream is still open"
    assert bystander.connected
    for token in (victim.token, pair["access_token"], pat["token"]):
        assert client.get("/api/me", headers=bearer(token)).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    r = client.post("/api/auth/login", json={"email": victim.email, "password": victim.password})
    assert r.status_code == 403 and "disabled" in r.json()["detail"]
    wrong = client.post("/api/auth/login", json={"email": victim.email, "password": "not the password"})
    assert wrong.status_code == 401  # a wrong password does not learn that the account is disabled
    again = YClient()
    await again.connect(sync_url(server.ws_url, wid, pat["token"]))
    assert await again.wait_closed() == 4401
    listed = client.get("/api/admin/users", params={"q": victim.email, "disabled": True}, headers=root.headers)
    assert [u["id"] for u in listed.json()["items"]] == [victim.id]
    # enabled again: signs in; the ended sessions stay ended
    assert client.post(f"/api/admin/users/{victim.id}/enable", headers=root.headers).json()["disabled_at"] is None
    assert client.get("/api/me", headers=bearer(pair["access_token"])).status_code == 401
    back = login(client, victim)
    assert client.get("/api/me", headers=bearer(back["access_token"])).status_code == 200
    await bystander.close()


async def test_workspaces_list_and_statistics(server: ThreadServer, client: httpx.Client, root: Account) -> None:
    before = client.get("/api/admin/stats", headers=root.headers).json()
    owner = register(client, "owner")
    tag = f"adm-{owner.id[:8]}"
    busy = create_workspace(client, owner, f"{tag} b busy")
    idle = create_workspace(client, owner, f"{tag} a idle")
    for role in ("editor", "viewer"):
        add_member(client, busy, owner, register(client, role), role)
    sock = YClient()
    await sock.connect(sync_url(server.ws_url, busy, owner.token))
    await sock.wait_synced()
    for i in range(3):
        r = client.post(f"/api/workspaces/{busy}/tasks", json={"title": f"t{i}"}, headers=owner.headers)
        assert r.status_code == 201, r.text
    r = client.get("/api/admin/workspaces", params={"q": tag, "limit": 1}, headers=root.headers)
    assert r.status_code == 200, r.text
    first = r.json()
    assert [w["id"] for w in first["items"]] == [idle] and first["next_cursor"]
    r = client.get("/api/admin/workspaces", params={"q": tag, "cursor": first["next_cursor"]}, headers=root.headers)
    second = r.json()
    assert [w["id"] for w in second["items"]] == [busy] and second["next_cursor"] is None
    idle_row, busy_row = first["items"][0], second["items"][0]
    assert (idle_row["members"], busy_row["members"]) == (1, 3)
    assert idle_row["document_bytes"] == 0 < busy_row["document_bytes"]
    assert busy_row["last_activity_at"] > idle_row["created_at"]

    def stats() -> dict[str, object]:
        r = client.get("/api/admin/stats", headers=root.headers)
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    now = stats()
    assert int(now["users"]) >= int(before["users"]) + 3  # type: ignore[call-overload]
    assert int(now["workspaces"]) >= int(before["workspaces"]) + 2  # type: ignore[call-overload]
    assert int(now["admins"]) >= 1 and "disabled_users" in now  # type: ignore[call-overload]
    node = now["node"]
    assert isinstance(node, dict)
    assert node["connected_sockets"] >= 1 and node["loaded_documents"] >= 1
    assert node["updates_last_minute"] >= 3  # the three REST writes (and whatever else ran in the last minute)
    await sock.close()
    await async_wait_until(lambda: stats()["node"]["connected_sockets"] < node["connected_sockets"])  # type: ignore[index]
