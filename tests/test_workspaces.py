"""Workspaces through HTTP: create, list, read, rename, delete, and no existence leaks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from tests.support.pool import AccountPool
from tests.support.server import ThreadServer
from tests.support.sql import query
from tests.support.users import add_member, create_workspace, register


@pytest.fixture(scope="module")
def users(server: ThreadServer) -> AccountPool:
    return AccountPool(server.base_url)


def test_create_returns_owner_role_and_creates_the_document_head(client: httpx.Client, server: ThreadServer) -> None:
    owner = register(client, "owner")
    r = client.post("/api/workspaces", json={"name": "  Launch plan  "}, headers=owner.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "name", "role", "created_at"}
    assert body["name"] == "Launch plan" and body["role"] == "owner"
    uuid.UUID(body["id"])
    created = datetime.fromisoformat(body["created_at"])
    assert created.tzinfo is not None and abs((datetime.now(UTC) - created).total_seconds()) < 60
    url = server.settings.resolved_database_url()
    assert query(url, "SELECT last_seq FROM documents WHERE workspace_id = :w", w=body["id"]) == [(0,)]
    assert query(url, "SELECT role FROM memberships WHERE workspace_id = :w", w=body["id"]) == [("owner",)]


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, None, 5])
def test_create_rejects_bad_names(client: httpx.Client, users: AccountPool, name: object) -> None:
    owner = users("owner")
    r = client.post("/api/workspaces", json={"name": name}, headers=owner.headers)
    assert r.status_code == 422
    assert "detail" in r.json()


def test_list_shows_only_the_callers_workspaces_with_their_role(client: httpx.Client) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    a1 = create_workspace(client, alice, "a1")
    a2 = create_workspace(client, alice, "a2")
    b1 = create_workspace(client, bob, "b1")
    add_member(client, a2, alice, bob, "editor")
    mine = {w["id"]: w["role"] for w in client.get("/api/workspaces", headers=alice.headers).json()}
    assert mine == {a1: "owner", a2: "owner"}
    theirs = {w["id"]: w["role"] for w in client.get("/api/workspaces", headers=bob.headers).json()}
    assert theirs == {b1: "owner", a2: "editor"}


def test_get_is_404_for_non_members_unknown_ids_and_malformed_ids(client: httpx.Client, users: AccountPool) -> None:
    owner, stranger = users("owner"), users("stranger")
    wid = create_workspace(client, owner)
    r = client.get(f"/api/workspaces/{wid}", headers=owner.headers)
    assert r.status_code == 200 and r.json()["id"] == wid
    responses = [
        client.get(f"/api/workspaces/{wid}", headers=stranger.headers),
        client.get(f"/api/workspaces/{uuid.uuid4()}", headers=stranger.headers),
        client.get("/api/workspaces/not-a-uuid", headers=owner.headers),
    ]
    for resp in responses:
        assert resp.status_code == 404
    # A stranger cannot tell an existing workspace from a missing one.
    assert responses[0].json() == responses[1].json() == {"detail": "Workspace not found"}


def test_rename_by_admin_and_owner_not_editor(client: httpx.Client, users: AccountPool) -> None:
    owner, admin, editor = users("owner"), users("admin"), users("editor")
    wid = create_workspace(client, owner, "old")
    add_member(client, wid, owner, admin, "admin")
    add_member(client, wid, owner, editor, "editor")
    r = client.patch(f"/api/workspaces/{wid}", json={"name": " new "}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["name"] == "new" and r.json()["role"] == "admin"
    r = client.patch(f"/api/workspaces/{wid}", json={"name": "nope"}, headers=editor.headers)
    assert r.status_code == 403 and "detail" in r.json()
    assert client.get(f"/api/workspaces/{wid}", headers=editor.headers).json()["name"] == "new"
    assert client.patch(f"/api/workspaces/{wid}", json={"name": ""}, headers=owner.headers).status_code == 422


def test_delete_removes_the_workspace_for_everyone(
    client: httpx.Client, server: ThreadServer, users: AccountPool
) -> None:
    owner, admin = users("owner"), users("admin")
    wid = create_workspace(client, owner)
    add_member(client, wid, owner, admin, "admin")
    assert client.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers).is_success
    assert client.delete(f"/api/workspaces/{wid}", headers=admin.headers).status_code == 403
    assert client.delete(f"/api/workspaces/{wid}", headers=owner.headers).status_code == 204
    for who in (owner, admin):
        assert client.get(f"/api/workspaces/{wid}", headers=who.headers).status_code == 404
        assert wid not in [w["id"] for w in client.get("/api/workspaces", headers=who.headers).json()]
    url = server.settings.resolved_database_url()
    for table in ("memberships", "invites", "documents"):
        assert query(url, f"SELECT count(*) FROM {table} WHERE workspace_id = :w", w=wid) == [(0,)]
    assert client.delete(f"/api/workspaces/{wid}", headers=owner.headers).status_code == 404


def test_openapi_docs_are_served(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/workspaces/{wid}/members/{user_id}" in spec["paths"]


def test_unknown_route_and_method_errors_are_json(client: httpx.Client) -> None:
    r = client.get("/api/nope")
    assert r.status_code == 404 and "detail" in r.json()
    r = client.put("/api/workspaces")
    assert r.status_code == 405 and "detail" in r.json()
