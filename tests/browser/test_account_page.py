"""The account page (/settings/account) as people use it in Chromium: rename oneself (the header and a teammate's
open board show it), change the password (a wrong current one is refused; the right one signs the other devices
out), make a personal access token (shown once, works on REST, deleted it stops), sign out everywhere, switch the
e-mail digest on, export one's data and delete the account (refused while last owner of a shared workspace).
axe-core finds nothing serious, and the page fits a phone."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.users import Account, add_member, create_workspace, register

from .conftest import PHONE, Person
from .test_a11y import axe_source, serious  # noqa: F401 (axe_source: the fixture)
from .test_live import open_board
from .test_mobile import NO_SIDEWAYS_SCROLL

pytestmark = pytest.mark.browser


def second_session(api: httpx.Client, account: Account) -> Account:
    """The same account signed in once more (another device): its own session and access token."""
    r = api.post("/api/auth/login", json={"email": account.email, "password": account.password})
    assert r.status_code == 200, r.text
    return dataclasses.replace(account, token=r.json()["access_token"])


def open_account(p: Person) -> None:
    p.goto("/settings/account")
    expect(p.page.get_by_role("heading", name="Account", exact=True)).to_be_visible()


def test_rename_and_change_password(person: Callable[..., Person], api: httpx.Client) -> None:
    me = person("Ren")
    other_device = person("Ren", second_session(api, me.account))
    mate = person("Mate")
    wid = create_workspace(api, me.account, "Shared")
    add_member(api, wid, me.account, mate.account, "editor")
    open_board(mate, wid)
    open_board(other_device, wid)

    open_account(me)
    profile = me.page.get_by_role("form", name="Profile")
    expect(profile.get_by_label("Display name")).to_have_value("Ren")
    profile.get_by_label("Display name").fill("Ren Renamed")
    profile.get_by_role("button", name="Save name").click()
    expect(me.page.get_by_role("status").filter(has_text="Name saved.")).to_be_visible()
    expect(me.page.locator(".me-name")).to_have_text("Ren Renamed")
    # a teammate's open board re-reads the members: the new name is among the assignees
    expect(mate.page.get_by_label("Filter by assignee").locator("option", has_text="Ren Renamed")).to_have_count(1)
    assert api.get("/api/me", headers=me.account.headers).json()["display_name"] == "Ren Renamed"

    form = me.page.get_by_role("form", name="Change password")
    form.get_by_label("Current password").fill("not my password")
    form.get_by_label("New password", exact=True).fill("a much better one")
    form.get_by_label("Confirm new password").fill("a much better one!")
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("alert")).to_have_text("The new password and its confirmation don't match.")
    form.get_by_label("Confirm new password").fill("short")
    form.get_by_label("New password", exact=True).fill("short")
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("alert")).to_have_text("The new password needs at least 8 characters.")

    form.get_by_label("New password", exact=True).fill("a much better one")
    form.get_by_label("Confirm new password").fill("a much better one")
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("alert")).to_have_text("Current password is wrong")
    expect(me.page.get_by_test_id("session-row")).to_have_count(2)
    assert api.get("/api/me", headers=other_device.account.headers).status_code == 200

    form.get_by_label("Current password").fill(me.account.password)
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("status")).to_have_text("Password changed. Your other devices were signed out.")
    expect(form.get_by_label("Current password")).to_have_value("")
    expect(me.page.get_by_test_id("session-row")).to_have_count(1)
    expect(other_device.page).to_have_url(re.compile(r"/signin"), timeout=20_000)
    assert api.get("/api/me", headers=me.account.headers).status_code == 200  # this device stays
    old = api.post("/api/auth/login", json={"email": me.account.email, "password": me.account.password})
    assert old.status_code == 401, old.text
    new = api.post("/api/auth/login", json={"email": me.account.email, "password": "a much better one"})
    assert new.status_code == 200, new.text


def test_too_many_wrong_passwords_say_when_to_try_again(person: Callable[..., Person], api: httpx.Client) -> None:
    me = person("Guesser")
    for _ in range(5):  # the failures one address may make on one account (PLAIT_LOGIN_MAX_FAILURES_...)
        body = {"current_password": "guess", "new_password": "whatever it is"}
        r = api.post("/api/me/password", json=body, headers=me.account.headers)
        assert r.status_code == 403, r.text
    open_account(me)
    form = me.page.get_by_role("form", name="Change password")
    form.get_by_label("Current password").fill(me.account.password)  # right, but no longer checked
    form.get_by_label("New password", exact=True).fill("a much better one")
    form.get_by_label("Confirm new password").fill("a much better one")
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("alert")).to_have_text(re.compile(r"Try again in \d+ s\.$"))
    expect(form.get_by_role("status")).to_have_text("")


def test_personal_access_tokens(person: Callable[..., Person], api: httpx.Client) -> None:
    me = person("Scripter")
    me.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_account(me)
    tokens = me.page.get_by_role("region", name="Personal access tokens")
    expect(tokens.get_by_text("No tokens yet.")).to_be_visible()
    create = me.page.get_by_role("form", name="Create a token")
    create.get_by_label("Name").fill("CI deploy")
    create.get_by_label("Access").select_option("write")
    create.get_by_label("Expires after (days)").fill("0")
    create.get_by_role("button", name="Create token").click()
    expect(create.get_by_role("alert")).to_contain_text("a whole number of days")
    create.get_by_label("Expires after (days)").fill("30")
    create.get_by_role("button", name="Create token").click()

    shown = me.page.get_by_test_id("new-token")
    expect(shown).to_have_value(re.compile(r"^plait_pat_"))
    expect(me.page.get_by_text("you won't see it again")).to_be_visible()
    secret = shown.input_value()
    me.page.get_by_role("button", name="Copy token").click()
    expect(me.page.get_by_role("status").filter(has_text="Copied to the clipboard.")).to_be_visible()
    assert me.page.evaluate("navigator.clipboard.readText()") == secret
    rows = me.page.get_by_test_id("token-row")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("CI deploy")
    expect(rows).to_contain_text("Read and write")
    expect(rows).to_contain_text("never used")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/me", headers=bearer).status_code == 200
    me.page.get_by_role("button", name="Done, hide the token").click()
    expect(shown).to_have_count(0)
    me.page.reload()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(re.compile(r"last used just now · expires \S+"))
    expect(me.page.get_by_test_id("new-token")).to_have_count(0)  # shown once: never again

    me.page.get_by_role("button", name="Delete token CI deploy").click()
    dialog = me.page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("CI deploy")
    dialog.get_by_role("button", name="Cancel").click()
    expect(rows).to_have_count(1)
    me.page.get_by_role("button", name="Delete token CI deploy").click()
    me.page.get_by_role("alertdialog").get_by_role("button", name="Delete token").click()
    expect(rows).to_have_count(0)
    expect(tokens.get_by_text("No tokens yet.")).to_be_visible()
    assert api.get("/api/me", headers=bearer).status_code == 401


def test_sign_out_everywhere(person: Callable[..., Person], api: httpx.Client) -> None:
    me = person("Roamer")
    other_device = person("Roamer", second_session(api, me.account))
    other_device.goto("/")
    expect(other_device.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    open_account(me)
    expect(me.page.get_by_test_id("session-row")).to_have_count(2)
    me.page.get_by_role("button", name="Sign out everywhere").click()
    me.page.get_by_role("alertdialog").get_by_role("button", name="Cancel").click()
    expect(me.page.get_by_test_id("session-row")).to_have_count(2)
    me.page.get_by_role("button", name="Sign out everywhere").click()
    me.page.get_by_role("alertdialog").get_by_role("button", name="Sign out everywhere").click()
    expect(me.page).to_have_url(re.compile(r"/signin"))
    expect(me.page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(me.page.get_by_text("Your session has expired")).to_have_count(0)  # the user's choice, no warning
    assert api.get("/api/me", headers=me.account.headers).status_code == 401
    assert api.get("/api/me", headers=other_device.account.headers).status_code == 401
    other_device.page.reload()
    expect(other_device.page).to_have_url(re.compile(r"/signin"), timeout=20_000)


def test_digest_export_and_delete_account(
    person: Callable[..., Person],
    api: httpx.Client,
    axe_source: str,  # noqa: F811
) -> None:
    owner = person("Keeper")
    mate = register(api, "Crew")
    wid = create_workspace(api, owner.account, "Crew board")
    add_member(api, wid, owner.account, mate, "editor")
    open_account(owner)

    digest = owner.page.get_by_label("E-mail me a digest of unread notifications")
    expect(digest).not_to_be_checked()
    digest.check()
    expect(owner.page.get_by_role("status").filter(has_text="Digest on")).to_be_visible()
    assert api.get("/api/notifications/preferences/email", headers=owner.account.headers).json()["digest"] is True

    with owner.page.expect_download() as download:
        owner.page.get_by_role("button", name="Export my data").click()
    assert re.fullmatch(r"plait-my-data-\d{4}-\d\d-\d\d\.json", download.value.suggested_filename)
    data = json.loads(download.value.path().read_text())
    assert data["account"]["email"] == owner.account.email.lower()

    owner.page.get_by_role("button", name="Delete account…").click()
    dialog = owner.page.get_by_role("dialog", name="Delete your account")
    confirm = dialog.get_by_role("button", name="Delete my account")
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type your e-mail address to confirm").fill("someone@else.example")
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type your e-mail address to confirm").fill(owner.account.email.upper())
    found = serious(owner.page, axe_source, "account delete dialog")
    confirm.click()
    expect(dialog.get_by_role("alert")).to_contain_text("You are the last owner of “Crew board”")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert api.get("/api/me", headers=owner.account.headers).status_code == 200

    found += serious(owner.page, axe_source, "account")
    assert not found, "\n".join(found)

    # an account of its own workspaces only: deleted, signed out, cannot sign in again
    leaver = person("Leaver")
    create_workspace(api, leaver.account, "Solo")
    open_account(leaver)
    leaver.page.get_by_role("button", name="Delete account…").click()
    dialog = leaver.page.get_by_role("dialog", name="Delete your account")
    dialog.get_by_label("Type your e-mail address to confirm").fill(leaver.account.email)
    dialog.get_by_role("button", name="Delete my account").click()
    expect(leaver.page).to_have_url(re.compile(r"/signin"))
    expect(leaver.page.get_by_role("heading", name="Sign in")).to_be_visible()
    r = api.post("/api/auth/login", json={"email": leaver.account.email, "password": leaver.account.password})
    assert r.status_code == 401, r.text


def test_the_account_page_fits_a_phone(person: Callable[..., Person], api: httpx.Client) -> None:
    me = person("Pocket", viewport=PHONE)
    r = api.post(
        "/api/me/tokens",
        json={"name": "a rather long token name for a phone", "scopes": ["admin"]},
        headers=me.account.headers,
    )
    assert r.status_code == 201, r.text
    open_account(me)
    expect(me.page.get_by_test_id("token-row")).to_contain_text("Admin")
    expect(me.page.get_by_test_id("token-row")).to_contain_text("never used · never expires")
    me.page.get_by_role("form", name="Create a token").get_by_label("Name").fill("phone")
    me.page.get_by_role("button", name="Create token").click()
    expect(me.page.get_by_test_id("new-token")).to_be_visible()
    assert me.page.evaluate(NO_SIDEWAYS_SCROLL), me.page.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
    )
