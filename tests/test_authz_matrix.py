"""Authorization matrix: every REST route x {anonymous, non-member, viewer, editor, admin, owner}.

Data-driven: a new route joins by appending a ``Case`` to ``CASES`` (``test_every_api_route_is_in_the_matrix``
fails until it does). Each case runs each actor against a freshly set-up workspace, so destructive routes
(deleting the workspace, removing a member) never affect another actor or another row.

Path placeholders: ``{wid}`` (the row's workspace), ``{owner_id}``, ``{admin_id}``, ``{editor_id}``,
``{viewer_id}``, ``{non_member_id}``, ``{invite_id}`` and ``{token}`` (an editor invite made by the owner),
``{unknown_wid}``, ``{owner_email}``, ``{password}`` (every account's), ``{unique}`` (fresh per call).
String values in ``body`` are formatted with the same placeholders. A case's ``setup`` may add more
(e.g. a task id) from the ready ``World``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.server import ThreadServer
from tests.support.users import Account, add_member, create_workspace, register

ACTORS = ("anonymous", "non_member", "viewer", "editor", "admin", "owner")

pytestmark = pytest.mark.db_agnostic  # authorization decisions and counters: the same SQL on both backends


@dataclass
class World:
    """One freshly prepared workspace with one member per role."""

    client: httpx.Client
    people: dict[str, Account]
    wid: str
    values: dict[str, str]


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expected: dict[str, int]
    body: dict[str, Any] | None = None
    setup: Callable[[World], dict[str, str]] | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def case(
    method: str,
    path: str,
    anonymous: int,
    non_member: int,
    viewer: int,
    editor: int,
    admin: int,
    owner: int,
    body: dict[str, Any] | None = None,
    setup: Callable[[World], dict[str, str]] | None = None,
) -> Case:
    expected = dict(zip(ACTORS, (anonymous, non_member, viewer, editor, admin, owner), strict=True))
    return Case(method, path, expected, body, setup)


W = "/api/workspaces/{wid}"


def _task(world: World) -> dict[str, str]:
    """``{task_id}``: a task the owner made through REST."""
    r = world.client.post(
        f"/api/workspaces/{world.wid}/tasks", json={"title": "t"}, headers=world.people["owner"].headers
    )
    assert r.status_code == 201, r.text
    return {"task_id": r.json()["id"]}


def _owner_note(world: World) -> dict[str, str]:
    """``{notification_id}``: one of the owner's notifications (the members joining in ``prepare``)."""
    r = world.client.get("/api/notifications", headers=world.people["owner"].headers)
    assert r.status_code == 200 and r.json()["items"], r.text
    return {"notification_id": r.json()["items"][0]["id"]}


def _version(world: World) -> dict[str, str]:
    """``{version_id}``: a named version the owner saved."""
    r = world.client.post(
        f"/api/workspaces/{world.wid}/versions", json={"label": "v"}, headers=world.people["owner"].headers
    )
    assert r.status_code == 201, r.text
    return {"version_id": r.json()["id"]}


def _label(world: World) -> dict[str, str]:
    """``{label_id}``: a label the owner made."""
    r = world.client.post(
        f"/api/workspaces/{world.wid}/labels", json={"name": "l"}, headers=world.people["owner"].headers
    )
    assert r.status_code == 201, r.text
    return {"label_id": r.json()["id"]}


def _item(world: World) -> dict[str, str]:
    """``{task_id}`` with ``{item_id}``: a checklist item on a task the owner made."""
    ids = _task(world)
    r = world.client.post(
        f"/api/workspaces/{world.wid}/tasks/{ids['task_id']}/checklist",
        json={"text": "i"},
        headers=world.people["owner"].headers,
    )
    assert r.status_code == 201, r.text
    return {**ids, "item_id": r.json()["id"]}


def _editor_comment(world: World) -> dict[str, str]:
    """``{task_id}`` with ``{comment_id}``: the editor's comment (authors and admins may change it)."""
    ids = _task(world)
    r = world.client.post(
        f"/api/workspaces/{world.wid}/tasks/{ids['task_id']}/comments",
        json={"body": "c"},
        headers=world.people["editor"].headers,
    )
    assert r.status_code == 201, r.text
    return {**ids, "comment_id": r.json()["id"]}


HOOK = {"url": "https://93.184.216.34/hook", "events": ["task.created"]}  # public address: never called here


def _webhook(world: World) -> dict[str, str]:
    """``{webhook_id}``: a webhook the owner registered."""
    r = world.client.post(f"/api/workspaces/{world.wid}/webhooks", json=HOOK, headers=world.people["owner"].headers)
    assert r.status_code == 201, r.text
    return {"webhook_id": r.json()["id"]}


def _own_accounts(world: World) -> dict[str, str]:
    """Fresh accounts for the row's actors: logging out or changing a password must not end the sessions of
    the accounts every other row uses."""
    world.people = {role: register(world.client, role) for role in world.people}
    return {}


def _refresh_token(world: World) -> dict[str, str]:
    """``{refresh_token}``: a new session of the owner's."""
    owner = world.people["owner"]
    r = world.client.post("/api/auth/login", json={"email": owner.email, "password": owner.password})
    assert r.status_code == 200, r.text
    return {"refresh_token": r.json()["refresh_token"]}


def _owner_token(world: World) -> dict[str, str]:
    """``{token_id}``: a personal access token of the owner's."""
    r = world.client.post(
        "/api/me/tokens", json={"name": "m", "scopes": ["read"]}, headers=world.people["owner"].headers
    )
    assert r.status_code == 201, r.text
    return {"token_id": r.json()["id"]}


def _owner_session(world: World) -> dict[str, str]:
    """``{session_id}``: a new session of the owner's (not the one the owner's requests use)."""
    owner = world.people["owner"]
    r = world.client.post("/api/auth/login", json={"email": owner.email, "password": owner.password})
    assert r.status_code == 200, r.text
    r = world.client.get("/api/me/sessions", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert r.status_code == 200, r.text
    return {"session_id": next(s["id"] for s in r.json() if s["current"])}


def _deletable(world: World) -> dict[str, str]:
    """Fresh accounts in the row's workspace for every role but the owner (whose deletion is refused: the last
    owner of a workspace with other members), so deleting them spares the accounts every other row uses."""
    world.people = dict(world.people)  # the module's accounts stay as they are
    owner = world.people["owner"]
    for role in ("non_member", "viewer", "editor", "admin"):
        world.people[role] = register(world.client, role)
        if role != "non_member":
            add_member(world.client, world.wid, owner, world.people[role], role)
    return {}


# fmt: off
CASES: list[Case] = [
    # accounts (public routes: the caller's token is irrelevant)
    case(
        "POST",
        "/api/auth/register",
        201, 201, 201, 201, 201, 201,
        body={"email": "m-{unique}@example.com", "password": "{password}", "display_name": "m"},
    ),
    case(
        "POST",
        "/api/auth/login",
        200, 200, 200, 200, 200, 200,
        body={"email": "{owner_email}", "password": "{password}"},
    ),
    case("GET", "/api/me", 401, 200, 200, 200, 200, 200),
    # sessions and the account (issue 25): always the caller's own
    case("POST", "/api/auth/refresh", 200, 200, 200, 200, 200, 200, body={"refresh_token": "{refresh_token}"},
         setup=_refresh_token),
    case("POST", "/api/auth/logout", 401, 204, 204, 204, 204, 204, setup=_own_accounts),
    case("POST", "/api/auth/logout-all", 401, 204, 204, 204, 204, 204, setup=_own_accounts),
    case("PATCH", "/api/me", 401, 200, 200, 200, 200, 200, body={"display_name": "m"}, setup=_own_accounts),
    case("POST", "/api/me/password", 401, 204, 204, 204, 204, 204,
         body={"current_password": "{password}", "new_password": "{password}"}, setup=_own_accounts),
    case("POST", "/api/me/tokens", 401, 201, 201, 201, 201, 201, body={"name": "m", "scopes": ["read"]}),
    case("GET", "/api/me/tokens", 401, 200, 200, 200, 200, 200),
    case("DELETE", "/api/me/tokens/{token_id}", 401, 404, 404, 404, 404, 204, setup=_owner_token),
    case("GET", "/api/me/sessions", 401, 200, 200, 200, 200, 200),
    case("DELETE", "/api/me/sessions/{session_id}", 401, 404, 404, 404, 404, 204, setup=_owner_session),
    # e-mail and the account's end (issue 25): reset is public and answers alike; the rest is the caller's own
    case("POST", "/api/auth/password-reset", 202, 202, 202, 202, 202, 202, body={"email": "r-{unique}@example.com"}),
    case("POST", "/api/auth/password-reset/confirm", 400, 400, 400, 400, 400, 400,
         body={"token": "plait_rst_{unique}", "new_password": "{password}"}),
    case("DELETE", "/api/me", 401, 204, 204, 204, 204, 409, setup=_deletable),
    case("GET", "/api/me/export", 401, 200, 200, 200, 200, 200),
    # workspaces
    case("GET", "/api/workspaces", 401, 200, 200, 200, 200, 200),
    case("POST", "/api/workspaces", 401, 201, 201, 201, 201, 201, body={"name": "new"}),
    case("GET", W, 401, 404, 200, 200, 200, 200),
    case("PATCH", W, 401, 404, 403, 403, 200, 200, body={"name": "renamed"}),
    case("DELETE", W, 401, 404, 403, 403, 403, 204),
    case("GET", "/api/workspaces/{unknown_wid}", 401, 404, 404, 404, 404, 404),
    # export (owners and admins) and import (anyone signed in: it creates the caller's own workspace)
    case("GET", W + "/export", 401, 404, 403, 403, 200, 200),
    case("POST", "/api/workspaces/import", 401, 201, 201, 201, 201, 201,
         body={"format": "plait.workspace", "workspace": {"name": "imported"}, "tasks": []}),
    # members
    case("GET", W + "/members", 401, 404, 200, 200, 200, 200),
    case("GET", "/api/workspaces/{unknown_wid}/members", 401, 404, 404, 404, 404, 404),
    case("PATCH", W + "/members/{viewer_id}", 401, 404, 403, 403, 200, 200, body={"role": "editor"}),
    case("PATCH", W + "/members/{editor_id}", 401, 404, 403, 403, 403, 200, body={"role": "owner"}),
    case("PATCH", W + "/members/{owner_id}", 401, 404, 403, 403, 403, 409, body={"role": "admin"}),
    case("PATCH", W + "/members/{non_member_id}", 401, 404, 403, 403, 404, 404, body={"role": "viewer"}),
    case("DELETE", W + "/members/{editor_id}", 401, 404, 403, 204, 204, 204),  # the editor leaves
    case("DELETE", W + "/members/{admin_id}", 401, 404, 403, 403, 204, 204),
    case("DELETE", W + "/members/{owner_id}", 401, 404, 403, 403, 403, 409),
    # invites
    case("POST", W + "/invites", 401, 404, 403, 403, 201, 201, body={"role": "viewer"}),
    case("GET", W + "/invites", 401, 404, 403, 403, 200, 200),
    case("DELETE", W + "/invites/{invite_id}", 401, 404, 403, 403, 204, 204),
    case("GET", "/api/invites/{token}", 200, 200, 200, 200, 200, 200),  # the public preview: the token is the key
    case("POST", "/api/invites/{token}/accept", 401, 200, 200, 200, 200, 200),
    # tasks (issue 4)
    case("GET", W + "/tasks", 401, 404, 200, 200, 200, 200),
    case("POST", W + "/tasks", 401, 404, 403, 201, 201, 201, body={"title": "m"}),
    case("GET", W + "/tasks/{task_id}", 401, 404, 200, 200, 200, 200, setup=_task),
    case("PATCH", W + "/tasks/{task_id}", 401, 404, 403, 200, 200, 200, body={"title": "x"}, setup=_task),
    case("DELETE", W + "/tasks/{task_id}", 401, 404, 403, 204, 204, 204, setup=_task),
    case("GET", W + "/tasks/{task_id}/activity", 401, 404, 200, 200, 200, 200, setup=_task),
    case("GET", W + "/activity", 401, 404, 200, 200, 200, 200),
    # task model v2 (issue 23): editors write; a comment is changed by its author or an admin/owner
    case("POST", W + "/tasks/{task_id}/move", 401, 404, 403, 200, 200, 200, body={"position": 0}, setup=_task),
    case("GET", W + "/labels", 401, 404, 200, 200, 200, 200),
    case("POST", W + "/labels", 401, 404, 403, 201, 201, 201, body={"name": "{unique}"}),
    case("PATCH", W + "/labels/{label_id}", 401, 404, 403, 200, 200, 200, body={"color": "#000000"}, setup=_label),
    case("DELETE", W + "/labels/{label_id}", 401, 404, 403, 204, 204, 204, setup=_label),
    case("GET", W + "/tasks/{task_id}/checklist", 401, 404, 200, 200, 200, 200, setup=_task),
    case("POST", W + "/tasks/{task_id}/checklist", 401, 404, 403, 201, 201, 201, body={"text": "i"}, setup=_task),
    case("PATCH", W + "/tasks/{task_id}/checklist/{item_id}", 401, 404, 403, 200, 200, 200, body={"done": True},
         setup=_item),
    case("DELETE", W + "/tasks/{task_id}/checklist/{item_id}", 401, 404, 403, 204, 204, 204, setup=_item),
    case("GET", W + "/tasks/{task_id}/comments", 401, 404, 200, 200, 200, 200, setup=_task),
    case("POST", W + "/tasks/{task_id}/comments", 401, 404, 403, 201, 201, 201, body={"body": "c"}, setup=_task),
    case("PATCH", W + "/tasks/{task_id}/comments/{comment_id}", 401, 404, 403, 200, 200, 200, body={"body": "e"},
         setup=_editor_comment),
    case("DELETE", W + "/tasks/{task_id}/comments/{comment_id}", 401, 404, 403, 204, 204, 204,
         setup=_editor_comment),
    # notifications: always the caller's own
    case("GET", "/api/notifications", 401, 200, 200, 200, 200, 200),
    case("POST", "/api/notifications/read-all", 401, 200, 200, 200, 200, 200),
    case("POST", "/api/notifications/{notification_id}/read", 401, 404, 404, 404, 404, 200, setup=_owner_note),
    case("GET", "/api/notifications/preferences", 401, 200, 200, 200, 200, 200),
    case("PUT", "/api/notifications/preferences", 401, 200, 200, 200, 200, 200, body={"task_assigned": True}),
    case("GET", "/api/notifications/stream", 401, 200, 200, 200, 200, 200),
    case("GET", "/api/notifications/preferences/email", 401, 200, 200, 200, 200, 200),
    case("PUT", "/api/notifications/preferences/email", 401, 200, 200, 200, 200, 200, body={"digest": True}),
    # search (issue 23): the caller's own workspaces only (without q: 422 once authenticated)
    case("GET", "/api/search", 401, 422, 422, 422, 422, 422),
    case("GET", "/api/search?q=t", 401, 200, 200, 200, 200, 200),
    # presence (issue 5) and document storage facts (issue 8)
    case("GET", W + "/presence", 401, 404, 200, 200, 200, 200),
    case("GET", W + "/document", 401, 404, 200, 200, 200, 200),
    # version history (issue 8): editors save, admins delete and restore
    case("GET", W + "/versions", 401, 404, 200, 200, 200, 200),
    case("POST", W + "/versions", 401, 404, 403, 201, 201, 201, body={"label": "v"}),
    case("GET", W + "/versions/{version_id}", 401, 404, 200, 200, 200, 200, setup=_version),
    case("GET", W + "/versions/{version_id}/diff", 401, 404, 200, 200, 200, 200, setup=_version),
    case("DELETE", W + "/versions/{version_id}", 401, 404, 403, 403, 204, 204, setup=_version),
    case("POST", W + "/versions/{version_id}/restore", 401, 404, 403, 403, 200, 200, setup=_version),
    # webhooks (issue 8): owners and admins only
    case("POST", W + "/webhooks", 401, 404, 403, 403, 201, 201, body=HOOK),
    case("GET", W + "/webhooks", 401, 404, 403, 403, 200, 200),
    case("DELETE", W + "/webhooks/{webhook_id}", 401, 404, 403, 403, 204, 204, setup=_webhook),
    case("GET", W + "/webhooks/{webhook_id}/deliveries", 401, 404, 403, 403, 200, 200, setup=_webhook),
    # audit log and instance administration (issue 25): a workspace's owners and admins read its log; no workspace
    # role makes an instance admin (that column, and admin-scoped tokens: tests/test_admin.py)
    case("GET", W + "/audit", 401, 404, 403, 403, 200, 200),
    case("GET", "/api/admin/users", 401, 403, 403, 403, 403, 403),
    case("POST", "/api/admin/users/{editor_id}/disable", 401, 403, 403, 403, 403, 403),
    case("POST", "/api/admin/users/{editor_id}/enable", 401, 403, 403, 403, 403, 403),
    case("GET", "/api/admin/workspaces", 401, 403, 403, 403, 403, 403),
    case("GET", "/api/admin/stats", 401, 403, 403, 403, 403, 403),
    case("GET", "/api/admin/audit", 401, 403, 403, 403, 403, 403),
]
# fmt: on


@pytest.fixture(scope="module")
def people(server: ThreadServer) -> dict[str, Account]:
    """The same accounts for every row (logins are slow by design); workspaces are per row and actor."""
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        return {role: register(c, role) for role in ACTORS if role != "anonymous"}


def prepare(client: httpx.Client, people: dict[str, Account]) -> World:
    owner = people["owner"]
    wid = create_workspace(client, owner, "matrix")
    for role in ("admin", "editor", "viewer"):
        add_member(client, wid, owner, people[role], role)
    r = client.post(f"/api/workspaces/{wid}/invites", json={"role": "editor"}, headers=owner.headers)
    assert r.status_code == 201, r.text
    values = {f"{role}_id": acct.id for role, acct in people.items()}
    values.update(wid=wid, invite_id=r.json()["id"], token=r.json()["token"], unknown_wid=str(uuid.uuid4()))
    values.update(owner_email=owner.email, password=owner.password, unique=uuid.uuid4().hex)
    return World(client, people, wid, values)


def fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    return value


def call(client: httpx.Client, c: Case, world: World, actor: str) -> httpx.Response:
    """One request; an endless response (an SSE stream) is closed after its status line."""
    headers = {} if actor == "anonymous" else world.people[actor].headers
    request = client.build_request(
        c.method, c.path.format(**world.values), json=fill(c.body, world.values), headers=headers
    )
    response = client.send(request, stream=True)
    try:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
    finally:
        response.close()
    return response


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_authorization_matrix(client: httpx.Client, people: dict[str, Account], c: Case) -> None:
    actual: dict[str, int] = {}
    read_only = c.method == "GET"  # a read leaves the world as it was: one world serves every actor
    world: World | None = None
    for actor in ACTORS:
        if world is None or not read_only:
            world = prepare(client, people)
            if c.setup is not None:
                world.values.update(c.setup(world))
        r = call(client, c, world, actor)
        actual[actor] = r.status_code
        if r.status_code >= 400:
            assert "detail" in r.json(), (actor, r.text)
        if not read_only:  # one owner makes a workspace per row and actor: stay under the owned-workspace quota
            client.delete(f"/api/workspaces/{world.wid}", headers=people["owner"].headers)
    if read_only and world is not None:
        client.delete(f"/api/workspaces/{world.wid}", headers=people["owner"].headers)
    assert actual == c.expected


def _route_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def test_every_api_route_is_in_the_matrix(client: httpx.Client) -> None:
    """A route under /api without a matrix row fails here: authorization is never left untested."""
    sample = {name: str(uuid.uuid4()) for name in re.findall(r"{(\w+)}", " ".join(c.path for c in CASES))}
    covered = [(c.method, c.path.format(**sample)) for c in CASES]
    missing = []
    for template, ops in client.get("/openapi.json").json()["paths"].items():
        if not template.startswith("/api/"):
            continue
        pattern = _route_pattern(template)
        for method in ops:
            if not any(m == method.upper() and pattern.match(p) for m, p in covered):
                missing.append(f"{method.upper()} {template}")
    assert not missing, f"add these routes to CASES in tests/test_authz_matrix.py: {missing}"
