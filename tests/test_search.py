"""Search (issue 23): the task index kept from committed changes, queried with the database's own full-text
search, against a real server on both backends — words typed by live clients (npm y-websocket, pycrdt) are
found within seconds, comments and checklists are searched, a deleted task disappears, and nobody sees a hit
in a workspace they are not a member of."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pycrdt import Array, Map, Text

from tests.support.node import NodeClient, start_clients, wait_until
from tests.support.pyclient import YClient, async_wait_until, sync_url
from tests.support.server import ThreadServer
from tests.support.sql import query
from tests.support.users import Account, add_member, register, workspace_with

INDEX_SECONDS = 10  # deadline for a change to become searchable (the window is 1 s)


def _word() -> str:
    """A word no other test (or earlier run on the session's server) uses."""
    return "w" + uuid.uuid4().hex[:10]


def _search(client: httpx.Client, acct: Account, q: str, **params: Any) -> dict[str, Any]:
    r = client.get("/api/search", params={"q": q, **params}, headers=acct.headers)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def _hits(client: httpx.Client, acct: Account, q: str) -> list[str]:
    return [h["task_id"] for h in _search(client, acct, q)["items"]]


def _wait_hit(client: httpx.Client, acct: Account, q: str, task_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((h for h in _search(client, acct, q)["items"] if h["task_id"] == task_id), None)

    return wait_until(found, INDEX_SECONDS, message=f"{q!r} found in task {task_id}")


async def _await_hit(client: httpx.Client, acct: Account, q: str, task_id: str) -> dict[str, Any]:
    """``_wait_hit`` for async tests: the event loop keeps running the live client meanwhile."""

    def found() -> dict[str, Any] | None:
        return next((h for h in _search(client, acct, q)["items"] if h["task_id"] == task_id), None)

    return await async_wait_until(found, INDEX_SECONDS, interval=0.05)


@pytest.fixture
def node(server: ThreadServer) -> Iterator[NodeClient]:
    (c,) = start_clients(1, prefix="search")
    with c:
        yield c


def test_a_word_typed_live_into_a_description_is_found(
    server: ThreadServer, client: httpx.Client, node: NodeClient
) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    stranger = register(client, "stranger")
    node.connect(f"{server.ws_url}/sync", wid, editor.token)
    node.wait_synced(10)
    tid = node.create_task("Quarterly report", description="draft: ", created_by=editor.id)
    word = _word()
    node.insert_text(tid, len("draft: "), f"{word} numbers")
    hit = _wait_hit(client, owner, word, tid)
    assert hit["workspace"]["id"] == wid and hit["title"] == "Quarterly report" and hit["status"] == "todo"
    assert word in hit["snippet"]
    # a prefix of the last word finds it too, and so does the title
    assert tid in _hits(client, editor, word[:6])
    assert tid in _hits(client, editor, f"quarterly {word}")
    # words of other tasks, and a word nowhere, find nothing here
    assert _hits(client, owner, f"quarterly {_word()}") == []
    # a non-member never sees it
    assert _hits(client, stranger, word) == []


async def test_comments_and_checklist_items_are_searched(server: ThreadServer, client: httpx.Client) -> None:
    """A pycrdt client writes a task v2 shape (comments and checklist as arrays of maps)."""
    wid, owner, (editor,) = workspace_with(client, "editor")
    in_comment, in_item, later = _word(), _word(), _word()
    c = YClient()
    await c.connect(sync_url(server.ws_url, wid, editor.token))
    await c.wait_synced()
    tid = str(uuid.uuid4())
    now = "2025-01-01T00:00:00.000Z"
    comment = {"id": "c1", "author_id": editor.id, "body": f"see {in_comment}", "created_at": now, "edited_at": None}
    with c.doc.transaction():
        c.tasks_map()[tid] = Map(
            {
                "id": tid,
                "title": "Launch",
                "description": Text("plan"),
                "status": "todo",
                "assignee_id": None,
                "due_date": None,
                "created_by": editor.id,
                "created_at": now,
                "updated_at": now,
                "completed_at": None,
                "priority": "high",
                "labels": Array(["l1"]),
                "checklist": Array([Map({"id": "i1", "text": f"buy {in_item}", "done": False})]),
                "comments": Array([Map(comment)]),
            }
        )
    assert (await _await_hit(client, owner, in_comment, tid))["snippet"]
    assert _hits(client, owner, in_item) == [tid]
    # a comment added in the same change as a field edit is indexed with it
    task = c.tasks_map()[tid]
    with c.doc.transaction():
        task["comments"].append(Map({**comment, "id": "c2", "body": f"and {later}"}))
        task["updated_at"] = "2025-01-02T00:00:00.000Z"
        task["title"] = "Launch!"
    hit = await _await_hit(client, owner, later, tid)
    assert hit["title"] == "Launch!" and hit["priority"] == "high"
    await c.close()


async def test_a_comment_added_alone_is_found(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    title = _word()
    r = client.post(f"/api/workspaces/{wid}/tasks", json={"title": title}, headers=owner.headers)
    tid = r.json()["id"]
    word = _word()
    c = YClient()
    await c.connect(sync_url(server.ws_url, wid, owner.token))
    await c.wait_synced()
    await _await_hit(client, owner, title, tid)
    # the creation's window passed: only the comment's own change can index the task again
    await async_wait_until(lambda: wid not in server.ctx.search.pending, INDEX_SECONDS)
    task = c.tasks_map()[tid]
    with c.doc.transaction():
        task["comments"] = Array([Map({"id": "c1", "author_id": owner.id, "body": word})])
    try:
        await async_wait_until(lambda: _hits(client, owner, word) == [tid], timeout=5)
    finally:
        await c.close()


def test_a_deleted_task_disappears_and_membership_is_checked_at_query_time(client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    other_wid, other_owner, _ = workspace_with(client)
    word = _word()
    url = f"/api/workspaces/{wid}/tasks"
    keep = client.post(url, json={"title": f"{word} keep"}, headers=owner.headers).json()["id"]
    gone = client.post(url, json={"title": "drop", "description": f"{word}"}, headers=owner.headers).json()["id"]
    elsewhere = client.post(
        f"/api/workspaces/{other_wid}/tasks", json={"title": word}, headers=other_owner.headers
    ).json()["id"]
    _wait_hit(client, owner, word, gone)
    assert set(_hits(client, owner, word)) == {keep, gone}  # not the other workspace's task
    assert _hits(client, other_owner, word) == [elsewhere]
    assert set(_hits(client, editor, word)) == {keep, gone}
    assert client.delete(f"{url}/{gone}", headers=owner.headers).status_code == 204
    wait_until(lambda: _hits(client, owner, word) == [keep], INDEX_SECONDS, message="deleted task gone")
    # the title ranks above the description: ``keep`` has the word in its title
    r = client.delete(f"/api/workspaces/{wid}/members/{editor.id}", headers=owner.headers)
    assert r.status_code == 204, r.text
    assert _hits(client, editor, word) == []


def test_pages_and_errors(client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    word = _word()
    for i in range(5):
        client.post(f"/api/workspaces/{wid}/tasks", json={"title": f"{word} {i}"}, headers=owner.headers)
    wait_until(lambda: len(_hits(client, owner, word)) == 5, INDEX_SECONDS, message="five tasks indexed")
    first = _search(client, owner, word, limit=2)
    assert len(first["items"]) == 2 and first["next_cursor"]
    seen = [h["task_id"] for h in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = _search(client, owner, word, limit=2, cursor=cursor)
        seen += [h["task_id"] for h in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 5
    for params in ({"q": ""}, {"q": "x" * 201}, {"q": "  !! "}, {}, {"q": "a", "cursor": "x"}, {"q": "a", "limit": 0}):
        r = client.get("/api/search", params=params, headers=owner.headers)
        assert r.status_code == 422, (params, r.text)
        assert "detail" in r.json()
    assert client.get("/api/search", params={"q": "a"}).status_code == 401


def test_an_unindexed_workspace_is_built_on_first_search_and_by_plait_reindex(
    make_server: Callable[..., ThreadServer],
) -> None:
    """A workspace from before the index (no rows, no state) is built from its document when first searched;
    ``plait reindex`` rebuilds every workspace from the stored documents."""
    srv = make_server("sqlite")
    url = srv.settings.resolved_database_url()
    with httpx.Client(base_url=srv.base_url) as http:
        wid, owner, _ = workspace_with(http)
        word = _word()
        tid = http.post(f"/api/workspaces/{wid}/tasks", json={"title": word}, headers=owner.headers).json()["id"]
        _wait_hit(http, owner, word, tid)
    srv.stop()
    _wipe_index(url)
    done = subprocess.run(
        [sys.executable, "-m", "api", "reindex"],
        env={**os.environ, "PLAIT_DATABASE_URL": url, "PLAIT_DATA_DIR": str(srv.settings.data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "indexed 1 task(s) of 1 workspace(s)" in done.stderr
    assert query(url, "SELECT task_id FROM task_index") == [(tid,)]
    _wipe_index(url)
    again = make_server("sqlite", database_url=url)
    with httpx.Client(base_url=again.base_url) as http:
        assert _hits(http, owner, word) == [tid]  # built at the query, no waiting


def _wipe_index(url: str) -> None:
    """Back to a database from before the index existed (the statements of a writer, once)."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM task_index"))
                await conn.execute(text("DELETE FROM task_index_state"))
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_a_member_added_later_finds_existing_tasks(client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    word = _word()
    tid = client.post(f"/api/workspaces/{wid}/tasks", json={"title": word}, headers=owner.headers).json()["id"]
    _wait_hit(client, owner, word, tid)
    newcomer = register(client, "newcomer")
    assert _hits(client, newcomer, word) == []
    add_member(client, wid, owner, newcomer, "viewer")
    assert _hits(client, newcomer, word) == [tid]
