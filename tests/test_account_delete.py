"""Deleting my account (refused while I am the last owner of a workspace with other members; otherwise my
memberships go, my sessions and tokens end, my sockets close 4401, what I wrote stays as "Deleted user") and
exporting my data."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.node import wait_until
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.sql import query
from tests.support.users import Account, add_member, create_workspace, register, workspace_with
from tests.test_multinode import Cluster, cluster  # noqa: F401 (the two-node fixture)


def _pat(client: httpx.Client, acct: Account, scopes: list[str]) -> str:
    r = client.post("/api/me/tokens", json={"name": "script", "scopes": scopes}, headers=acct.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def test_deleting_my_account(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (me,) = workspace_with(client, "admin")
    base = f"/api/workspaces/{wid}"
    # what I write: a task, a comment, and the activity and notifications they cause
    r = client.post(f"{base}/tasks", json={"title": "mine", "assignee_id": owner.id}, headers=me.headers)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert client.post(f"{base}/tasks/{tid}/comments", json={"body": "hello"}, headers=me.headers).status_code == 201
    wait_until(lambda: client.get(f"{base}/tasks/{tid}/activity", headers=owner.headers).json()["items"], 10)
    # a workspace of my own that nobody else is in, and one where I am the last owner with another member
    alone = create_workspace(client, me, "solo")
    shared = create_workspace(client, me, "shared")
    other = register(client, "other")
    add_member(client, shared, me, other, "editor")
    token = _pat(client, me, ["admin"])

    r = client.delete("/api/me", headers=me.headers)
    assert r.status_code == 409, r.text
    assert "last owner" in r.json()["detail"] and shared in r.json()["detail"]
    assert client.get("/api/me", headers=me.headers).status_code == 200  # nothing happened
    # a personal access token cannot delete the account
    assert client.delete("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    # hand the workspace over: then it goes
    r = client.patch(f"/api/workspaces/{shared}/members/{other.id}", json={"role": "owner"}, headers=me.headers)
    assert r.status_code == 200, r.text
    sock = YClient()
    await sock.connect(sync_url(server.ws_url, wid, me.token))
    await sock.wait_synced()
    pat_sock = YClient()
    await pat_sock.connect(sync_url(server.ws_url, wid, token))
    await pat_sock.wait_synced()

    assert client.delete("/api/me", headers=me.headers).status_code == 204
    assert await sock.wait_closed() == 4401
    assert await pat_sock.wait_closed() == 4401
    assert client.get("/api/me", headers=me.headers).status_code == 401
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    r = client.post("/api/auth/login", json={"email": me.email, "password": me.password})
    assert r.status_code == 401
    # my memberships are gone; my solo workspace with them; the shared one stays with its new owner
    members = client.get(f"{base}/members", headers=owner.headers).json()
    assert me.id not in [m["user_id"] for m in members]
    assert client.get(f"/api/workspaces/{shared}", headers=other.headers).status_code == 200
    url = server.settings.resolved_database_url()
    assert await asyncio.to_thread(query, url, "SELECT count(*) FROM workspaces WHERE id = :w", w=alone) == [(0,)]
    # what I wrote stays, attributed to my id, which the API now shows as "Deleted user"
    task = client.get(f"{base}/tasks/{tid}", headers=owner.headers).json()
    assert task["created_by"] == me.id
    (comment,) = client.get(f"{base}/tasks/{tid}/comments", headers=owner.headers).json()
    assert comment["author_id"] == me.id and comment["body"] == "hello"
    actors = [a["actor"] for a in client.get(f"{base}/tasks/{tid}/activity", headers=owner.headers).json()["items"]]
    assert actors and all(a == {"id": me.id, "display_name": "Deleted user"} for a in actors)
    notes = client.get("/api/notifications", headers=owner.headers).json()["items"]
    assert any(n["actor"] == {"id": me.id, "display_name": "Deleted user"} for n in notes)
    # nothing personal is left: no address, no tokens; the address can be registered again
    assert await asyncio.to_thread(query, url, "SELECT count(*) FROM users WHERE email = :e", e=me.email) == [(0,)]
    assert await asyncio.to_thread(
        query, url, "SELECT count(*) FROM personal_access_tokens WHERE user_id = :u", u=me.id
    ) == [(0,)]
    r = client.post("/api/auth/register", json={"email": me.email, "password": me.password, "display_name": "again"})
    assert r.status_code == 201 and r.json()["id"] != me.id


def test_an_owner_among_owners_and_a_plain_member_may_leave(client: httpx.Client) -> None:
    wid, owner, (co_owner, viewer) = workspace_with(client, "owner", "viewer")
    assert client.delete("/api/me", headers=co_owner.headers).status_code == 204
    assert client.delete("/api/me", headers=viewer.headers).status_code == 204
    # now the owner is the last one, but the only member too: the workspace goes with the account
    assert client.get(f"/api/workspaces/{wid}/members", headers=owner.headers).json()[0]["user_id"] == owner.id
    assert client.delete("/api/me", headers=owner.headers).status_code == 204


def test_export_my_data(client: httpx.Client) -> None:
    wid, owner, (me,) = workspace_with(client, "editor")
    r = client.post(
        f"/api/workspaces/{wid}/tasks", json={"title": "for me", "assignee_id": me.id}, headers=owner.headers
    )
    assert r.status_code == 201
    _pat(client, me, ["read"])
    wait_until(lambda: client.get("/api/notifications", headers=me.headers).json()["items"], 10)
    r = client.get("/api/me/export", headers=me.headers)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["account"]["id"] == me.id and data["account"]["email"] == me.email
    assert [(m["workspace_id"], m["role"]) for m in data["memberships"]] == [(wid, "editor")]
    assert any(n["type"] == "task_assigned" and n["data"]["title"] == "for me" for n in data["notifications"])
    (tok,) = data["tokens"]
    assert tok["name"] == "script" and tok["scopes"] == ["read"] and "token" not in tok
    assert data["sessions"] and data["email_digest"] is False
    assert "plait_pat_" not in r.text and "password" not in r.text


@pytest.mark.redis
async def test_deleting_my_account_on_one_node_closes_my_sockets_on_the_other(cluster: Cluster) -> None:  # noqa: F811
    with httpx.Client(base_url=cluster.a.base_url) as http:
        me = register(http, "leaving")
        wid = create_workspace(http, me)
        pat = _pat(http, me, ["write"])
    socks = []
    for token in (me.token, pat):
        sock = YClient()
        await sock.connect(sync_url(cluster.b.ws_url, wid, token))
        await sock.wait_synced()
        socks.append(sock)
    with httpx.Client(base_url=cluster.a.base_url) as http:
        assert http.delete("/api/me", headers=me.headers).status_code == 204
    for sock in socks:
        assert await sock.wait_closed() == 4401
