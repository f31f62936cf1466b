"""REST quotas (docs/quotas.md): each returns its documented error, changes nothing, and the workspace stays
usable afterwards. Small limits through settings overrides on real servers."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.support.server import ThreadServer
from tests.support.users import add_member, create_workspace, register


def _quota(r: httpx.Response, status: int, quota: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["x-plait-quota"] == quota
    assert f"({quota})" in r.json()["detail"]


def test_task_count_quota(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", quota_max_tasks=3)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "owner")
        wid = create_workspace(client, owner)
        url = f"/api/workspaces/{wid}/tasks"
        ids = [client.post(url, json={"title": f"t{i}"}, headers=owner.headers).json()["id"] for i in range(3)]
        r = client.post(url, json={"title": "one too many"}, headers=owner.headers)
        _quota(r, 413, "tasks")
        assert len(client.get(url, headers=owner.headers).json()) == 3, "the refused task was not created"
        # still usable: read, edit, delete, and create again once there is room
        assert client.patch(f"{url}/{ids[0]}", json={"title": "edited"}, headers=owner.headers).status_code == 200
        assert client.delete(f"{url}/{ids[1]}", headers=owner.headers).status_code == 204
        assert client.post(url, json={"title": "fits again"}, headers=owner.headers).status_code == 201


def test_member_quota(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", quota_max_members=2)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner, first, second = register(client, "owner"), register(client, "first"), register(client, "second")
        wid = create_workspace(client, owner)
        add_member(client, wid, owner, first, "editor")
        invite = client.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers).json()
        r = client.post(f"/api/invites/{invite['token']}/accept", headers=second.headers)
        _quota(r, 413, "members")
        assert client.get(f"/api/workspaces/{wid}", headers=second.headers).status_code == 404
        invites = client.get(f"/api/workspaces/{wid}/invites", headers=owner.headers).json()
        (listed,) = [i for i in invites if i["id"] == invite["id"]]
        assert listed["uses"] == 0, "a refused join does not use the invite up"
        # room again after someone leaves
        assert client.delete(f"/api/workspaces/{wid}/members/{first.id}", headers=first.headers).status_code == 204
        r = client.post(f"/api/invites/{invite['token']}/accept", headers=second.headers)
        assert r.status_code == 200, r.text


def test_document_size_quota(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", quota_max_document_bytes=20_000)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "owner")
        wid = create_workspace(client, owner)
        url = f"/api/workspaces/{wid}/tasks"
        big = client.post(url, json={"title": "big", "description": "x" * 12_000}, headers=owner.headers)
        assert big.status_code == 201
        r = client.post(url, json={"title": "bigger", "description": "y" * 12_000}, headers=owner.headers)
        _quota(r, 413, "document_bytes")
        r = client.patch(f"{url}/{big.json()['id']}", json={"description": "z" * 12_000}, headers=owner.headers)
        _quota(r, 413, "document_bytes")
        tasks = client.get(url, headers=owner.headers).json()
        assert [t["title"] for t in tasks] == ["big"] and tasks[0]["description"] == "x" * 12_000
        # reads, small edits and deletions keep working
        assert (
            client.patch(f"{url}/{big.json()['id']}", json={"status": "done"}, headers=owner.headers).status_code == 200
        )
        assert client.get(f"/api/workspaces/{wid}/activity", headers=owner.headers).status_code == 200
        assert client.delete(f"{url}/{big.json()['id']}", headers=owner.headers).status_code == 204


@pytest.mark.slow
def test_rest_write_rate_quota(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", quota_rest_writes_per_minute=5, quota_rest_window_seconds=2)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner, editor = register(client, "owner"), register(client, "editor")
        wid = create_workspace(client, owner)
        other = create_workspace(client, owner, "other")
        add_member(client, wid, owner, editor, "editor")  # the invite is one of the owner's writes
        url = f"/api/workspaces/{wid}/tasks"
        for i in range(4):
            assert client.post(url, json={"title": f"t{i}"}, headers=owner.headers).status_code == 201
        r = client.post(url, json={"title": "too fast"}, headers=owner.headers)
        refused_at = time.monotonic()  # Retry-After counts from the refusal (not from the first write)
        _quota(r, 429, "rest_writes")
        retry = int(r.headers["retry-after"])
        assert 1 <= retry <= 2
        assert len(client.get(url, headers=owner.headers).json()) == 4, "refused before anything was written"
        # per user and per workspace: others and elsewhere are unaffected; reads are never limited
        assert client.post(url, json={"title": "editor"}, headers=editor.headers).status_code == 201
        assert (
            client.post(f"/api/workspaces/{other}/tasks", json={"title": "x"}, headers=owner.headers).status_code == 201
        )
        for _ in range(10):
            assert client.get(url, headers=owner.headers).status_code == 200
        # unauthenticated requests are the route's business (401), not counted
        assert client.post(url, json={"title": "anon"}).status_code == 401
        time.sleep(max(0.0, refused_at + retry + 0.1 - time.monotonic()))
        assert client.post(url, json={"title": "later"}, headers=owner.headers).status_code == 201
