"""Version history: named and automatic versions, diffs, restore as a forward change (live and offline clients
converge), undo, retention, and independence from log compaction — real servers on both databases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.node import wait_until
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.users import Account, add_member, create_workspace, register

COMPARED = ("title", "description", "status", "assignee_id", "due_date", "completed_at", "created_by", "created_at")


def _task(client: httpx.Client, wid: str, acct: Account, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/workspaces/{wid}/tasks", json=body, headers=acct.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _tasks(client: httpx.Client, wid: str, acct: Account) -> dict[str, dict[str, Any]]:
    r = client.get(f"/api/workspaces/{wid}/tasks", headers=acct.headers)
    assert r.status_code == 200, r.text
    return {t["id"]: t for t in r.json()}


def _essence(tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a restore must bring back exactly (``updated_at`` moves forward: a restore is a new change)."""
    return {tid: {k: t.get(k) for k in COMPARED} for tid, t in tasks.items()}


def _save(client: httpx.Client, wid: str, acct: Account, label: str) -> dict[str, Any]:
    r = client.post(f"/api/workspaces/{wid}/versions", json={"label": label}, headers=acct.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _versions(client: httpx.Client, wid: str, acct: Account, **params: Any) -> dict[str, Any]:
    r = client.get(f"/api/workspaces/{wid}/versions", params=params, headers=acct.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _restore(client: httpx.Client, wid: str, acct: Account, vid: str) -> dict[str, Any]:
    r = client.post(f"/api/workspaces/{wid}/versions/{vid}/restore", headers=acct.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_named_versions_list_read_and_diff(client: httpx.Client) -> None:
    owner, editor, viewer = register(client, "owner"), register(client, "editor"), register(client, "viewer")
    wid = create_workspace(client, owner)
    add_member(client, wid, owner, editor, "editor")
    add_member(client, wid, owner, viewer, "viewer")
    a = _task(client, wid, owner, title="A", description="alpha")
    b = _task(client, wid, owner, title="B", description="the quick brown fox", assignee_id=editor.id)
    v1 = _save(client, wid, editor, "before the cleanup")
    assert v1["label"] == "before the cleanup" and v1["kind"] == "named" and v1["task_count"] == 2
    assert v1["created_by"] == {"id": editor.id, "display_name": editor.display_name}
    r = client.post(f"/api/workspaces/{wid}/versions", json={"label": "x"}, headers=viewer.headers)
    assert r.status_code == 403, "viewers may read history but not save versions"
    r = client.post(f"/api/workspaces/{wid}/versions", json={"label": "  "}, headers=owner.headers)
    assert r.status_code == 422

    assert client.delete(f"/api/workspaces/{wid}/tasks/{a['id']}", headers=owner.headers).status_code == 204
    r = client.patch(
        f"/api/workspaces/{wid}/tasks/{b['id']}",
        json={"title": "B2", "description": "the quick red fox", "status": "done"},
        headers=owner.headers,
    )
    assert r.status_code == 200, r.text
    c = _task(client, wid, owner, title="C")

    # viewers read: the version's tasks as they were
    r = client.get(f"/api/workspaces/{wid}/versions/{v1['id']}", headers=viewer.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == v1["id"] and body["task_count"] == 2
    assert {t["id"]: (t["title"], t["description"]) for t in body["tasks"]} == {
        a["id"]: ("A", "alpha"),
        b["id"]: ("B", "the quick brown fox"),
    }

    r = client.get(
        f"/api/workspaces/{wid}/versions/{v1['id']}/diff", params={"against": "current"}, headers=viewer.headers
    )
    assert r.status_code == 200, r.text
    diff = r.json()
    assert [t["id"] for t in diff["added"]] == [c["id"]]
    assert [t["id"] for t in diff["removed"]] == [a["id"]]
    assert len(diff["changed"]) == 1 and diff["changed"][0]["task_id"] == b["id"]
    fields = diff["changed"][0]["fields"]
    assert fields["title"] == {"from": "B", "to": "B2"}
    assert fields["description"] == {"from": "the quick brown fox", "to": "the quick red fox"}
    assert fields["status"] == {"from": "todo", "to": "done"}
    assert fields["completed_at"]["from"] is None and fields["completed_at"]["to"] is not None
    assert set(fields) == {"title", "description", "status", "completed_at"}

    # newest first, paginated with the common envelope
    v2 = _save(client, wid, owner, "after")
    named = [v for v in _versions(client, wid, viewer)["items"] if v["kind"] == "named"]
    assert [v["id"] for v in named] == [v2["id"], v1["id"]]
    page = _versions(client, wid, viewer, limit=1)
    assert len(page["items"]) == 1 and page["next_cursor"] is not None
    rest = _versions(client, wid, viewer, cursor=page["next_cursor"], limit=200)
    assert page["items"][0]["id"] not in [v["id"] for v in rest["items"]] and rest["next_cursor"] is None
    # a diff between two versions, and nonsense
    r = client.get(
        f"/api/workspaces/{wid}/versions/{v1['id']}/diff", params={"against": v2["id"]}, headers=owner.headers
    )
    assert r.status_code == 200 and [t["id"] for t in r.json()["added"]] == [c["id"]]
    r = client.get(
        f"/api/workspaces/{wid}/versions/{v1['id']}/diff", params={"against": "yesterday"}, headers=owner.headers
    )
    assert r.status_code == 422
    assert client.get(f"/api/workspaces/{wid}/versions/not-a-uuid", headers=owner.headers).status_code == 404
    # another workspace's version is not visible here
    other = create_workspace(client, owner, "other")
    assert client.get(f"/api/workspaces/{other}/versions/{v1['id']}", headers=owner.headers).status_code == 404
    # deleting (admins and owners) removes it
    assert client.delete(f"/api/workspaces/{wid}/versions/{v2['id']}", headers=editor.headers).status_code == 403
    assert client.delete(f"/api/workspaces/{wid}/versions/{v2['id']}", headers=owner.headers).status_code == 204
    assert client.get(f"/api/workspaces/{wid}/versions/{v2['id']}", headers=owner.headers).status_code == 404


def test_restore_is_a_forward_change_recorded_in_activity_and_undoable(client: httpx.Client) -> None:
    owner, admin = register(client, "owner"), register(client, "admin")
    wid = create_workspace(client, owner)
    add_member(client, wid, owner, admin, "admin")
    a = _task(client, wid, owner, title="A", description="alpha beta gamma", due_date="2030-01-02")
    b = _task(client, wid, owner, title="B", status="done")
    snapshot = _essence(_tasks(client, wid, owner))
    v1 = _save(client, wid, owner, "good state")

    client.delete(f"/api/workspaces/{wid}/tasks/{a['id']}", headers=owner.headers)
    client.patch(
        f"/api/workspaces/{wid}/tasks/{b['id']}", json={"status": "todo", "title": "B!"}, headers=owner.headers
    )
    c = _task(client, wid, owner, title="C", assignee_id=admin.id)
    broken = _essence(_tasks(client, wid, owner))
    head_before = client.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["last_seq"]

    out = _restore(client, wid, admin, v1["id"])
    assert out["restored_from"] == v1["id"] and out["undo_version_id"]
    assert _essence(_tasks(client, wid, owner)) == snapshot
    # a forward change: the log grew, nothing was rewritten
    head_after = client.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()["last_seq"]
    assert head_after > head_before

    # the pre-restore version holds the state just before
    undo = client.get(f"/api/workspaces/{wid}/versions/{out['undo_version_id']}", headers=owner.headers).json()
    assert undo["kind"] == "pre-restore" and undo["created_by"]["id"] == admin.id
    assert _essence({t["id"]: t for t in undo["tasks"]}) == broken

    # activity: the restorer's task changes and one "restored" entry
    def restored_activity() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = client.get(
            f"/api/workspaces/{wid}/activity", params={"limit": 200}, headers=owner.headers
        ).json()["items"]
        by_admin = [i for i in items if i["actor"] and i["actor"]["id"] == admin.id]
        kinds = {(i["kind"], i["task_id"]) for i in by_admin}
        want = {("restored", ""), ("created", a["id"]), ("deleted", c["id"])}
        return by_admin if want <= kinds else None

    items = wait_until(restored_activity, 10)
    entry = next(i for i in items if i["kind"] == "restored")
    assert entry["new_value"]["version_id"] == v1["id"] and entry["old_value"]["version_id"] == out["undo_version_id"]
    assert any(i["task_id"] == b["id"] and i["field"] == "status" and i["new_value"] == "done" for i in items)

    # editors may not restore; the undo (restoring the pre-restore version) brings the broken state back
    r = client.post(f"/api/workspaces/{wid}/versions/{v1['id']}/restore", headers=admin.headers)
    assert r.status_code == 200
    r = client.post(f"/api/workspaces/{wid}/versions/{out['undo_version_id']}/restore", headers=owner.headers)
    assert r.status_code == 200, r.text
    assert _essence(_tasks(client, wid, owner)) == broken


async def test_restore_converges_live_and_offline_clients(server: ThreadServer, client: httpx.Client) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    url = sync_url(server.ws_url, wid, owner.token)
    live1, live2, offline = YClient(), YClient(), YClient()
    for c in (live1, live2, offline):
        await c.connect(url)
        await c.wait_synced()
    t1 = _task(client, wid, owner, title="keep", description="first line")
    t2 = _task(client, wid, owner, title="will be deleted later")
    await offline.wait_for(lambda: len(offline.tasks()) == 2)
    v1 = _save(client, wid, owner, "v1")
    target = _essence(_tasks(client, wid, owner))

    # the offline client drops out; the others keep editing live
    await offline.close()
    live1.tasks_map()[t2["id"]]["title"] = "renamed live"
    live2.tasks_map()[t1["id"]]["description"].insert(0, "edited: ")
    del live1.tasks_map()[t2["id"]]
    await live2.wait_for(lambda: t2["id"] not in live2.tasks())
    await asyncio.sleep(0.2)

    _restore(client, wid, owner, v1["id"])

    def converged(c: YClient) -> bool:
        tasks = c.tasks()
        return set(tasks) == set(target) and all(
            {k: tasks[tid].get(k) for k in COMPARED} == target[tid] for tid in target
        )

    await live1.wait_for(lambda: converged(live1))
    await live2.wait_for(lambda: converged(live2))
    await offline.connect(url)
    await offline.wait_synced()
    await offline.wait_for(lambda: converged(offline))
    assert _essence(_tasks(client, wid, owner)) == target
    for c in (live1, live2, offline):
        await c.close()


def test_versions_survive_log_compaction(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", compaction_max_updates=5)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "owner")
        wid = create_workspace(client, owner)
        t = _task(client, wid, owner, title="v0", description="start")
        v1 = _save(client, wid, owner, "early")
        early = _essence(_tasks(client, wid, owner))
        for i in range(30):
            r = client.patch(
                f"/api/workspaces/{wid}/tasks/{t['id']}", json={"title": f"v{i + 1}"}, headers=owner.headers
            )
            assert r.status_code == 200
        _task(client, wid, owner, title="late")

        def compacted() -> dict[str, Any] | None:
            info: dict[str, Any] = client.get(f"/api/workspaces/{wid}/document", headers=owner.headers).json()
            return info if info["snapshot_seq"] >= 25 else None

        wait_until(compacted, 10, message="the log was never compacted")
        r = client.get(f"/api/workspaces/{wid}/versions/{v1['id']}", headers=owner.headers)
        assert r.status_code == 200 and r.json()["tasks"][0]["title"] == "v0"
        _restore(client, wid, owner, v1["id"])
        assert _essence(_tasks(client, wid, owner)) == early


@pytest.mark.slow
def test_automatic_versions_interval_and_retention(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", version_auto_interval_seconds=0.5, version_retention_count=2)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "owner")
        wid = create_workspace(client, owner)
        named = _save(client, wid, owner, "kept")
        t = _task(client, wid, owner, title="t0")
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 2.2:
            i += 1
            client.patch(f"/api/workspaces/{wid}/tasks/{t['id']}", json={"title": f"t{i}"}, headers=owner.headers)
            time.sleep(0.05)

        def settled() -> list[dict[str, Any]] | None:
            autos = [v for v in _versions(client, wid, owner)["items"] if v["kind"] == "auto"]
            if not autos:
                return None
            latest = client.get(f"/api/workspaces/{wid}/versions/{autos[0]['id']}", headers=owner.headers).json()
            return autos if latest["tasks"] and latest["tasks"][0]["title"] == f"t{i}" else None

        autos = wait_until(settled, 5, message="the last state of the burst was never captured")
        assert len(autos) == 2, "only the newest PLAIT_VERSION_RETENTION_COUNT automatic versions are kept"
        assert all(v["created_by"] is None and v["label"] is None for v in autos)
        # at most one per interval
        from datetime import datetime

        stamps = sorted(datetime.fromisoformat(v["created_at"].replace("Z", "+00:00")).timestamp() for v in autos)
        assert stamps[1] - stamps[0] >= 0.45
        # a quiet document gets no more automatic versions; named ones are never pruned
        time.sleep(1.0)
        items = _versions(client, wid, owner)["items"]
        assert [v["id"] for v in items if v["kind"] == "auto"] == [v["id"] for v in autos]
        assert named["id"] in [v["id"] for v in items]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_text_with_a_nul_character_is_refused_with_422(make_server: Callable[..., ThreadServer], backend: str) -> None:
    """PostgreSQL text cannot hold NUL: a label, workspace name or display name with one was a 500 there."""
    srv = make_server(backend)
    with httpx.Client(base_url=srv.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        r = http.post(f"/api/workspaces/{wid}/versions", json={"label": "a\u0000b"}, headers=owner.headers)
        assert r.status_code == 422 and "label" in r.text
        r = http.patch(f"/api/workspaces/{wid}", json={"name": "a\u0000b"}, headers=owner.headers)
        assert r.status_code == 422 and "name" in r.text
        assert (
            http.post(f"/api/workspaces/{wid}/versions", json={"label": "fine"}, headers=owner.headers).status_code
            == 201
        )


@pytest.mark.slow
def test_the_first_automatic_version_waits_an_interval_from_the_workspaces_creation(
    make_server: Callable[..., ThreadServer],
) -> None:
    """A version at a new workspace's first change would hold a nearly empty document (and 500 fresh rooms
    starting at once would each encode one): the interval counts from the creation when there is no earlier
    automatic version."""
    srv = make_server("sqlite", version_auto_interval_seconds=1.5)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "owner")
        created = time.monotonic()
        wid = create_workspace(client, owner)
        _task(client, wid, owner, title="first")
        time.sleep(0.5)
        early = time.monotonic() - created
        assert early < 1.2, "the check must run well inside the interval"
        assert [v for v in _versions(client, wid, owner)["items"] if v["kind"] == "auto"] == []

        def autos() -> list[dict[str, Any]] | None:
            return [v for v in _versions(client, wid, owner)["items"] if v["kind"] == "auto"] or None

        assert len(wait_until(autos, 10, message="no automatic version after the interval")) == 1
        assert time.monotonic() - created >= 1.4
