"""Sign up, sign in, sign out, workspaces and invites, as a person does them in Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import expect

from tests.support.node import wait_until
from tests.support.server import SECRET
from tests.support.users import create_workspace, register

from .conftest import PHONE, Person

pytestmark = pytest.mark.browser


def test_sign_up_create_workspace_reload_sign_out_and_in(anonymous: Callable[..., Any], live_server: Any) -> None:
    page = anonymous()
    page.goto(live_server.base_url + "/")
    expect(page).to_have_url(re.compile(r"/signin$"))
    page.get_by_role("link", name="Create an account").click()
    email = f"ada-{time.time_ns()}@example.com"
    page.get_by_label("Display name").fill("Ada")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Your workspaces")).to_be_visible()

    page.get_by_label("Workspace name").fill("Launch plan")
    page.get_by_role("button", name="Create workspace").click()
    expect(page).to_have_url(re.compile(r"/w/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="Launch plan")).to_be_visible()

    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws) if "/sync/" in ws.url else None)
    page.reload()  # the token survives a reload
    expect(page.get_by_role("heading", name="Launch plan")).to_be_visible()
    board = page.url
    expect(page.get_by_label("Switch workspace")).to_have_value(board.rsplit("/", 1)[1])
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=20_000)

    page.route("**/api/auth/logout", lambda route: route.abort())  # the server never hears of this sign-out
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    # signed out, the board's socket (and the session's token it carries) is closed by the page itself
    assert sockets
    for ws in sockets:
        if not ws.is_closed():
            ws.wait_for_event("close", timeout=10_000)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("wrong password!")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    # back on the board that was open, live again
    expect(page).to_have_url(board)
    expect(page.get_by_role("heading", name="Launch plan")).to_be_visible()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=20_000)


def test_sign_up_errors_are_shown(anonymous: Callable[..., Any], live_server: Any, api: httpx.Client) -> None:
    taken = register(api, "taken")
    page = anonymous()
    page.goto(live_server.base_url + "/signup")
    page.get_by_label("Display name").fill("Bob")
    page.get_by_label("Email").fill(taken.email)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/signup$"))


def test_expired_token_sends_the_user_to_sign_in(
    anonymous: Callable[..., Any], live_server: Any, api: httpx.Client
) -> None:
    acc = register(api, "expired")
    past = int(time.time()) - 60
    token = jwt.encode({"sub": acc.id, "iat": past - 3600, "exp": past}, SECRET, algorithm="HS256")
    page = anonymous()
    page.goto(live_server.base_url + "/signin")
    page.evaluate("t => localStorage.setItem('plait.token', t)", token)
    page.goto(live_server.base_url + "/")
    expect(page).to_have_url(re.compile(r"/signin"))
    expect(page.get_by_text("Your session has expired")).to_be_visible()


def test_revoked_or_forged_token_on_a_request_signs_out(person: Callable[..., Person], api: httpx.Client) -> None:
    """A token the server refuses (401) — here one signed with another key — ends the session with a message."""
    acc = register(api, "forged")
    bad = jwt.encode(
        {"sub": acc.id, "iat": int(time.time()), "exp": int(time.time()) + 3600}, "x" * 64, algorithm="HS256"
    )
    acc.token = bad
    p = person("forged", account=acc)
    p.goto("/")
    expect(p.page).to_have_url(re.compile(r"/signin"))
    expect(p.page.get_by_text("Your session has expired")).to_be_visible()


def test_workspaces_list_create_and_switch(person: Callable[..., Person], api: httpx.Client) -> None:
    p = person("switcher")
    w1 = create_workspace(api, p.account, "Alpha")
    w2 = create_workspace(api, p.account, "Beta")
    p.goto("/")
    expect(p.page.get_by_role("link", name=re.compile("Alpha"))).to_be_visible()
    expect(p.page.get_by_role("link", name=re.compile("Beta"))).to_be_visible()
    p.page.get_by_role("link", name=re.compile("Alpha")).click()
    expect(p.page).to_have_url(re.compile(w1))
    p.page.get_by_label("Switch workspace").select_option(label="Beta")
    expect(p.page).to_have_url(re.compile(w2))
    expect(p.page.get_by_role("heading", name="Beta")).to_be_visible()
    p.shot("workspace-board-empty")


def test_invite_link_joins_a_new_user(
    person: Callable[..., Person], anonymous: Callable[..., Any], api: httpx.Client
) -> None:
    owner = person("Owner")
    wid = create_workspace(api, owner.account, "Team space")
    owner.goto(f"/w/{wid}/members")
    expect(owner.page.get_by_role("heading", name="Members of Team space")).to_be_visible()
    owner.page.get_by_label("Role for the invite").select_option("editor")
    owner.page.get_by_role("button", name="Create invite link").click()
    link = owner.page.get_by_test_id("invite-link").input_value()
    assert re.search(r"/invite/[\w-]{20,}$", link), link
    owner.page.get_by_role("button", name="Copy link").click()
    expect(owner.page.get_by_text(re.compile("Copied|Copying is not allowed"))).to_be_visible()
    expect(owner.page.get_by_test_id("invite-row")).to_have_count(1)
    owner.shot("members-and-invites")

    newbie = anonymous()
    newbie.goto(link)
    expect(newbie.get_by_text("Owner invited you to join “Team space” as an editor.")).to_be_visible()
    newbie.get_by_label("Display name").fill("Newbie")
    newbie.get_by_label("Email").fill(f"newbie-{time.time_ns()}@example.com")
    newbie.get_by_label("Password").fill("correct horse battery")
    newbie.get_by_role("button", name="Sign up").click()
    expect(newbie).to_have_url(re.compile(f"/w/{wid}$"))
    expect(newbie.get_by_role("heading", name="Team space")).to_be_visible()

    owner.page.reload()
    expect(owner.page.get_by_test_id("member-row").filter(has_text="Newbie")).to_be_visible()


def test_invite_link_for_an_existing_user_and_revoked_link(person: Callable[..., Person], api: httpx.Client) -> None:
    owner = person("Owner2")
    wid = create_workspace(api, owner.account, "Revokers")
    r = api.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.account.headers)
    invite = r.json()
    guest = person("Guest")
    guest.goto(f"/invite/{invite['token']}")
    expect(guest.page).to_have_url(re.compile(f"/w/{wid}$"))
    expect(guest.page.get_by_test_id("viewer-note")).to_be_visible()

    r = api.post(f"/api/workspaces/{wid}/invites", json={"role": "editor"}, headers=owner.account.headers)
    second = r.json()
    owner.goto(f"/w/{wid}/members")
    rows = owner.page.get_by_test_id("invite-row")
    expect(rows).to_have_count(2)
    rows.filter(has_text="Editor").get_by_role("button", name=re.compile("Revoke")).click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Viewer link · used 1")
    late = person("Late")
    late.goto(f"/invite/{second['token']}")
    expect(late.page.get_by_role("alert")).to_contain_text("not valid")


def test_members_roles_can_be_changed(person: Callable[..., Person], api: httpx.Client) -> None:
    owner = person("Boss")
    wid = create_workspace(api, owner.account, "Roles")
    other = register(api, "Worker")
    r = api.post(f"/api/workspaces/{wid}/invites", json={"role": "editor"}, headers=owner.account.headers)
    api.post(f"/api/invites/{r.json()['token']}/accept", headers=other.headers)
    owner.goto(f"/w/{wid}/members")
    owner.page.get_by_label("Role of Worker").select_option("viewer")
    expect(owner.page.get_by_label("Role of Worker")).to_have_value("viewer")
    members = api.get(f"/api/workspaces/{wid}/members", headers=owner.account.headers).json()
    assert {m["display_name"]: m["role"] for m in members}["Worker"] == "viewer"
    # demoting the last owner is refused by the server, and the UI says so
    owner.page.get_by_label("Role of Boss").select_option("editor")
    expect(owner.page.get_by_role("alert")).to_be_visible()


def test_phone_width_home(person: Callable[..., Person], api: httpx.Client) -> None:
    p = person("Phone", viewport=PHONE)
    create_workspace(api, p.account, "Pocket")
    p.goto("/")
    expect(p.page.get_by_role("link", name=re.compile("Pocket"))).to_be_visible()
    width = p.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page overflows a phone screen: {width}px"


def test_rename_and_delete_a_workspace(person: Callable[..., Person], api: httpx.Client) -> None:
    owner = person("Founder")
    wid = create_workspace(api, owner.account, "Draft name")
    member = person("Member")
    r = api.post(f"/api/workspaces/{wid}/invites", json={"role": "editor"}, headers=owner.account.headers)
    api.post(f"/api/invites/{r.json()['token']}/accept", headers=member.account.headers)
    member.goto(f"/w/{wid}")
    expect(member.page.get_by_role("heading", name="Draft name")).to_be_visible()

    owner.goto(f"/w/{wid}/members")
    owner.page.get_by_label("Workspace name", exact=True).fill("Final name")
    owner.page.get_by_role("button", name="Rename").click()
    expect(owner.page.get_by_role("heading", name="Members of Final name")).to_be_visible()
    expect(owner.page.get_by_label("Switch workspace").locator("option", has_text="Final name")).to_have_count(1)

    owner.page.get_by_role("button", name="Delete workspace").click()
    owner.page.get_by_role("alertdialog").get_by_role("button", name="Delete workspace").click()
    expect(owner.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    expect(owner.page.get_by_role("link", name=re.compile("Final name"))).to_have_count(0)
    member.page.evaluate("window.dispatchEvent(new Event('focus'))")
    expect(member.page.get_by_test_id("no-access")).to_be_visible()


def _short_token(api: httpx.Client, acc: Any, seconds: int) -> tuple[str, str]:
    """A real session's access token that expires in ``seconds``, and the session's refresh token."""
    r = api.post("/api/auth/login", json={"email": acc.email, "password": acc.password})
    assert r.status_code == 200, r.text
    sid = jwt.decode(r.json()["access_token"], SECRET, algorithms=["HS256"])["sid"]
    now = int(time.time())
    token = jwt.encode({"sub": acc.id, "sid": sid, "iat": now, "exp": now + seconds}, SECRET, algorithm="HS256")
    return token, r.json()["refresh_token"]


def test_token_expiring_while_the_board_is_open_signs_out(person: Callable[..., Person], api: httpx.Client) -> None:
    """Without a refresh token (or with one the server refuses) an expiring session ends with a message."""
    acc = register(api, "shortlived")
    acc.token, _ = _short_token(api, acc, 10)  # long enough for a loaded machine to draw the page first
    p = person("shortlived", account=acc)
    p.goto("/")
    expect(p.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    expect(p.page).to_have_url(re.compile(r"/signin"), timeout=25_000)
    expect(p.page.get_by_text("Your session has expired")).to_be_visible()


def _offline_past_expiry(person: Callable[..., Person], api: httpx.Client, name: str, title: str) -> tuple[Person, str]:
    """A board whose access token (15 s) expires while the browser is offline, with a task added meanwhile;
    returns the page, still offline, and its workspace."""
    acc = register(api, name)
    wid = create_workspace(api, acc, name)
    short, refresh = _short_token(api, acc, 15)
    acc.token = short
    p = person(name, account=acc)
    p.page.evaluate(f"localStorage.setItem('plait.refresh', {refresh!r})")
    p.goto(f"/w/{wid}")
    status = p.page.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "connected", timeout=20_000)
    p.context.set_offline(True)
    expect(status).to_have_attribute("data-state", "offline")
    assert p.page.evaluate("localStorage.getItem('plait.token')") == short, "renewed before going offline"
    p.page.get_by_label("New task title").fill(title)
    p.page.get_by_role("button", name="Add task").click()
    expiry = jwt.decode(short, SECRET, algorithms=["HS256"])["exp"]
    wait_until(lambda: time.time() > expiry + 1, timeout=30)
    return p, wid


def _renewed_and_synced(p: Person, api: httpx.Client, wid: str, title: str, timeout_ms: int) -> None:
    """Back online: connected again without a sign-in, with a new access token, and the offline task stored."""
    expect(p.page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=timeout_ms)
    expect(p.page).to_have_url(re.compile(f"/w/{wid}"))
    renewed = p.page.evaluate("localStorage.getItem('plait.token')")
    assert renewed and renewed != p.account.token
    headers = {"Authorization": f"Bearer {renewed}"}
    wait_until(
        lambda: any(t["title"] == title for t in api.get(f"/api/workspaces/{wid}/tasks", headers=headers).json()),
        timeout=20,
    )


@pytest.mark.slow
def test_offline_client_back_after_its_access_token_expired_renews_and_syncs(
    person: Callable[..., Person], api: httpx.Client
) -> None:
    """Offline past the access token's expiry: back online, the client renews with its refresh token (no sign-in
    page) and the edits made offline reach the server."""
    p, wid = _offline_past_expiry(person, api, "traveller", "Written while the token expired")
    p.context.set_offline(False)
    _renewed_and_synced(p, api, wid, "Written while the token expired", 20_000)


@pytest.mark.slow
def test_renewals_that_cannot_reach_the_server_do_not_sign_out(
    person: Callable[..., Person], api: httpx.Client
) -> None:
    """The network comes back slower than the browser says (the `online` event fires, the first requests still fail):
    a renewal that cannot reach the server is retried, never taken for an ended session; the socket refused for
    its expired token (4401) and the REST calls refused with 401 meanwhile do not sign the user out either."""
    p, wid = _offline_past_expiry(person, api, "tunnel", "Written in the tunnel")
    refused: list[str] = []

    def unreachable(route: Any) -> None:
        if len(refused) < 3:
            refused.append(route.request.url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    p.page.route("**/api/auth/refresh", unreachable)
    p.context.set_offline(False)
    _renewed_and_synced(p, api, wid, "Written in the tunnel", 30_000)
    assert len(refused) == 3


def test_a_dead_invite_link_says_so_before_asking_to_sign_up(
    person: Callable[..., Person], anonymous: Callable[..., Any], api: httpx.Client
) -> None:
    owner = person("Inviter")
    wid = create_workspace(api, owner.account, "Closed club")
    once = api.post(
        f"/api/workspaces/{wid}/invites", json={"role": "viewer", "max_uses": 1}, headers=owner.account.headers
    )
    used = register(api, "first")
    assert api.post(f"/api/invites/{once.json()['token']}/accept", headers=used.headers).status_code == 200
    revoked = api.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.account.headers).json()
    api.delete(f"/api/workspaces/{wid}/invites/{revoked['id']}", headers=owner.account.headers)

    stranger = anonymous()
    stranger.goto(f"{owner.base_url}/invite/{once.json()['token']}")
    expect(stranger.get_by_role("alert")).to_contain_text("already been used")
    expect(stranger.get_by_label("Password")).to_have_count(0)  # no sign-up form for a dead link
    stranger.goto(f"{owner.base_url}/invite/{revoked['token']}")
    expect(stranger.get_by_role("alert")).to_contain_text("not valid")
    expect(stranger.get_by_role("button", name="Go to Plait")).to_be_visible()

    owner.goto(f"/w/{wid}/members")
    expect(owner.page.get_by_test_id("invite-dead")).to_have_text(re.compile("used up"))
