"""Task model v2 — order, priority, labels, checklists, comments and mentions — through REST and real npm Yjs
clients against a running server (docs/document-schema.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.node import NodeClient, start_clients, wait_until
from tests.support.server import ThreadServer
from tests.support.sse import SseReader
from tests.support.users import Account, register, workspace_with


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def _tasks(client: httpx.Client, wid: str, acct: Account, **params: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _ok(client.get(f"/api/workspaces/{wid}/tasks", params=params, headers=acct.headers))
    return result


def _board(client: httpx.Client, wid: str, acct: Account, status: str = "todo") -> list[str]:
    return [t["title"] for t in _tasks(client, wid, acct, sort="rank") if t["status"] == status]


def _new(client: httpx.Client, wid: str, acct: Account, title: str, **fields: Any) -> dict[str, Any]:
    body = {"title": title, **fields}
    result: dict[str, Any] = _ok(client.post(f"/api/workspaces/{wid}/tasks", json=body, headers=acct.headers), 201)
    return result


@pytest.fixture
def pair(server: ThreadServer) -> Iterator[tuple[NodeClient, NodeClient]]:
    a, b = start_clients(2, prefix="v2")
    with a, b:
        yield a, b


# ---- REST ------------------------------------------------------------------------------------------------


@pytest.mark.db_agnostic
def test_labels_priority_and_checklist_over_rest(client: httpx.Client) -> None:
    wid, owner, (viewer,) = workspace_with(client, "viewer")
    base = f"/api/workspaces/{wid}"
    bug = _ok(client.post(f"{base}/labels", json={"name": "Bug", "color": "#ff0000"}, headers=owner.headers), 201)
    ui = _ok(client.post(f"{base}/labels", json={"name": "UI"}, headers=owner.headers), 201)
    assert ui["color"] == "#6b7280"
    assert client.post(f"{base}/labels", json={"name": "bug"}, headers=owner.headers).status_code == 409
    assert client.post(f"{base}/labels", json={"name": "X", "color": "red"}, headers=owner.headers).status_code == 422
    assert client.post(f"{base}/labels", json={"name": "X"}, headers=viewer.headers).status_code == 403
    assert [x["name"] for x in _ok(client.get(f"{base}/labels", headers=viewer.headers))] == ["Bug", "UI"]

    task = _new(
        client,
        wid,
        owner,
        "Crash on save",
        priority="urgent",
        labels=[bug["id"], ui["id"]],
        checklist=[{"text": "Reproduce"}, {"text": "Fix", "done": True}],
    )
    assert task["priority"] == "urgent" and task["labels"] == [bug["id"], ui["id"]]
    assert task["progress"] == {"done": 1, "total": 2} and [i["text"] for i in task["checklist"]] == [
        "Reproduce",
        "Fix",
    ]
    assert task["rank"] and task["comments"] == [] and task["comment_count"] == 0
    tid = task["id"]
    unknown = client.post(f"{base}/tasks", json={"title": "x", "labels": ["nope"]}, headers=owner.headers)
    assert unknown.status_code == 422 and "label" in unknown.json()["detail"]
    assert client.post(f"{base}/tasks", json={"title": "x", "priority": "p0"}, headers=owner.headers).status_code == 422
    assert client.patch(f"{base}/tasks/{tid}", json={"priority": None}, headers=owner.headers).status_code == 422

    patched = _ok(
        client.patch(f"{base}/tasks/{tid}", json={"labels": [ui["id"]], "priority": "low"}, headers=owner.headers)
    )
    assert patched["labels"] == [ui["id"]] and patched["priority"] == "low"
    renamed = _ok(client.patch(f"{base}/labels/{ui['id']}", json={"name": "Frontend"}, headers=owner.headers))
    assert renamed["name"] == "Frontend" and renamed["color"] == "#6b7280"
    assert client.patch(f"{base}/labels/{ui['id']}", json={"name": "Bug"}, headers=owner.headers).status_code == 409

    # checklist items: add, tick, rename, delete; progress follows
    items = f"{base}/tasks/{tid}/checklist"
    item = _ok(client.post(items, json={"text": "Test"}, headers=owner.headers), 201)
    assert item["done"] is False
    _ok(client.patch(f"{items}/{item['id']}", json={"done": True}, headers=owner.headers))
    assert _ok(client.get(f"{base}/tasks/{tid}", headers=viewer.headers))["progress"] == {"done": 2, "total": 3}
    assert (
        _ok(client.patch(f"{items}/{item['id']}", json={"text": "Test it"}, headers=owner.headers))["text"] == "Test it"
    )
    assert client.patch(f"{items}/{item['id']}", json={"done": None}, headers=owner.headers).status_code == 422
    assert client.post(items, json={"text": "x"}, headers=viewer.headers).status_code == 403
    assert client.delete(f"{items}/{item['id']}", headers=owner.headers).status_code == 204
    assert client.delete(f"{items}/{item['id']}", headers=owner.headers).status_code == 404
    assert [i["text"] for i in _ok(client.get(items, headers=viewer.headers))] == ["Reproduce", "Fix"]

    # deleting a label takes it off every task
    assert client.delete(f"{base}/labels/{ui['id']}", headers=owner.headers).status_code == 204
    assert _ok(client.get(f"{base}/tasks/{tid}", headers=owner.headers))["labels"] == []
    assert client.delete(f"{base}/labels/{ui['id']}", headers=owner.headers).status_code == 404


@pytest.mark.db_agnostic
def test_move_orders_tasks_within_and_between_columns(client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    ids = {t: _new(client, wid, owner, t)["id"] for t in ("A", "B", "C", "D")}
    assert _board(client, wid, owner) == ["A", "B", "C", "D"]
    move = f"/api/workspaces/{wid}/tasks/{{}}/move"
    _ok(client.post(move.format(ids["D"]), json={"position": 0}, headers=owner.headers))
    assert _board(client, wid, owner) == ["D", "A", "B", "C"]
    _ok(client.post(move.format(ids["A"]), json={"after_id": ids["C"]}, headers=owner.headers))
    assert _board(client, wid, owner) == ["D", "B", "C", "A"]
    _ok(client.post(move.format(ids["C"]), json={"before_id": ids["D"]}, headers=owner.headers))
    assert _board(client, wid, owner) == ["C", "D", "B", "A"]
    done = _ok(client.post(move.format(ids["B"]), json={"status": "done"}, headers=owner.headers))
    assert done["status"] == "done" and done["completed_at"] is not None
    assert _board(client, wid, owner) == ["C", "D", "A"] and _board(client, wid, owner, "done") == ["B"]
    _ok(client.post(move.format(ids["A"]), json={"status": "done", "position": 0}, headers=owner.headers))
    assert _board(client, wid, owner, "done") == ["A", "B"]
    back = _ok(client.post(move.format(ids["A"]), json={"before_id": ids["C"]}, headers=owner.headers))
    assert back["status"] == "todo" and back["completed_at"] is None
    assert _board(client, wid, owner) == ["A", "C", "D"]

    both = client.post(move.format(ids["A"]), json={"position": 1, "after_id": ids["C"]}, headers=owner.headers)
    assert both.status_code == 422
    other = client.post(move.format(ids["A"]), json={"status": "done", "after_id": ids["C"]}, headers=owner.headers)
    assert other.status_code == 422
    assert client.post(move.format(ids["A"]), json={"before_id": ids["A"]}, headers=owner.headers).status_code == 422
    assert client.post(move.format("nope"), json={}, headers=owner.headers).status_code == 404


@pytest.mark.db_agnostic
def test_filters_and_sorts(client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    label = _ok(client.post(f"/api/workspaces/{wid}/labels", json={"name": "L"}, headers=owner.headers), 201)["id"]
    _new(client, wid, owner, "low-late", priority="low", due_date="2027-03-01")
    _new(client, wid, owner, "urgent-soon", priority="urgent", due_date="2027-01-01", labels=[label])
    _new(client, wid, owner, "none-undated")
    titles = lambda **p: [t["title"] for t in _tasks(client, wid, owner, **p)]  # noqa: E731
    assert titles(priority="urgent") == ["urgent-soon"]
    assert titles(label=label) == ["urgent-soon"]
    assert titles(due_after="2027-01-01") == ["low-late"]
    assert titles(due_before="2027-03-01", due_after="2026-12-31") == ["urgent-soon"]
    assert titles(sort="priority") == ["urgent-soon", "low-late", "none-undated"]
    assert titles(sort="due_date") == ["urgent-soon", "low-late", "none-undated"]
    assert titles(sort="updated_at")[0] == "none-undated"
    for bad in ({"priority": "p1"}, {"due_after": "soon"}, {"sort": "title"}):
        r = client.get(f"/api/workspaces/{wid}/tasks", params=bad, headers=owner.headers)
        assert r.status_code == 422 and "detail" in r.json()


@pytest.mark.db_agnostic
def test_comment_authorship_over_rest(client: httpx.Client) -> None:
    wid, owner, (alice, bob, admin, viewer) = workspace_with(client, "editor", "editor", "admin", "viewer")
    tid = _new(client, wid, owner, "Discuss")["id"]
    comments = f"/api/workspaces/{wid}/tasks/{tid}/comments"
    c = _ok(client.post(comments, json={"body": "  I'll take it  "}, headers=alice.headers), 201)
    assert c["author_id"] == alice.id and c["body"] == "I'll take it" and c["edited_at"] is None
    assert client.post(comments, json={"body": "me too"}, headers=viewer.headers).status_code == 403
    assert client.post(comments, json={"body": ""}, headers=alice.headers).status_code == 422
    assert client.post(comments, json={"body": "x", "author_id": bob.id}, headers=alice.headers).status_code == 422
    forbidden = client.patch(f"{comments}/{c['id']}", json={"body": "mine now"}, headers=bob.headers)
    assert forbidden.status_code == 403 and "author" in forbidden.json()["detail"]
    assert client.delete(f"{comments}/{c['id']}", headers=bob.headers).status_code == 403
    edited = _ok(client.patch(f"{comments}/{c['id']}", json={"body": "I'll take it tomorrow"}, headers=alice.headers))
    assert edited["edited_at"] is not None and edited["author_id"] == alice.id
    moderated = _ok(client.patch(f"{comments}/{c['id']}", json={"body": "[removed]"}, headers=admin.headers))
    assert moderated["author_id"] == alice.id
    c2 = _ok(client.post(comments, json={"body": "second"}, headers=bob.headers), 201)
    listed = _ok(client.get(comments, headers=viewer.headers))
    assert [x["body"] for x in listed] == ["[removed]", "second"]
    assert _ok(client.get(f"/api/workspaces/{wid}/tasks/{tid}", headers=viewer.headers))["comment_count"] == 2
    assert client.delete(f"{comments}/{c2['id']}", headers=bob.headers).status_code == 204
    assert client.delete(f"{comments}/{c['id']}", headers=owner.headers).status_code == 204
    assert client.delete(f"{comments}/{c['id']}", headers=owner.headers).status_code == 404
    assert client.get(f"/api/workspaces/{wid}/tasks/nope/comments", headers=viewer.headers).status_code == 404


# ---- live clients ----------------------------------------------------------------------------------------


def _client_order(node: NodeClient, status: str = "todo") -> list[str]:
    tasks = node.tasks()
    col = [(t["rank"], tid) for tid, t in tasks.items() if t.get("status") == status]
    return [tid for _, tid in sorted(col)]


@pytest.mark.node
def test_concurrent_moves_from_two_clients_converge(
    server: ThreadServer, client: httpx.Client, pair: tuple[NodeClient, NodeClient]
) -> None:
    a, b = pair
    wid, owner, (editor,) = workspace_with(client, "editor")
    ids = [_new(client, wid, owner, t)["id"] for t in "ABCDEF"]
    for node, acct in ((a, owner), (b, editor)):
        node.connect(f"{server.ws_url}/sync", wid, acct.token)
        node.wait_synced(10)
        wait_until(lambda n=node: len(n.tasks()) == 6, 10)
        node.call("disconnect")
    # offline, both move: the same task to different places, two tasks to the same place, one across columns
    a.call("moveTask", task_id=ids[0], after_id=ids[5])
    b.call("moveTask", task_id=ids[0], before_id=ids[2])
    a.call("moveTask", task_id=ids[3], before_id=ids[1])
    b.call("moveTask", task_id=ids[4], before_id=ids[1])
    b.call("moveTask", task_id=ids[5], status="in_progress")
    a.call("reconnect")
    b.call("reconnect")
    wait_until(lambda: _client_order(a) == _client_order(b) and len(_client_order(a)) == 5, 10, message="converged")
    order = _client_order(a)
    assert sorted(order) == sorted(ids[:5])  # no task lost, none twice
    # REST shows the same board order
    wait_until(lambda: [t["id"] for t in _tasks(client, wid, owner, sort="rank") if t["status"] == "todo"] == order, 15)
    assert _client_order(a, "in_progress") == [ids[5]] == _client_order(b, "in_progress")


@pytest.mark.node
def test_forged_and_foreign_comment_changes_are_repaired_for_everyone(
    server: ThreadServer, client: httpx.Client, pair: tuple[NodeClient, NodeClient]
) -> None:
    a, b = pair
    wid, owner, (alice, bob) = workspace_with(client, "editor", "editor")
    tid = _new(client, wid, owner, "Thread")["id"]
    a.connect(f"{server.ws_url}/sync", wid, alice.token)
    b.connect(f"{server.ws_url}/sync", wid, bob.token)
    for n in (a, b):
        n.wait_synced(10)
        wait_until(lambda n=n: tid in n.tasks(), 10)

    def comments(n: NodeClient) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = n.tasks()[tid]["comments"]
        return result

    # Alice claims Bob wrote it: the server makes her the author, for both clients and REST
    cid = a.call("addComment", task_id=tid, body="signed by bob", author_id=bob.id)["id"]
    for n in (a, b):
        wait_until(lambda n=n: [c["author_id"] for c in comments(n)] == [alice.id], 10, message="author repaired")
    rest = _ok(client.get(f"/api/workspaces/{wid}/tasks/{tid}/comments", headers=owner.headers))
    assert [(c["id"], c["author_id"], c["body"]) for c in rest] == [(cid, alice.id, "signed by bob")]

    # Bob edits, re-attributes and deletes Alice's comment: each is undone for everyone
    b.call("editComment", task_id=tid, comment_id=cid, body="bob was here")
    for n in (a, b):
        wait_until(lambda n=n: [c["body"] for c in comments(n)] == ["signed by bob"], 10, message="edit undone")
    b.call("setCommentField", task_id=tid, comment_id=cid, field="author_id", value=bob.id)
    for n in (a, b):
        wait_until(lambda n=n: [c["author_id"] for c in comments(n)] == [alice.id], 10, message="author kept")
    b.call("deleteComment", task_id=tid, comment_id=cid)
    for n in (a, b):
        wait_until(lambda n=n: [c["id"] for c in comments(n)] == [cid], 10, message="delete undone")
    assert comments(a)[0]["body"] == "signed by bob" and comments(a)[0]["author_id"] == alice.id

    # her own edit and delete stand
    a.call("editComment", task_id=tid, comment_id=cid, body="edited by alice")
    wait_until(lambda: [c["body"] for c in comments(b)] == ["edited by alice"], 10)
    a.call("deleteComment", task_id=tid, comment_id=cid)
    wait_until(lambda: comments(b) == [], 10)
    wait_until(
        lambda: _ok(client.get(f"/api/workspaces/{wid}/tasks/{tid}", headers=owner.headers))["comments"] == [], 5
    )
    assert comments(a) == []


def _stream(server: ThreadServer, acct: Account) -> SseReader:
    return SseReader(f"{server.base_url}/api/notifications/stream?token={acct.token}")


def _notes(client: httpx.Client, acct: Account, type_: str) -> list[dict[str, Any]]:
    items = _ok(client.get("/api/notifications", headers=acct.headers))["items"]
    return [n for n in items if n["type"] == type_]


@pytest.mark.node
def test_mentions_typed_in_a_live_client_notify_once_and_reach_the_stream(
    server: ThreadServer, client: httpx.Client, pair: tuple[NodeClient, NodeClient]
) -> None:
    a, _ = pair
    wid, owner, (bee, assignee) = workspace_with(client, "editor", "editor")
    stranger = register(client, "stranger")
    tid = _new(client, wid, owner, "Plan", assignee_id=assignee.id)["id"]
    a.connect(f"{server.ws_url}/sync", wid, owner.token)
    a.wait_synced(10)
    wait_until(lambda: tid in a.tasks(), 10)
    with _stream(server, bee) as sse:
        assert sse.wait_open() == 200
        # typed into the description in pieces, like a person with autocomplete would finish it
        mention = f"@[Bee](user:{bee.id})"
        for piece in ("Ask ", mention[:10], mention[10:], " and ", f"@[Me](user:{owner.id})"):
            a.insert_text(tid, len(a.tasks()[tid]["description"]), piece)
        pushed = sse.wait_event(lambda e: e.event == "notification" and e.json()["type"] == "mentioned").json()
        assert (
            pushed["task_id"] == tid and pushed["actor"]["id"] == owner.id and pushed["data"]["source"] == "description"
        )
        # more typing elsewhere in the text does not mention her again
        a.insert_text(tid, 0, "Please: ")
        comment = f"thoughts, @[Bee](user:{bee.id})? cc @[S](user:{stranger.id})"
        a.call("addComment", task_id=tid, body=comment, author_id=owner.id)
        second = sse.wait_event(lambda e: e.event == "notification" and e.json()["data"].get("source") == "comment")
        assert second.json()["data"]["comment"]["excerpt"].startswith("thoughts")
    wait_until(lambda: len(_notes(client, assignee, "commented")) == 1, 10, message="assignee told of the comment")
    mentions = _notes(client, bee, "mentioned")
    assert sorted(n["data"]["source"] for n in mentions) == ["comment", "description"]
    assert _notes(client, bee, "commented") == []  # mentioned in the comment: not told twice
    assert _notes(client, owner, "mentioned") == []  # never for self-mentions
    assert client.get("/api/notifications", headers=stranger.headers).json()["items"] == []  # nor non-members


@pytest.mark.node
def test_a_v1_document_is_upgraded_in_place(
    server: ThreadServer, client: httpx.Client, pair: tuple[NodeClient, NodeClient]
) -> None:
    """Tasks written by the previous release (no rank, priority, labels, checklist, comments) get defaults with
    one server change at the document's first change; the column order they had (by creation) is kept."""
    a, b = pair
    wid, owner, _ = workspace_with(client)
    a.connect(f"{server.ws_url}/sync", wid, owner.token)
    a.wait_synced(10)
    ops = [
        {"cmd": "createTask", "title": t, "v1": True, "created_at": f"2026-01-0{d}T00:00:00.000Z"}
        for t, d in (("second", 2), ("first", 1), ("third", 3))
    ]
    a.call("batch", ops=ops)
    wait_until(lambda: all(t.get("rank") for t in a.tasks().values()) and len(a.tasks()) == 3, 10, message="upgraded")
    b.connect(f"{server.ws_url}/sync", wid, owner.token)
    b.wait_synced(10)
    wait_until(lambda: len(b.tasks()) == 3, 10)
    for t in b.tasks().values():
        assert t["priority"] == "none" and t["labels"] == [] and t["checklist"] == [] and t["comments"] == []
    assert b.map("meta") == {"schema_version": 2}
    assert _board(client, wid, owner) == ["first", "second", "third"]
    # a later client-made task goes after them, and a move among them works
    tid = b.create_task("fourth")
    wait_until(lambda: _board(client, wid, owner) == ["first", "second", "third", "fourth"], 10)
    first = next(t["id"] for t in _tasks(client, wid, owner) if t["title"] == "first")
    b.call("moveTask", task_id=tid, before_id=first)
    wait_until(lambda: _board(client, wid, owner) == ["fourth", "first", "second", "third"], 10)


@pytest.mark.node
def test_labels_from_a_client_are_checked_and_deletion_reaches_every_task(
    server: ThreadServer, client: httpx.Client, pair: tuple[NodeClient, NodeClient]
) -> None:
    a, b = pair
    wid, owner, _ = workspace_with(client)
    t1, t2 = (_new(client, wid, owner, t)["id"] for t in ("one", "two"))
    a.connect(f"{server.ws_url}/sync", wid, owner.token)
    b.connect(f"{server.ws_url}/sync", wid, owner.token)
    for n in (a, b):
        n.wait_synced(10)
        wait_until(lambda n=n: len(n.tasks()) == 2, 10)
    lid = a.call("createLabel", name="  ", color="blue")["id"]
    wait_until(lambda: b.map("labels").get(lid) == {"id": lid, "name": "Label", "color": "#6b7280"}, 10)
    a.call("setLabels", task_id=t1, ids=[lid, "ghost", lid])
    a.call("setLabels", task_id=t2, ids=[lid])
    wait_until(lambda: b.tasks()[t1]["labels"] == [lid] and b.tasks()[t2]["labels"] == [lid], 10, message="cleaned")
    assert [x["name"] for x in _ok(client.get(f"/api/workspaces/{wid}/labels", headers=owner.headers))] == ["Label"]
    assert _tasks(client, wid, owner, label=lid)[0]["labels"] == [lid]
    # a client deletes only the definition: the server takes it off every task
    a.call("deleteLabel", id=lid)
    wait_until(lambda: b.tasks()[t1]["labels"] == [] == b.tasks()[t2]["labels"], 10, message="label removed")
    # checklist items from a client show as progress over REST
    item = a.call("addChecklistItem", task_id=t1, text="a")["id"]
    a.call("addChecklistItem", task_id=t1, text="b")
    a.call("setChecklistDone", task_id=t1, item_id=item, done=True)
    wait_until(
        lambda: (
            _ok(client.get(f"/api/workspaces/{wid}/tasks/{t1}", headers=owner.headers))["progress"]
            == {"done": 1, "total": 2}
        ),
        10,
    )


def test_task_list_q_searches_titles_descriptions_comments_and_checklists(client: httpx.Client) -> None:
    wid, owner, _ = workspace_with(client)
    a = _new(client, wid, owner, "Quarterly zebra report", priority="high")["id"]
    b = _new(client, wid, owner, "Other", description="mentions a zebra once")["id"]
    c = _new(client, wid, owner, "Third", checklist=[{"text": "feed the giraffe"}])["id"]
    _ok(
        client.post(
            f"/api/workspaces/{wid}/tasks/{c}/comments", json={"body": "zebra crossing"}, headers=owner.headers
        ),
        201,
    )

    def ids(**params: Any) -> list[str]:
        return [t["id"] for t in _tasks(client, wid, owner, **params)]

    wait_until(lambda: sorted(ids(q="zebra")) == sorted([a, b, c]), 10, message="indexed")
    assert ids(q="giraffe") == [c]
    assert ids(q="zebra", priority="high") == [a]
    assert ids(q="zebra", sort="priority")[0] == a
    assert ids(q="nothing-like-this") == []
    assert client.get(f"/api/workspaces/{wid}/tasks", params={"q": "x" * 201}, headers=owner.headers).status_code == 422


@pytest.mark.db_agnostic
def test_restoring_a_version_brings_back_labels_checklists_and_comments_under_their_authors(
    client: httpx.Client,
) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    base = f"/api/workspaces/{wid}"
    lid = _ok(client.post(f"{base}/labels", json={"name": "Keep"}, headers=owner.headers), 201)["id"]
    task = _new(client, wid, owner, "T", labels=[lid], checklist=[{"text": "a", "done": True}], priority="high")
    tid = task["id"]
    _ok(client.post(f"{base}/tasks/{tid}/comments", json={"body": "by the editor"}, headers=editor.headers), 201)
    before = _ok(client.get(f"{base}/tasks/{tid}", headers=owner.headers))
    version = _ok(client.post(f"{base}/versions", json={"label": "v"}, headers=owner.headers), 201)["id"]

    cid = before["comments"][0]["id"]
    assert client.delete(f"{base}/tasks/{tid}/comments/{cid}", headers=owner.headers).status_code == 204
    assert client.delete(f"{base}/labels/{lid}", headers=owner.headers).status_code == 204
    item = before["checklist"][0]["id"]
    _ok(client.patch(f"{base}/tasks/{tid}/checklist/{item}", json={"done": False}, headers=owner.headers))
    _ok(client.patch(f"{base}/tasks/{tid}", json={"priority": "low"}, headers=owner.headers))
    diff = _ok(client.get(f"{base}/versions/{version}/diff", headers=owner.headers))
    assert {"labels", "checklist", "comments", "priority"} <= set(diff["changed"][0]["fields"])

    _ok(client.post(f"{base}/versions/{version}/restore", headers=owner.headers))
    after = _ok(client.get(f"{base}/tasks/{tid}", headers=owner.headers))
    assert after["labels"] == [lid] and after["priority"] == "high" and after["progress"] == {"done": 1, "total": 1}
    assert [(c["id"], c["author_id"], c["body"]) for c in after["comments"]] == [(cid, editor.id, "by the editor")]
    assert [x["name"] for x in _ok(client.get(f"{base}/labels", headers=owner.headers))] == ["Keep"]
