"""Invites through HTTP: create, list, revoke, accept; expiry, use limits under concurrency, re-accept."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.support.databases import fresh_database
from tests.support.pool import AccountPool
from tests.support.server import ThreadServer
from tests.support.server import test_settings as settings_for
from tests.support.sql import query
from tests.support.users import Account, add_member, create_workspace, register


@pytest.fixture(scope="module")
def users(server: ThreadServer) -> AccountPool:
    return AccountPool(server.base_url)


def invite(client: httpx.Client, wid: str, who: Account, **body: object) -> dict[str, object]:
    r = client.post(f"/api/workspaces/{wid}/invites", json={"role": "editor", **body}, headers=who.headers)
    assert r.status_code == 201, r.text
    data: dict[str, object] = r.json()
    return data


def accept(client: httpx.Client, token: object, who: Account) -> httpx.Response:
    return client.post(f"/api/invites/{token}/accept", headers=who.headers)


def test_create_invite_contract(client: httpx.Client, server: ThreadServer, users: AccountPool) -> None:
    owner = users("owner")
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner, role="viewer")
    assert set(inv) == {"id", "token", "url", "role", "expires_at", "max_uses", "uses"}
    assert inv["role"] == "viewer" and inv["uses"] == 0 and inv["max_uses"] is None
    token = str(inv["token"])
    assert len(token) >= 22  # >= 128 bits in URL-safe base64
    assert inv["url"] == f"{server.base_url}/invite/{token}"
    expires = datetime.fromisoformat(str(inv["expires_at"]))
    ttl = (expires - datetime.now(UTC)).total_seconds()
    assert abs(ttl - server.settings.invite_default_ttl_seconds) < 60
    # Only a hash is stored.
    url = server.settings.resolved_database_url()
    [(stored,)] = query(url, "SELECT token_hash FROM invites WHERE id = :i", i=inv["id"])
    assert stored != token and stored == hashlib.sha256(token.encode()).hexdigest()
    assert query(url, "SELECT count(*) FROM invites WHERE token_hash = :t", t=token) == [(0,)]


def test_tokens_are_unique(client: httpx.Client, users: AccountPool) -> None:
    owner = users("owner")
    wid = create_workspace(client, owner)
    tokens = {str(invite(client, wid, owner)["token"]) for _ in range(20)}
    assert len(tokens) == 20


@pytest.mark.parametrize(
    "body",
    [
        {"role": "owner"},
        {"role": "nobody"},
        {},
        {"role": "viewer", "expires_in_seconds": 0},
        {"role": "viewer", "max_uses": 0},
        {"role": "viewer", "max_uses": -1},
    ],
)
def test_invalid_invites_are_422(client: httpx.Client, users: AccountPool, body: dict[str, object]) -> None:
    owner = users("owner")
    wid = create_workspace(client, owner)
    r = client.post(f"/api/workspaces/{wid}/invites", json=body, headers=owner.headers)
    assert r.status_code == 422 and "detail" in r.json()


def test_accept_joins_with_the_invites_role(client: httpx.Client, users: AccountPool) -> None:
    owner, guest = users("owner"), users("guest")
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner, role="editor", max_uses=5)
    r = accept(client, inv["token"], guest)
    assert r.status_code == 200
    assert r.json() == {"workspace_id": wid, "role": "editor"}
    assert client.get(f"/api/workspaces/{wid}", headers=guest.headers).json()["role"] == "editor"
    listed = client.get(f"/api/workspaces/{wid}/invites", headers=owner.headers).json()
    [row] = [i for i in listed if i["id"] == inv["id"]]
    assert row["uses"] == 1 and row["max_uses"] == 5 and row["expired"] is False
    assert "token" not in row


def test_accept_needs_a_signed_in_user(client: httpx.Client, users: AccountPool) -> None:
    owner = users("owner")
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner)
    assert client.post(f"/api/invites/{inv['token']}/accept").status_code == 401


def test_unknown_token_is_404(client: httpx.Client, users: AccountPool) -> None:
    guest = users("guest")
    r = accept(client, "definitely-not-a-token", guest)
    assert r.status_code == 404 and r.json() == {"detail": "Invite not found"}


def test_revoked_invite_is_404_and_disappears_from_the_list(client: httpx.Client, users: AccountPool) -> None:
    owner, guest = users("owner"), users("guest")
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner)
    assert client.delete(f"/api/workspaces/{wid}/invites/{inv['id']}", headers=owner.headers).status_code == 204
    assert accept(client, inv["token"], guest).status_code == 404
    assert client.get(f"/api/workspaces/{wid}", headers=guest.headers).status_code == 404
    assert inv["id"] not in [
        i["id"] for i in client.get(f"/api/workspaces/{wid}/invites", headers=owner.headers).json()
    ]
    # Revoking twice, unknown ids, and another workspace's invite are all 404.
    assert client.delete(f"/api/workspaces/{wid}/invites/{inv['id']}", headers=owner.headers).status_code == 404
    assert client.delete(f"/api/workspaces/{wid}/invites/nope", headers=owner.headers).status_code == 404
    other = create_workspace(client, owner)
    inv2 = invite(client, other, owner)
    assert client.delete(f"/api/workspaces/{wid}/invites/{inv2['id']}", headers=owner.headers).status_code == 404
    assert accept(client, inv2["token"], guest).status_code == 200


def test_expired_invite_is_410(client: httpx.Client, users: AccountPool) -> None:
    owner, guest = users("owner"), users("guest")
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner, expires_in_seconds=1)
    time.sleep(1.5)
    r = accept(client, inv["token"], guest)
    assert r.status_code == 410 and r.json() == {"detail": "Invite has expired"}
    assert client.get(f"/api/workspaces/{wid}", headers=guest.headers).status_code == 404
    [row] = client.get(f"/api/workspaces/{wid}/invites", headers=owner.headers).json()
    assert row["expired"] is True and row["uses"] == 0


def test_used_up_invite_is_410(client: httpx.Client, users: AccountPool) -> None:
    owner, first, second = users("owner"), users("first"), users("second")
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner, max_uses=1)
    assert accept(client, inv["token"], first).status_code == 200
    r = accept(client, inv["token"], second)
    assert r.status_code == 410 and r.json() == {"detail": "Invite has been used up"}


def test_reaccept_changes_nothing_and_uses_nothing(client: httpx.Client, users: AccountPool) -> None:
    owner, guest = users("owner"), users("guest")
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner, role="viewer", max_uses=1)
    assert accept(client, inv["token"], guest).json()["role"] == "viewer"
    # Same link clicked again (even though it is now used up): fine, nothing changes.
    r = accept(client, inv["token"], guest)
    assert r.status_code == 200 and r.json() == {"workspace_id": wid, "role": "viewer"}
    # An admin accepting a viewer invite keeps admin; the owner keeps owner; no uses are spent.
    admin = users("admin")
    add_member(client, wid, owner, admin, "admin")
    viewer_inv = invite(client, wid, owner, role="viewer", max_uses=3)
    assert accept(client, viewer_inv["token"], admin).json()["role"] == "admin"
    assert accept(client, viewer_inv["token"], owner).json()["role"] == "owner"
    listed = {i["id"]: i for i in client.get(f"/api/workspaces/{wid}/invites", headers=owner.headers).json()}
    assert listed[viewer_inv["id"]]["uses"] == 0 and listed[inv["id"]]["uses"] == 1
    roles = {
        m["user_id"]: m["role"] for m in client.get(f"/api/workspaces/{wid}/members", headers=owner.headers).json()
    }
    assert roles == {owner.id: "owner", guest.id: "viewer", admin.id: "admin"}


def test_concurrent_accepts_never_exceed_max_uses(
    client: httpx.Client, server: ThreadServer, users: AccountPool
) -> None:
    max_uses, racers = 3, 10
    owner = users("owner")
    guests = [users(f"racer{i}") for i in range(racers)]
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner, max_uses=max_uses)
    barrier = threading.Barrier(racers)
    statuses: list[int] = []

    def go(guest: Account) -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            barrier.wait()
            statuses.append(accept(c, inv["token"], guest).status_code)

    threads = [threading.Thread(target=go, args=(g,)) for g in guests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * max_uses + [410] * (racers - max_uses)
    members = client.get(f"/api/workspaces/{wid}/members", headers=owner.headers).json()
    assert len(members) == 1 + max_uses
    [row] = client.get(f"/api/workspaces/{wid}/invites", headers=owner.headers).json()
    assert row["uses"] == max_uses


def test_same_user_accepting_twice_at_once_uses_one(
    client: httpx.Client, server: ThreadServer, users: AccountPool
) -> None:
    owner, guest = users("owner"), users("guest")
    wid = create_workspace(client, owner)
    inv = invite(client, wid, owner, max_uses=5)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def go() -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            barrier.wait()
            statuses.append(accept(c, inv["token"], guest).status_code)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4
    [row] = client.get(f"/api/workspaces/{wid}/invites", headers=owner.headers).json()
    assert row["uses"] == 1


def test_invite_url_uses_public_url(tmp_path: Path) -> None:
    url = fresh_database("sqlite", tmp_path)
    srv = ThreadServer(settings_for(url, tmp_path, public_url="https://plait.example.org/")).start()
    try:
        with httpx.Client(base_url=srv.base_url, timeout=30) as c:
            owner = register(c, "owner")
            wid = create_workspace(c, owner)
            inv = invite(c, wid, owner)
            assert inv["url"] == f"https://plait.example.org/invite/{inv['token']}"
    finally:
        srv.stop()


@pytest.mark.db_agnostic
def test_public_preview_names_the_workspace_and_says_when_a_link_is_dead(client: httpx.Client) -> None:
    owner = register(client, "PreviewOwner")
    wid = create_workspace(client, owner, "Preview space")
    once = client.post(f"/api/workspaces/{wid}/invites", json={"role": "editor", "max_uses": 1}, headers=owner.headers)
    token = once.json()["token"]
    r = client.get(f"/api/invites/{token}")  # no sign-in needed
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {
        "workspace_name": "Preview space",
        "inviter": "PreviewOwner",
        "role": "editor",
        "expires_at": body["expires_at"],
        "status": "valid",
    }
    assert "token" not in r.text and wid not in r.text  # nothing more than the page needs
    joiner = register(client, "joiner")
    assert client.post(f"/api/invites/{token}/accept", headers=joiner.headers).status_code == 200
    assert client.get(f"/api/invites/{token}").json()["status"] == "used_up"
    short = client.post(
        f"/api/workspaces/{wid}/invites", json={"role": "viewer", "expires_in_seconds": 1}, headers=owner.headers
    ).json()
    deadline = time.monotonic() + 10
    while client.get(f"/api/invites/{short['token']}").json()["status"] != "expired":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.delete(f"/api/workspaces/{wid}/invites/{short['id']}", headers=owner.headers)
    for dead in (short["token"], "x" * 43):
        r = client.get(f"/api/invites/{dead}")
        assert r.status_code == 404 and r.json()["detail"] == "Invite not found"
