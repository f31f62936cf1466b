"""Members through HTTP: listing, role changes, removal, leaving, and the last-owner rule."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from tests.support.pool import AccountPool
from tests.support.server import ThreadServer
from tests.support.users import Account, add_member, create_workspace


@pytest.fixture(scope="module")
def users(server: ThreadServer) -> AccountPool:
    return AccountPool(server.base_url)


def team(client: httpx.Client, users: AccountPool) -> tuple[str, dict[str, Account]]:
    """A fresh workspace with one member per role (the accounts are reused, the workspace is new)."""
    people = {role: users(role) for role in ("owner", "admin", "editor", "viewer")}
    wid = create_workspace(client, people["owner"])
    for role in ("admin", "editor", "viewer"):
        add_member(client, wid, people["owner"], people[role], role)
    return wid, people


def roles(client: httpx.Client, wid: str, who: Account) -> dict[str, str]:
    r = client.get(f"/api/workspaces/{wid}/members", headers=who.headers)
    assert r.status_code == 200, r.text
    return {m["user_id"]: m["role"] for m in r.json()}


def test_list_members_shape(client: httpx.Client, users: AccountPool) -> None:
    wid, p = team(client, users)
    r = client.get(f"/api/workspaces/{wid}/members", headers=p["viewer"].headers)
    assert r.status_code == 200
    members = r.json()
    assert [m["role"] for m in members] == ["owner", "admin", "editor", "viewer"]  # in joining order
    first = members[0]
    assert set(first) == {"user_id", "display_name", "email", "role", "joined_at"}
    assert first["user_id"] == p["owner"].id and first["email"] == p["owner"].email
    assert first["display_name"] == "owner"


def test_admin_changes_roles_below_owner(client: httpx.Client, users: AccountPool) -> None:
    wid, p = team(client, users)
    r = client.patch(
        f"/api/workspaces/{wid}/members/{p['viewer'].id}", json={"role": "editor"}, headers=p["admin"].headers
    )
    assert r.status_code == 200
    assert r.json()["role"] == "editor" and r.json()["user_id"] == p["viewer"].id
    r = client.patch(
        f"/api/workspaces/{wid}/members/{p['editor'].id}", json={"role": "admin"}, headers=p["admin"].headers
    )
    assert r.status_code == 200
    assert roles(client, wid, p["owner"])[p["editor"].id] == "admin"
    # The promoted viewer can now write; permissions follow the stored role immediately.
    assert client.get(f"/api/workspaces/{wid}", headers=p["viewer"].headers).json()["role"] == "editor"


def test_only_owners_touch_owners(client: httpx.Client, users: AccountPool) -> None:
    wid, p = team(client, users)
    admin = p["admin"].headers
    base = f"/api/workspaces/{wid}/members"
    assert client.patch(f"{base}/{p['editor'].id}", json={"role": "owner"}, headers=admin).status_code == 403
    assert client.patch(f"{base}/{p['owner'].id}", json={"role": "viewer"}, headers=admin).status_code == 403
    assert client.delete(f"{base}/{p['owner'].id}", headers=admin).status_code == 403
    r = client.patch(f"{base}/{p['admin'].id}", json={"role": "owner"}, headers=p["owner"].headers)
    assert r.status_code == 200 and r.json()["role"] == "owner"
    # Now the former admin is an owner and may demote the original owner (there are two owners).
    r = client.patch(f"{base}/{p['owner'].id}", json={"role": "admin"}, headers=admin)
    assert r.status_code == 200
    assert roles(client, wid, p["editor"])[p["owner"].id] == "admin"


def test_editors_and_viewers_cannot_manage_members(client: httpx.Client, users: AccountPool) -> None:
    wid, p = team(client, users)
    base = f"/api/workspaces/{wid}/members"
    for who in ("editor", "viewer"):
        h = p[who].headers
        assert client.patch(f"{base}/{p['viewer'].id}", json={"role": "admin"}, headers=h).status_code == 403
        assert client.delete(f"{base}/{p['admin'].id}", headers=h).status_code == 403
    assert set(roles(client, wid, p["owner"]).values()) == {"owner", "admin", "editor", "viewer"}


def test_last_owner_cannot_be_demoted_or_removed(client: httpx.Client, users: AccountPool) -> None:
    wid, p = team(client, users)
    base = f"/api/workspaces/{wid}/members/{p['owner'].id}"
    r = client.patch(base, json={"role": "admin"}, headers=p["owner"].headers)
    assert r.status_code == 409 and "last owner" in r.json()["detail"]
    r = client.delete(base, headers=p["owner"].headers)
    assert r.status_code == 409 and "last owner" in r.json()["detail"]
    assert roles(client, wid, p["owner"])[p["owner"].id] == "owner"
    # With a second owner, the first may step down or leave.
    assert client.patch(
        f"/api/workspaces/{wid}/members/{p['admin'].id}", json={"role": "owner"}, headers=p["owner"].headers
    ).is_success
    assert client.delete(base, headers=p["owner"].headers).status_code == 204
    assert client.get(f"/api/workspaces/{wid}", headers=p["owner"].headers).status_code == 404


def test_members_may_leave_and_admins_may_remove(client: httpx.Client, users: AccountPool) -> None:
    wid, p = team(client, users)
    base = f"/api/workspaces/{wid}/members"
    assert client.delete(f"{base}/{p['viewer'].id}", headers=p["viewer"].headers).status_code == 204
    assert client.get(f"/api/workspaces/{wid}", headers=p["viewer"].headers).status_code == 404
    assert client.delete(f"{base}/{p['editor'].id}", headers=p["admin"].headers).status_code == 204
    assert client.get(f"/api/workspaces/{wid}/members", headers=p["editor"].headers).status_code == 404
    assert set(roles(client, wid, p["owner"])) == {p["owner"].id, p["admin"].id}
    # Removing again: that user is no longer a member.
    assert client.delete(f"{base}/{p['editor'].id}", headers=p["admin"].headers).status_code == 404


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_unknown_member_ids_are_404(client: httpx.Client, users: AccountPool, method: str) -> None:
    wid, p = team(client, users)
    stranger = users("stranger")
    for target in (str(uuid.uuid4()), stranger.id, "not-a-uuid"):
        url = f"/api/workspaces/{wid}/members/{target}"
        r = (
            client.patch(url, json={"role": "viewer"}, headers=p["owner"].headers)
            if method == "patch"
            else client.delete(url, headers=p["owner"].headers)
        )
        assert r.status_code == 404, (target, r.text)
        assert r.json() == {"detail": "Member not found"}


def test_invalid_role_is_422(client: httpx.Client, users: AccountPool) -> None:
    wid, p = team(client, users)
    r = client.patch(
        f"/api/workspaces/{wid}/members/{p['viewer'].id}", json={"role": "god"}, headers=p["owner"].headers
    )
    assert r.status_code == 422


def demote_each_other(server: ThreadServer, wid: str, a: Account, b: Account) -> list[int]:
    """Both owners demote the other at the same instant; the statuses of both requests."""
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def demote(actor: Account, target: Account) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as c:
            barrier.wait()
            url = f"/api/workspaces/{wid}/members/{target.id}"
            statuses.append(c.patch(url, json={"role": "admin"}, headers=actor.headers).status_code)

    threads = [threading.Thread(target=demote, args=(a, b)), threading.Thread(target=demote, args=(b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(statuses)


def test_two_owners_demoting_each_other_at_once_leave_an_owner(server: ThreadServer, users: AccountPool) -> None:
    """The per-workspace lock serializes the owner count and the update, on both databases."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(5):
            a, b = users("a"), users("b")
            wid = create_workspace(client, a)
            add_member(client, wid, a, b, "owner")
            statuses = demote_each_other(server, wid, a, b)
            owners = [uid for uid, role in roles(client, wid, a).items() if role == "owner"]
            assert len(owners) == 1, statuses
            # The loser either saw the other's demotion (409) or had already lost its owner role (403).
            assert statuses[0] == 200 and statuses[1] in (403, 409), statuses
