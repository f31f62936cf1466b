"""The administration page (/admin) and the account page's session list, as people use them in Chromium: an
instance admin finds accounts (search, pages), disables one (whose open board is signed out at once) and enables
it again, and sees workspaces and statistics; anyone else gets "not available". The audit log shows the disable
just done, filters by action and pages with "Load more", and narrows to one account's or one workspace's entries
(a row's "Audit log" button, a cell of the log) until its chip is removed; the account list shows only disabled or
only active accounts. On the account page a user signs
another device out, and that device's open board is signed out. axe-core finds nothing serious on either page."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.admins import grant_admin
from tests.support.users import add_member, create_workspace, register

from .conftest import PHONE, Person
from .test_a11y import axe_source, serious  # noqa: F401 (axe_source: the fixture)
from .test_live import open_board
from .test_mobile import NO_SIDEWAYS_SCROLL

pytestmark = pytest.mark.browser


@pytest.fixture
def root(person: Callable[..., Person], live_server: Any) -> Person:
    """A person who is an instance administrator."""
    admin = person("Root")
    grant_admin(live_server.settings, admin.account.email)
    return admin


def test_admin_finds_disables_and_enables_an_account(
    person: Callable[..., Person],
    api: httpx.Client,
    live_server: Any,
    axe_source: str,  # noqa: F811
) -> None:
    root = person("Root")
    root.goto("/")  # the account is cached in this browser before it becomes an administrator
    expect(root.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    expect(root.page.get_by_role("link", name="Admin")).to_have_count(0)
    grant_admin(live_server.settings, root.account.email)
    tag = uuid.uuid4().hex[:8]
    for n in range(26):  # more than a page (25) of accounts that match the search
        r = api.post(
            "/api/auth/register",
            json={"email": f"pg{tag}-{n:02}@example.com", "password": "correct horse battery", "display_name": "p"},
        )
        assert r.status_code == 201, r.text
    victim = person(f"victim{tag}")
    wid = create_workspace(api, victim.account, f"Victim's board {tag}")
    open_board(victim, wid)

    root.page.reload()  # no new sign-in needed: the next page load reads the account again
    expect(root.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    root.page.get_by_role("navigation", name="Account").get_by_role("link", name="Admin").click()
    expect(root.page).to_have_url(re.compile(r"/admin$"))
    expect(root.page.get_by_role("heading", name="Administration")).to_be_visible()
    expect(root.page.get_by_test_id("admin-stats")).to_contain_text("Accounts")
    expect(root.page.get_by_test_id("admin-workspace-row").first).to_be_visible()

    accounts = root.page.get_by_role("search", name="Search accounts")
    accounts.get_by_label("Search accounts").fill(f"pg{tag}")
    accounts.get_by_role("button", name="Search").click()
    rows = root.page.get_by_test_id("admin-user-row")
    expect(rows).to_have_count(25)
    root.page.get_by_role("button", name="Show more accounts").click()
    expect(rows).to_have_count(26)
    expect(root.page.get_by_role("button", name="Show more accounts")).to_have_count(0)

    spaces = root.page.get_by_role("search", name="Search workspaces")
    spaces.get_by_label("Search workspaces").fill(tag)
    spaces.get_by_role("button", name="Search").click()
    space = root.page.get_by_test_id("admin-workspace-row")
    expect(space).to_have_count(1)
    expect(space).to_contain_text(f"Victim's board {tag}")
    expect(space).to_contain_text(re.compile(r"\d+ (B|KB)"))

    accounts.get_by_label("Search accounts").fill(root.account.email)
    accounts.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Admin")
    # no disabling oneself (the API would refuse: 409); only the row's "Audit log" button
    expect(rows.get_by_role("button", name=re.compile("^(Disable|Enable)"))).to_have_count(0)
    expect(rows.get_by_role("button")).to_have_count(1)

    accounts.get_by_label("Search accounts").fill(victim.account.email)
    accounts.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Active")
    root.page.get_by_role("button", name=f"Disable {victim.account.email}").click()
    expect(root.page.get_by_role("alertdialog")).to_be_visible()
    found = serious(root.page, axe_source, "admin confirm dialog")
    root.page.get_by_role("alertdialog").get_by_role("button", name="Cancel").click()
    expect(rows).to_contain_text("Active")
    root.page.get_by_role("button", name=f"Disable {victim.account.email}").click()
    root.page.get_by_role("alertdialog").get_by_role("button", name="Disable account").click()
    expect(rows).to_contain_text("Disabled")
    expect(root.page.get_by_test_id("admin-stats")).to_contain_text("Disabled accounts")

    # the disabled account's open board is signed out (its socket closed 4401, renewing fails)
    expect(victim.page).to_have_url(re.compile(r"/signin"), timeout=20_000)
    assert api.get("/api/me", headers=victim.account.headers).status_code == 401

    root.page.get_by_role("button", name=f"Enable {victim.account.email}").click()
    expect(rows).to_contain_text("Active")
    r = api.post("/api/auth/login", json={"email": victim.account.email, "password": victim.account.password})
    assert r.status_code == 200, r.text

    found += serious(root.page, axe_source, "admin")
    assert not found, "\n".join(found)

    # on a phone the page fits the screen (the tables become stacked rows)
    root.page.set_viewport_size(PHONE)
    expect(root.page.get_by_role("button", name=f"Disable {victim.account.email}")).to_be_in_viewport()
    assert root.page.evaluate(NO_SIDEWAYS_SCROLL), root.page.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
    )


def test_admin_reads_the_audit_log(
    root: Person,
    api: httpx.Client,
    axe_source: str,  # noqa: F811
) -> None:
    """The log is the whole instance's, shared by every test of the session: each check looks for this test's own
    entries (its accounts' emails) among the newest of one action."""
    victim = register(api, "Victim")
    maker = register(api, "Maker")
    victim_email, maker_email = victim.email.lower(), maker.email.lower()  # as the server keeps them
    wid = create_workspace(api, maker, "Invites galore")
    for _ in range(26):  # one more invite.created than a page (25)
        r = api.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=maker.headers)
        assert r.status_code == 201, r.text

    root.goto("/admin")
    audit = root.page.get_by_role("region", name="Audit log")
    rows = audit.get_by_test_id("audit-row")
    expect(rows.first).to_contain_text("invite.created")
    expect(rows.first).to_contain_text(maker_email)

    accounts = root.page.get_by_role("search", name="Search accounts")
    accounts.get_by_label("Search accounts").fill(victim.email)
    accounts.get_by_role("button", name="Search").click()
    expect(root.page.get_by_test_id("admin-user-row")).to_have_count(1)
    root.page.get_by_role("button", name=f"Disable {victim.email}").click()
    root.page.get_by_role("alertdialog").get_by_role("button", name="Disable account").click()

    # the disable just done is the newest entry, without reloading: who, what, to whom, from where
    newest = rows.first
    expect(newest).to_contain_text("admin.user_disabled")
    expect(newest).to_contain_text("Account disabled")
    expect(newest).to_contain_text(root.account.email.lower())  # the actor
    expect(newest).to_contain_text(victim_email)  # the target
    expect(newest).to_contain_text("127.0.0.1")

    action = audit.get_by_label("Action")
    action.select_option("admin.user_disabled")
    expect(audit.get_by_role("table")).to_have_accessible_name(re.compile("Account disabled"))
    expect(rows.filter(has_not_text="admin.user_disabled")).to_have_count(0)
    expect(rows.first).to_contain_text(victim_email)

    action.select_option("invite.created")
    mine = rows.filter(has_text=maker_email)
    expect(mine).to_have_count(25)
    expect(rows.filter(has_not_text="invite.created")).to_have_count(0)
    audit.get_by_role("button", name="Load more entries").click()
    expect(mine).to_have_count(26)
    expect(mine.first).to_contain_text("For viewer, unlimited uses")

    found = serious(root.page, axe_source, "admin audit log")
    assert not found, "\n".join(found)
    root.page.set_viewport_size(PHONE)  # each entry a stack of labelled lines, nothing wider than the screen
    address = mine.last.locator("td[data-label='Client address']")
    expect(address).to_be_visible()
    assert "Client address" in address.evaluate("td => getComputedStyle(td, '::before').content")
    assert root.page.evaluate(NO_SIDEWAYS_SCROLL)


def test_admin_shows_only_disabled_or_only_active_accounts(
    root: Person,
    api: httpx.Client,
    axe_source: str,  # noqa: F811
) -> None:
    tag = uuid.uuid4().hex[:8]
    active = [register(api, f"show{tag}") for _ in range(2)]
    off = register(api, f"show{tag}")
    r = api.post(f"/api/admin/users/{off.id}/disable", headers=root.account.headers)
    assert r.status_code == 200, r.text

    root.goto("/admin")
    rows = root.page.get_by_test_id("admin-user-row")
    expect(rows.first).to_be_visible()
    # the statistics' figure shows the disabled accounts (of the whole instance: other tests' too)
    root.page.get_by_test_id("admin-stats").get_by_role("button", name="show the disabled accounts").click()
    show = root.page.get_by_role("search", name="Search accounts").get_by_label("Show")
    expect(show).to_have_value("disabled")
    expect(root.page.get_by_role("heading", name="Accounts")).to_be_focused()
    expect(rows.filter(has_text=off.email.lower())).to_have_count(1)
    expect(rows.filter(has_not_text="Disabled")).to_have_count(0)

    accounts = root.page.get_by_role("search", name="Search accounts")
    accounts.get_by_label("Search accounts").fill(f"show{tag}")
    accounts.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(off.email.lower())
    expect(root.page.get_by_role("table", name=f"Disabled accounts matching “show{tag}”")).to_be_visible()

    show.select_option(label="Active")  # applies at once, to the same search
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Disabled")).to_have_count(0)
    for account in active:
        expect(rows.filter(has_text=account.email.lower())).to_have_count(1)
    show.select_option(label="All accounts")
    expect(rows).to_have_count(3)

    found = serious(root.page, axe_source, "admin accounts filter")
    assert not found, "\n".join(found)
    root.page.set_viewport_size(PHONE)
    expect(show).to_be_in_viewport()
    assert root.page.evaluate(NO_SIDEWAYS_SCROLL)


def test_admin_narrows_the_audit_log_to_one_account(
    root: Person,
    api: httpx.Client,
    axe_source: str,  # noqa: F811
) -> None:
    """Ann's four entries (two workspaces, two invites), then Bob's one: the log shows Ann's only until her chip
    goes."""
    ann, bob = register(api, "Ann"), register(api, "Bob")
    ann_email, bob_email = ann.email.lower(), bob.email.lower()
    wid = create_workspace(api, ann, "Ann's first")
    create_workspace(api, ann, "Ann's second")
    for _ in range(2):
        r = api.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=ann.headers)
        assert r.status_code == 201, r.text
    create_workspace(api, bob, "Bob's")

    root.goto("/admin")
    audit = root.page.get_by_role("region", name="Audit log")
    rows = audit.get_by_test_id("audit-row")
    expect(rows.first).to_contain_text(bob_email)
    accounts = root.page.get_by_role("search", name="Search accounts")
    accounts.get_by_label("Search accounts").fill(ann.email)
    accounts.get_by_role("button", name="Search").click()
    expect(root.page.get_by_test_id("admin-user-row")).to_have_count(1)
    root.page.get_by_role("button", name=f"Audit log entries by {ann_email}").click()

    expect(root.page.get_by_role("heading", name="Audit log")).to_be_focused()
    chip = audit.get_by_role("button", name=f"Remove the filter Actor: {ann_email}")
    expect(chip).to_be_visible()
    expect(chip).to_have_text(f"Actor: {ann_email} \N{MULTIPLICATION SIGN}")
    expect(audit.get_by_role("table")).to_have_accessible_name(re.compile(f"by {re.escape(ann_email)}"))
    expect(rows).to_have_count(4)
    expect(rows.filter(has_not_text=ann_email)).to_have_count(0)

    action = audit.get_by_label("Action")  # the action filter narrows it further
    action.select_option("invite.created")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_not_text="invite.created")).to_have_count(0)
    action.select_option("")
    expect(rows).to_have_count(4)

    found = serious(root.page, axe_source, "admin audit log by account")
    chip.click()
    expect(chip).to_have_count(0)
    expect(action).to_be_focused()
    expect(rows.first).to_contain_text(bob_email)  # everyone's entries again, newest first
    expect(rows.filter(has_text=ann_email)).to_have_count(4)
    assert not found, "\n".join(found)


def test_admin_reads_what_happened_to_one_account(root: Person, api: httpx.Client) -> None:
    """A target cell narrows the log to the entries about that account (GET /api/admin/audit?target_id=): who
    disabled and enabled it, not what it did itself."""
    cat = register(api, "Cat")
    cat_email = cat.email.lower()
    create_workspace(api, cat, "Cat's")  # by Cat, about a workspace: not shown
    for step in ("disable", "enable"):
        r = api.post(f"/api/admin/users/{cat.id}/{step}", headers=root.account.headers)
        assert r.status_code == 200, r.text

    root.goto("/admin")
    audit = root.page.get_by_role("region", name="Audit log")
    rows = audit.get_by_test_id("audit-row")
    expect(rows.first).to_contain_text("admin.user_enabled")
    rows.first.get_by_role("button", name=f"Show only entries about {cat_email}").click()
    chip = audit.get_by_role("button", name=f"Remove the filter About: {cat_email}")
    expect(chip).to_be_visible()
    expect(audit.get_by_role("table")).to_have_accessible_name(re.compile(f"about {re.escape(cat_email)}"))
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("admin.user_enabled")
    expect(rows.nth(1)).to_contain_text("admin.user_disabled")
    chip.click()
    expect(rows.filter(has_text="workspace.created").first).to_be_visible()


def test_admin_narrows_the_audit_log_to_one_workspace(
    root: Person,
    api: httpx.Client,
    axe_source: str,  # noqa: F811
) -> None:
    """A workspace's three entries (created, an invite, Bob joining by it) from its row, then Bob's among them from a
    cell of the log; removing the workspace's chip leaves Bob's entries everywhere, removing his leaves everyone's."""
    tag = uuid.uuid4().hex[:8]
    ann, bob = register(api, "Ann"), register(api, "Bob")
    bob_email = bob.email.lower()
    shared = f"Shared {tag}"
    wid = create_workspace(api, ann, shared)
    add_member(api, wid, ann, bob, "editor")
    create_workspace(api, bob, f"Bob's own {tag}")
    create_workspace(api, ann, f"Elsewhere {tag}")

    root.goto("/admin")
    audit = root.page.get_by_role("region", name="Audit log")
    rows = audit.get_by_test_id("audit-row")
    expect(rows.first).to_contain_text(f"Elsewhere {tag}")
    spaces = root.page.get_by_role("search", name="Search workspaces")
    spaces.get_by_label("Search workspaces").fill(shared)
    spaces.get_by_role("button", name="Search").click()
    expect(root.page.get_by_test_id("admin-workspace-row")).to_have_count(1)
    root.page.get_by_role("button", name=f"Audit log entries in “{shared}”").click()

    place = audit.get_by_role("button", name=f"Remove the filter Workspace: “{shared}”")
    expect(place).to_be_visible()
    expect(rows).to_have_count(3)
    workspace_cells = rows.locator("td[data-label='Workspace']")
    expect(workspace_cells.filter(has_not_text=shared)).to_have_count(0)
    expect(rows.nth(0)).to_contain_text("member.joined")
    expect(rows.nth(2)).to_contain_text("workspace.created")

    # Bob's cell in the log narrows it to his entries in this workspace: both filters at once
    rows.nth(0).get_by_role("button", name=f"Show only entries by {bob_email}").click()
    who = audit.get_by_role("button", name=f"Remove the filter Actor: {bob_email}")
    expect(who).to_be_visible()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("member.joined")

    found = serious(root.page, axe_source, "admin audit log by workspace")
    root.page.set_viewport_size(PHONE)  # the chips wrap within the screen
    expect(who).to_be_in_viewport()
    assert root.page.evaluate(NO_SIDEWAYS_SCROLL)

    place.click()
    expect(place).to_have_count(0)
    expect(rows).to_have_count(2)  # Bob's own workspace too
    expect(rows.filter(has_text=f"Bob's own {tag}")).to_have_count(1)
    who.click()
    expect(audit.get_by_role("list", name="Audit log filters")).to_have_count(0)
    expect(rows.first).to_contain_text(f"Elsewhere {tag}")  # Ann's, the newest: everyone's entries again
    assert not found, "\n".join(found)


def test_the_admin_page_is_not_available_to_others(person: Callable[..., Person]) -> None:
    someone = person("Someone")
    someone.goto("/")
    expect(someone.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    expect(someone.page.get_by_role("navigation", name="Account").get_by_role("link", name="Account")).to_be_visible()
    expect(someone.page.get_by_role("link", name="Admin")).to_have_count(0)
    someone.goto("/admin")
    expect(someone.page.get_by_role("heading", name="Not available")).to_be_visible()
    expect(someone.page.get_by_test_id("admin-unavailable")).to_be_visible()
    someone.page.get_by_role("button", name="Go to your workspaces").click()
    expect(someone.page.get_by_role("heading", name="Your workspaces")).to_be_visible()


def test_signing_another_device_out_from_the_account_page(
    person: Callable[..., Person],
    api: httpx.Client,
    axe_source: str,  # noqa: F811
) -> None:
    owner = register(api, "Traveller")
    r = api.post(
        "/api/auth/login",
        json={"email": owner.email, "password": owner.password},
        headers={"User-Agent": "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"},
    )
    assert r.status_code == 200, r.text
    here = person("Traveller", owner)
    phone = person("Traveller", dataclasses.replace(owner, token=r.json()["access_token"]))
    wid = create_workspace(api, owner, "Trip")
    open_board(phone, wid)

    here.goto("/")
    here.page.get_by_role("link", name="Account").click()
    expect(here.page.get_by_role("heading", name="Account")).to_be_visible()
    rows = here.page.get_by_test_id("session-row")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="This device")).to_have_count(1)
    other = rows.filter(has_text="Firefox on Android")
    expect(other).to_contain_text("last active just now")
    found = serious(here.page, axe_source, "account")
    other.get_by_role("button", name=re.compile("^Sign out Firefox on Android")).click()
    expect(rows).to_have_count(1)
    expect(here.page.get_by_role("status").filter(has_text="Signed out Firefox on Android.")).to_be_visible()

    expect(phone.page).to_have_url(re.compile(r"/signin"), timeout=20_000)
    expect(phone.page.get_by_text("Your session has expired")).to_be_visible()
    assert api.get("/api/me", headers=owner.headers).status_code == 200  # this device stays signed in
    here.page.get_by_role("link", name="Notification preferences").click()
    expect(here.page.get_by_role("heading", name="Notification preferences")).to_be_visible()
    assert not found, "\n".join(found)
