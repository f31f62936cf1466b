"""The audit log on a real server, both databases: every recorded action appears with its actor, target and the
client address the trusted proxy reported (X-Forwarded-For), in the workspace's log (owners and admins) and the
instance's (instance admins), newest first with cursors; nothing can change an entry through the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from api.domain.audit import ACTIONS
from tests.support.admins import grant_admin
from tests.support.server import ThreadServer
from tests.support.users import Account, add_member, create_workspace, register

HOOK = {"url": "https://93.184.216.34/hook", "events": ["task.created"]}  # public address: never called here
PROXIED = "203.0.113.9"  # what the (trusted, loopback) proxy says the client is


def via_proxy(acct: Account, address: str = PROXIED) -> dict[str, str]:
    return {**acct.headers, "X-Forwarded-For": f"198.51.100.1, {address}"}


@pytest.fixture(scope="module")
def root(server: ThreadServer) -> Iterator[Account]:
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        acct = register(c, "root")
    grant_admin(server.settings, acct.email)
    yield acct


def entries(client: httpx.Client, path: str, acct: Account, **params: Any) -> list[dict[str, Any]]:
    """Every entry of a log, newest first, through its pages."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = client.get(
            path, params={**params, "limit": 3, **({"cursor": cursor} if cursor else {})}, headers=acct.headers
        )
        assert r.status_code == 200, r.text
        page = r.json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_every_workspace_action_is_recorded_with_actor_target_and_proxied_address(
    client: httpx.Client, root: Account
) -> None:
    owner, admin, editor = register(client, "owner"), register(client, "admin"), register(client, "editor")
    r = client.post("/api/workspaces", json={"name": "audited"}, headers=via_proxy(owner))
    wid = r.json()["id"]
    W = f"/api/workspaces/{wid}"
    assert client.patch(W, json={"name": "renamed"}, headers=via_proxy(owner)).status_code == 200
    add_member(client, wid, owner, admin, "admin")  # invite.created, member.joined (from the loopback peer)
    invite = client.post(f"{W}/invites", json={"role": "editor"}, headers=via_proxy(admin)).json()
    assert client.post(f"/api/invites/{invite['token']}/accept", headers=via_proxy(editor)).status_code == 200
    assert (
        client.patch(f"{W}/members/{editor.id}", json={"role": "viewer"}, headers=via_proxy(admin)).status_code == 200
    )
    spare = client.post(f"{W}/invites", json={"role": "viewer"}, headers=via_proxy(owner)).json()
    assert client.delete(f"{W}/invites/{spare['id']}", headers=via_proxy(owner)).status_code == 204
    hook = client.post(f"{W}/webhooks", json=HOOK, headers=via_proxy(admin)).json()
    assert client.delete(f"{W}/webhooks/{hook['id']}", headers=via_proxy(admin)).status_code == 204
    assert client.delete(f"{W}/members/{editor.id}", headers=via_proxy(admin)).status_code == 204
    assert client.delete(f"{W}/members/{admin.id}", headers=via_proxy(admin)).status_code == 204  # leaves

    log = entries(client, f"{W}/audit", owner)
    got = [(e["action"], e["actor"]["id"] if e["actor"] else None, e["target"]["id"], e["address"]) for e in log]
    assert got == list(
        reversed(
            [
                ("workspace.created", owner.id, wid, PROXIED),
                ("workspace.renamed", owner.id, wid, PROXIED),
                ("invite.created", owner.id, got[-3][2], "127.0.0.1"),  # add_member: no proxy header
                ("member.joined", admin.id, admin.id, "127.0.0.1"),
                ("invite.created", admin.id, invite["id"], PROXIED),
                ("member.joined", editor.id, editor.id, PROXIED),
                ("member.role_changed", admin.id, editor.id, PROXIED),
                ("invite.created", owner.id, spare["id"], PROXIED),
                ("invite.revoked", owner.id, spare["id"], PROXIED),
                ("webhook.created", admin.id, hook["id"], PROXIED),
                ("webhook.deleted", admin.id, hook["id"], PROXIED),
                ("member.removed", admin.id, editor.id, PROXIED),
                ("member.left", admin.id, admin.id, PROXIED),
            ]
        )
    )
    by_action = {e["action"]: e for e in log}
    assert by_action["member.role_changed"]["details"] == {"role": "viewer"}
    assert by_action["workspace.renamed"]["details"] == {"name": "renamed"}
    assert by_action["webhook.created"]["details"]["url"] == HOOK["url"]
    assert by_action["member.joined"]["actor"]["email"] in (admin.email, editor.email)
    assert all(e["workspace_id"] == wid and e["created_at"].endswith("Z") for e in log)
    assert "secret" not in str(log) and invite["token"] not in str(log)
    # one action at a time; the instance's log has the same entries
    only = entries(client, f"{W}/audit", owner, action="member.joined")
    assert [e["target"]["id"] for e in only] == [editor.id, admin.id]
    instance = entries(client, "/api/admin/audit", root, workspace_id=wid)
    assert [e["id"] for e in instance] == [e["id"] for e in log]


def test_account_admin_and_deletion_actions_are_in_the_instance_log(
    client: httpx.Client, root: Account, server: ThreadServer
) -> None:
    owner = register(client, "owner")
    made = client.post("/api/me/tokens", json={"name": "ci", "scopes": ["read"]}, headers=via_proxy(owner)).json()
    assert client.delete(f"/api/me/tokens/{made['id']}", headers=via_proxy(owner)).status_code == 204
    wid = create_workspace(client, owner, "doomed")
    assert client.delete(f"/api/workspaces/{wid}", headers=via_proxy(owner)).status_code == 204
    target = register(client, "target")
    assert client.post(f"/api/admin/users/{target.id}/disable", headers=via_proxy(root)).status_code == 200
    assert client.post(f"/api/admin/users/{target.id}/enable", headers=via_proxy(root)).status_code == 200
    grant_admin(server.settings, target.email)

    mine = entries(client, "/api/admin/audit", root, actor_id=owner.id)
    assert [(e["action"], e["target"]["id"], e["address"]) for e in mine] == [
        ("workspace.deleted", wid, PROXIED),
        ("workspace.created", wid, "127.0.0.1"),
        ("token.deleted", made["id"], PROXIED),
        ("token.created", made["id"], PROXIED),
    ]
    assert mine[3]["details"] == {"name": "ci", "scopes": ["read"]} and mine[3]["workspace_id"] is None
    # a deleted workspace's entries stay for the instance admins; its members cannot read them any more
    assert client.get(f"/api/workspaces/{wid}/audit", headers=owner.headers).status_code == 404
    about = entries(client, "/api/admin/audit", root, target_id=target.id)  # what happened to the account
    assert [(e["action"], e["actor"]) for e in about] == [
        ("admin.granted", None),  # the command line
        ("admin.user_enabled", {"id": root.id, "email": root.email}),
        ("admin.user_disabled", {"id": root.id, "email": root.email}),
    ]
    assert about[0]["details"] == {"email": target.email, "via": "command line"} and about[0]["address"] is None
    assert about[1]["address"] == PROXIED


def test_export_and_import_are_recorded(client: httpx.Client) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner, "exported")
    r = client.post(f"/api/workspaces/{wid}/tasks", json={"title": "t"}, headers=owner.headers)
    assert r.status_code == 201, r.text
    exported = client.get(f"/api/workspaces/{wid}/export", headers=via_proxy(owner))
    assert exported.status_code == 200, exported.text
    assert client.get(f"/api/workspaces/{wid}/export?format=yjs", headers=via_proxy(owner)).status_code == 200
    r = client.post(
        "/api/workspaces/import",
        content=exported.content,
        headers={**via_proxy(owner), "Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    copy = r.json()["id"]
    log = entries(client, f"/api/workspaces/{wid}/audit", owner, action="workspace.exported")
    assert [(e["details"], e["actor"]["id"], e["address"]) for e in log] == [
        ({"format": "yjs"}, owner.id, PROXIED),
        ({"format": "json"}, owner.id, PROXIED),
    ]
    [imported] = entries(client, f"/api/workspaces/{copy}/audit", owner, action="workspace.imported")
    assert imported["target"] == {"type": "workspace", "id": copy}
    assert imported["details"] == {"name": "exported", "tasks": 1} and imported["address"] == PROXIED


def test_workspace_log_is_for_owners_and_admins_and_cannot_be_changed(client: httpx.Client, root: Account) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    people = {role: register(client, role) for role in ("admin", "editor", "viewer")}
    for role, acct in people.items():
        add_member(client, wid, owner, acct, role)
    path = f"/api/workspaces/{wid}/audit"
    codes = {role: client.get(path, headers=acct.headers).status_code for role, acct in people.items()}
    assert codes == {"admin": 200, "editor": 403, "viewer": 403}
    entry = client.get(path, headers=owner.headers).json()["items"][0]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for url in (path, f"{path}/{entry['id']}", "/api/admin/audit", f"/api/admin/audit/{entry['id']}"):
            r = client.request(method, url, json={"action": "x"}, headers=root.headers)
            assert r.status_code in (404, 405), (method, url, r.status_code)
    assert client.get(path, headers=owner.headers).json()["items"][0] == entry
    paths = client.get("/openapi.json").json()["paths"]
    audit_ops = {p: set(ops) for p, ops in paths.items() if p.endswith("/audit")}
    assert audit_ops == {"/api/workspaces/{wid}/audit": {"get"}, "/api/admin/audit": {"get"}}
    assert client.get(path, params={"cursor": "nope"}, headers=owner.headers).status_code == 422


@pytest.mark.db_agnostic
def test_an_untrusted_peer_cannot_choose_its_address(make_server: Callable[..., ThreadServer]) -> None:
    """Without a trusted proxy (``PLAIT_FORWARDED_ALLOW_IPS`` empty) X-Forwarded-For is ignored: the entry has
    the peer's own address."""
    srv = make_server(forwarded_allow_ips="")
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        owner = register(c, "owner")
        wid = c.post("/api/workspaces", json={"name": "w"}, headers=via_proxy(owner)).json()["id"]
        [entry] = c.get(f"/api/workspaces/{wid}/audit", headers=owner.headers).json()["items"]
    assert entry["action"] == "workspace.created" and entry["address"] == "127.0.0.1"


def test_every_action_is_documented() -> None:
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "admin.md").read_text()
    assert [a for a in sorted(ACTIONS) if f"`{a}`" not in text] == []
