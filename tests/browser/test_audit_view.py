"""A workspace's audit log on its members page, as people use it in Chromium: the owner opens the folded section
and reads who joined, with which invite and role, sees a role change made on the page at once, filters by action
and pages with "Load more"; an editor has no such section (the API would refuse: 403)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.users import add_member, create_workspace, register

from .conftest import PHONE, Person
from .test_a11y import axe_source, serious  # noqa: F401 (axe_source: the fixture)
from .test_mobile import NO_SIDEWAYS_SCROLL

pytestmark = pytest.mark.browser


def test_owner_reads_the_workspace_audit_log_and_an_editor_has_none(
    person: Callable[..., Person],
    api: httpx.Client,
    axe_source: str,  # noqa: F811
) -> None:
    owner = person("Owner")
    editor = person("Edna")
    pat = register(api, "Pat")
    wid = create_workspace(api, owner.account, "Audited")
    add_member(api, wid, owner.account, editor.account, "editor")
    add_member(api, wid, owner.account, pat, "viewer")

    owner.goto(f"/w/{wid}/members")
    expect(owner.page.get_by_role("heading", name="Members of Audited")).to_be_visible()
    fold = owner.page.get_by_role("button", name="Audit log", exact=True)
    expect(fold).to_have_attribute("aria-expanded", "false")
    fold.click()
    expect(fold).to_have_attribute("aria-expanded", "true")
    audit = owner.page.get_by_role("region", name="Audit log")
    rows = audit.get_by_test_id("audit-row")
    # newest first: Pat joined (by the viewer invite), the viewer invite, Edna joined, the editor invite, created
    expect(rows).to_have_count(5)
    expect(rows.nth(0)).to_contain_text("member.joined")
    expect(rows.nth(0)).to_contain_text("As viewer, via invite")
    expect(rows.nth(1)).to_contain_text("invite.created")
    expect(rows.nth(1)).to_contain_text("For viewer")
    expect(rows.nth(1)).to_contain_text(owner.account.email.lower())
    expect(rows.nth(4)).to_contain_text("workspace.created")
    expect(rows.nth(4)).to_contain_text("“Audited”")
    expect(audit.get_by_role("columnheader", name="Workspace")).to_have_count(0)  # it is this one

    # a role changed on this page is in the open log at once, its target named as the members list names it
    owner.page.get_by_label("Role of Pat").select_option("admin")
    expect(rows).to_have_count(6)
    expect(rows.first).to_contain_text("member.role_changed")
    expect(rows.first).to_contain_text("Pat")
    expect(rows.first).to_contain_text("Now admin")

    audit.get_by_label("Action").select_option("member.role_changed")
    expect(rows).to_have_count(1)
    expect(audit.get_by_label("Action").locator("option[value^='admin.']")).to_have_count(0)  # never a workspace's
    audit.get_by_label("Action").select_option("")

    for _ in range(20):  # 26 entries: one more than a page
        r = api.post(f"/api/workspaces/{wid}/invites", json={"role": "editor"}, headers=owner.account.headers)
        assert r.status_code == 201, r.text
    audit.get_by_role("button", name=re.compile("^Refresh")).click()
    expect(rows.filter(has_text="invite.created")).to_have_count(22)
    expect(rows).to_have_count(25)
    audit.get_by_role("button", name="Load more entries").click()
    expect(rows).to_have_count(26)
    expect(rows.last).to_contain_text("workspace.created")
    expect(audit.get_by_role("button", name="Load more entries")).to_have_count(0)

    found = serious(owner.page, axe_source, "members audit log")
    assert not found, "\n".join(found)
    owner.page.set_viewport_size(PHONE)
    expect(rows.first).to_be_visible()
    assert owner.page.evaluate(NO_SIDEWAYS_SCROLL)

    editor.goto(f"/w/{wid}/members")
    expect(editor.page.get_by_test_id("member-row")).to_have_count(3)
    expect(editor.page.get_by_role("button", name="Audit log")).to_have_count(0)
    expect(editor.page.get_by_role("region", name="Audit log")).to_have_count(0)
    assert api.get(f"/api/workspaces/{wid}/audit", headers=editor.account.headers).status_code == 403
