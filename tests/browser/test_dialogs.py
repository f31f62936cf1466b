"""Issue 24: leave, remove and delete ask with the app's own dialog (never window.confirm); sign-in returns to
the last board; the "No access" page offers no link the user cannot use."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.users import add_member, create_workspace

from .conftest import Person
from .test_live import open_board

pytestmark = pytest.mark.browser


def _no_native_dialogs(page: Any) -> list[str]:
    seen: list[str] = []

    def refuse(d: Any) -> None:
        seen.append(d.message)
        d.dismiss()

    page.on("dialog", refuse)
    return seen


def test_remove_leave_and_delete_ask_with_the_apps_dialog(person: Callable[..., Person], api: httpx.Client) -> None:
    owner = person("Owner")
    bob = person("Bob")
    carol = person("Carol")
    wid = create_workspace(api, owner.account, "Confirmed")
    add_member(api, wid, owner.account, bob.account, "editor")
    add_member(api, wid, owner.account, carol.account, "editor")
    native = _no_native_dialogs(owner.page) + _no_native_dialogs(carol.page)
    open_board(bob, wid)

    owner.goto(f"/w/{wid}/members")
    rows = owner.page.get_by_test_id("member-row")
    expect(rows).to_have_count(3)
    rows.filter(has_text="Bob").get_by_role("button", name=re.compile("Remove")).click()
    ask = owner.page.get_by_role("alertdialog")
    expect(ask).to_contain_text("Remove Bob from “Confirmed”?")
    expect(ask.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice first
    owner.page.keyboard.press("Escape")  # Escape cancels
    expect(ask).to_have_count(0)
    expect(rows).to_have_count(3)
    rows.filter(has_text="Bob").get_by_role("button", name=re.compile("Remove")).click()
    ask.get_by_role("button", name="Remove member").click()
    expect(rows).to_have_count(2)

    # the removed member's board turns into "No access", with no link into the workspace
    expect(bob.page.get_by_test_id("no-access")).to_be_visible()
    expect(bob.page.locator(f'a[href*="/w/{wid}"]')).to_have_count(0)
    expect(bob.page.get_by_role("link", name="Members")).to_have_count(0)
    bob.page.get_by_role("button", name="Go to your workspaces").click()
    expect(bob.page.get_by_role("heading", name="Your workspaces")).to_be_visible()

    # leaving: cancel keeps the membership, confirming leaves
    carol.goto(f"/w/{wid}/members")
    mine = carol.page.get_by_test_id("member-row").filter(has_text="(you)")
    mine.get_by_role("button", name="Leave").click()
    carol.page.get_by_role("alertdialog").get_by_role("button", name="Cancel").click()
    expect(carol.page.get_by_role("heading", name="Members of Confirmed")).to_be_visible()
    mine.get_by_role("button", name="Leave").click()
    expect(carol.page.get_by_role("alertdialog")).to_contain_text("Leave “Confirmed”?")
    carol.page.get_by_role("alertdialog").get_by_role("button", name="Leave workspace").click()
    expect(carol.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    assert api.get(f"/api/workspaces/{wid}", headers=carol.account.headers).status_code in (403, 404)

    # deleting the workspace: a click outside the dialog cancels, the button deletes
    owner.page.get_by_role("button", name="Delete workspace").click()
    expect(owner.page.get_by_role("alertdialog")).to_contain_text("This cannot be undone.")
    owner.page.mouse.click(5, 5)
    expect(owner.page.get_by_role("alertdialog")).to_have_count(0)
    assert api.get(f"/api/workspaces/{wid}", headers=owner.account.headers).status_code == 200
    owner.page.get_by_role("button", name="Delete workspace").click()
    owner.page.get_by_role("alertdialog").get_by_role("button", name="Delete workspace").click()
    expect(owner.page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    assert api.get(f"/api/workspaces/{wid}", headers=owner.account.headers).status_code == 404
    assert native == []


def test_sign_in_returns_to_the_last_board(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Returning")
    create_workspace(api, a.account, "Elsewhere")
    wid = create_workspace(api, a.account, "Where I was")
    open_board(a, wid)
    a.page.get_by_role("button", name="Sign out").click()
    expect(a.page).to_have_url(re.compile("/signin$"))
    a.page.get_by_label("Email").fill(a.account.email)
    a.page.get_by_label("Password").fill(a.account.password)
    a.page.get_by_role("button", name="Sign in").click()
    expect(a.page).to_have_url(re.compile(f"/w/{wid}$"))
    expect(a.page.get_by_role("heading", name="Where I was")).to_be_visible()
