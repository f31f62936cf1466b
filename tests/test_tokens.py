"""Personal access tokens: shown once, stored hashed, listed without the secret, deleted; accepted as Bearer on
REST and /sync; scopes narrow (never widen) the owner's role."""

from __future__ import annotations

import hashlib

import httpx
from pycrdt import Text
from sqlalchemy import select

from persistence.db import Database
from persistence.models import PersonalAccessToken
from tests.support.databases import stored_doc
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.users import Account, add_member, create_workspace, register


def make_token(client: httpx.Client, acct: Account, scopes: list[str], **extra: object) -> dict[str, str]:
    r = client.post("/api/me/tokens", json={"name": f"ci {scopes}", "scopes": scopes, **extra}, headers=acct.headers)
    assert r.status_code == 201, r.text
    body: dict[str, str] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_is_shown_once_listed_without_secret_and_deleted(client: httpx.Client) -> None:
    acct = register(client, "pat")
    made = make_token(client, acct, ["read"], expires_in_days=30)
    assert made["token"].startswith("plait_pat_")
    assert made["scopes"] == ["read"] and made["expires_at"] and made["last_used_at"] is None
    r = client.get("/api/workspaces", headers=bearer(made["token"]))
    assert r.status_code == 200
    listed = client.get("/api/me/tokens", headers=acct.headers).json()
    assert [t["id"] for t in listed] == [made["id"]]
    assert "token" not in listed[0] and listed[0]["last_used_at"] is not None
    assert made["token"] not in r.text
    assert client.get("/api/me", headers=bearer(made["token"])).json()["id"] == acct.id
    assert client.delete(f"/api/me/tokens/{made['id']}", headers=acct.headers).status_code == 204
    assert client.get("/api/me", headers=bearer(made["token"])).status_code == 401
    assert client.delete(f"/api/me/tokens/{made['id']}", headers=acct.headers).status_code == 404


def test_tokens_are_private_and_cannot_manage_tokens(client: httpx.Client) -> None:
    ann, bob = register(client, "ann"), register(client, "bob")
    admin_token = make_token(client, ann, ["admin"])
    assert client.delete(f"/api/me/tokens/{admin_token['id']}", headers=bob.headers).status_code == 404
    assert client.get("/api/me/tokens", headers=bob.headers).json() == []
    as_token = bearer(admin_token["token"])
    assert client.post("/api/me/tokens", json={"name": "x", "scopes": ["read"]}, headers=as_token).status_code == 403
    assert client.get("/api/me/tokens", headers=as_token).status_code == 403
    assert client.post("/api/auth/logout", headers=as_token).status_code == 403
    bad = client.post("/api/me/tokens", json={"name": "x", "scopes": ["root"]}, headers=ann.headers)
    assert bad.status_code == 422


def test_scopes_narrow_the_owners_role(client: httpx.Client) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    viewer = register(client, "viewer")
    add_member(client, wid, owner, viewer, "viewer")
    read, write, admin = (make_token(client, owner, [s])["token"] for s in ("read", "write", "admin"))
    task = {"title": "by token"}
    assert client.get(f"/api/workspaces/{wid}/tasks", headers=bearer(read)).status_code == 200
    r = client.post(f"/api/workspaces/{wid}/tasks", json=task, headers=bearer(read))
    assert r.status_code == 403 and "scope" in r.json()["detail"]
    assert client.post(f"/api/workspaces/{wid}/tasks", json=task, headers=bearer(write)).status_code == 201
    # renaming needs the admin role, and a write-scoped token does not carry it
    assert client.patch(f"/api/workspaces/{wid}", json={"name": "n"}, headers=bearer(write)).status_code == 403
    assert client.patch(f"/api/workspaces/{wid}", json={"name": "n"}, headers=bearer(admin)).status_code == 200
    # an admin-scoped token of a viewer is still a viewer's
    viewer_admin = make_token(client, viewer, ["admin"])["token"]
    assert client.post(f"/api/workspaces/{wid}/tasks", json=task, headers=bearer(viewer_admin)).status_code == 403


async def test_tokens_are_stored_as_their_hash(server: ThreadServer, client: httpx.Client) -> None:
    acct = register(client, "hashed")
    made = make_token(client, acct, ["write"])
    db = Database(server.settings.resolved_database_url())
    try:
        async with db.session() as s:
            stored = (
                await s.execute(select(PersonalAccessToken).where(PersonalAccessToken.id == made["id"]))
            ).scalar_one()
    finally:
        await db.dispose()
    assert stored.token_hash == hashlib.sha256(made["token"].encode()).hexdigest()
    assert made["token"] not in repr(stored.__dict__)


async def test_tokens_on_sync_read_scope_is_a_viewer_and_deletion_closes_4401(
    server: ThreadServer, client: httpx.Client
) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    read, write = make_token(client, owner, ["read"]), make_token(client, owner, ["write"])
    writer = YClient()
    await writer.connect(sync_url(server.ws_url, wid, write["token"]))
    await writer.wait_synced()
    reader = YClient()
    await reader.connect(sync_url(server.ws_url, wid, read["token"]))
    await reader.wait_synced()
    writer.text("t").insert(0, "kept")
    await reader.wait_for(lambda: str(reader.text("t")) == "kept")
    reader.text("t").insert(0, "DROPPED ")
    await reader.handled(writer)
    assert reader.connected, "a read token's writes are dropped like a viewer's, the socket stays open"
    assert str(writer.text("t")) == "kept"
    stored = await stored_doc(server.settings.resolved_database_url(), wid)
    assert str(stored.get("t", type=Text)) == "kept"
    # deleting the token closes what was opened with it, and only that
    assert client.delete(f"/api/me/tokens/{read['id']}", headers=owner.headers).status_code == 204
    assert await reader.wait_closed() == 4401
    assert writer.connected
    await writer.close()
