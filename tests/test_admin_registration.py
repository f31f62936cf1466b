"""Registration policy (``PLAIT_REGISTRATION``): open, invite-only (only with a usable invite, which the new
account then joins), closed; each refusal a 403 with a JSON body that says why."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from api.domain.registration import BAD_INVITE, CLOSED, NEEDS_INVITE
from tests.support.server import ThreadServer
from tests.support.users import create_workspace, register

pytestmark = pytest.mark.db_agnostic  # a policy decision and one conditional UPDATE (tested on both in invites)


def body(**extra: str) -> dict[str, str]:
    return {
        "email": f"new-{uuid.uuid4().hex[:8]}@example.com",
        "password": "correct horse battery",
        "display_name": "new",
        **extra,
    }


def test_closed_and_invite_only_refuse_and_an_invite_lets_one_in(make_server: Callable[..., ThreadServer]) -> None:
    opened = make_server()
    with httpx.Client(base_url=opened.base_url, timeout=30) as c:
        owner = register(c, "owner")
        wid = create_workspace(c, owner)
        once = c.post(f"/api/workspaces/{wid}/invites", json={"role": "editor", "max_uses": 1}, headers=owner.headers)
        revoked = c.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers).json()
        assert c.delete(f"/api/workspaces/{wid}/invites/{revoked['id']}", headers=owner.headers).status_code == 204
    opened.stop()
    url = opened.settings.resolved_database_url()

    closed = make_server(database_url=url, registration="closed")
    with httpx.Client(base_url=closed.base_url, timeout=30) as c:
        r = c.post("/api/auth/register", json=body())
        assert (r.status_code, r.json()) == (403, {"detail": CLOSED})
        r = c.post("/api/auth/register", json=body(invite_token=once.json()["token"]))
        assert r.status_code == 403  # not even with an invite
        r = c.post("/api/auth/login", json={"email": owner.email, "password": owner.password})
        assert r.status_code == 200  # existing accounts still sign in
    closed.stop()

    gated = make_server(database_url=url, registration="invite-only")
    with httpx.Client(base_url=gated.base_url, timeout=30) as c:
        r = c.post("/api/auth/register", json=body())
        assert (r.status_code, r.json()) == (403, {"detail": NEEDS_INVITE})
        for token in ("not-a-token", revoked["token"]):
            r = c.post("/api/auth/register", json=body(invite_token=token))
            assert (r.status_code, r.json()) == (403, {"detail": BAD_INVITE})
        newcomer = body(invite_token=once.json()["token"])
        r = c.post("/api/auth/register", json=newcomer)
        assert r.status_code == 201, r.text
        r = c.post("/api/auth/login", json={"email": newcomer["email"], "password": newcomer["password"]})
        token = r.json()["access_token"]
        mine = c.get("/api/workspaces", headers={"Authorization": f"Bearer {token}"}).json()
        assert [(w["id"], w["role"]) for w in mine] == [(wid, "editor")]  # joined with the invite's role
        # the invite is used up now: nobody else gets in with it, and no account is left behind
        late = body(invite_token=once.json()["token"])
        r = c.post("/api/auth/register", json=late)
        assert (r.status_code, r.json()) == (403, {"detail": BAD_INVITE})
        assert c.post("/api/auth/login", json={"email": late["email"], "password": late["password"]}).status_code == 401
        log = c.get(f"/api/workspaces/{wid}/audit", params={"action": "member.joined"}, headers=owner.headers).json()
        [joined] = log["items"]
        assert joined["details"] == {"role": "editor", "via": "registration"}
        assert joined["actor"]["email"] == newcomer["email"]


def test_open_registration_with_an_invite_joins_its_workspace(client: httpx.Client) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    invite = client.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers).json()
    r = client.post("/api/auth/register", json=body(invite_token=invite["token"]))
    assert r.status_code == 201, r.text
    members = client.get(f"/api/workspaces/{wid}/members", headers=owner.headers).json()
    assert {m["user_id"]: m["role"] for m in members}[r.json()["id"]] == "viewer"
    assert client.post("/api/auth/register", json=body(invite_token="")).status_code == 422


def test_the_setting_is_validated() -> None:
    from pydantic import ValidationError

    from persistence.settings import Settings

    with pytest.raises(ValidationError):
        Settings(registration="invite_only")  # type: ignore[arg-type]
