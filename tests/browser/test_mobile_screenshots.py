"""The README's screenshots (docs/screenshots/): light and dark, desktop and phone, taken from a real board with
two people. Opt-in (PLAIT_SCREENSHOTS=1), so the suite stays fast and a run never rewrites tracked files:

    PLAIT_SCREENSHOTS=1 .venv/bin/python -m pytest -q tests/browser/test_mobile_screenshots.py
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.users import add_member, create_workspace

from .conftest import PHONE, ROOT, Person
from .test_live import card, open_board

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.environ.get("PLAIT_SCREENSHOTS"), reason="opt-in: PLAIT_SCREENSHOTS=1"),
]

SHOTS = ROOT / "docs" / "screenshots"


def _seed(api: httpx.Client, wid: str, h: dict[str, str], assignee: str) -> None:
    labels = {}
    for name, color in (("design", "#7048e8"), ("backend", "#1971c2"), ("bug", "#e03131")):
        r = api.post(f"/api/workspaces/{wid}/labels", json={"name": name, "color": color}, headers=h)
        assert r.status_code == 201, r.text
        labels[name] = r.json()["id"]
    today = dt.date.today()
    tasks: list[dict[str, Any]] = [
        {
            "title": "Write the launch announcement",
            "priority": "high",
            "labels": [labels["design"]],
            "due_date": (today + dt.timedelta(days=1)).isoformat(),
            "assignee_id": assignee,
        },
        {
            "title": "Fix the login redirect loop",
            "priority": "urgent",
            "labels": [labels["bug"], labels["backend"]],
            "due_date": (today - dt.timedelta(days=2)).isoformat(),
        },
        {
            "title": "Collect feedback from the beta",
            "status": "in_progress",
            "priority": "medium",
            "checklist": [{"text": "Survey", "done": True}, {"text": "Interviews", "done": False}],
            "assignee_id": assignee,
        },
        {"title": "Migrate the database", "status": "in_progress", "labels": [labels["backend"]], "priority": "low"},
        {
            "title": "Pick the conference talks",
            "status": "done",
            "checklist": [{"text": "Shortlist", "done": True}, {"text": "Vote", "done": True}],
        },
        {"title": "Refresh the pricing page", "labels": [labels["design"]]},
    ]
    for t in tasks:
        r = api.post(f"/api/workspaces/{wid}/tasks", json=t, headers=h)
        assert r.status_code == 201, r.text


def _shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_retake_the_readme_screenshots(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Alice")
    b = person("Bob")
    wid = create_workspace(api, a.account, "Product launch")
    add_member(api, wid, a.account, b.account, "editor")
    _seed(api, wid, a.account.headers, b.account.id)
    open_board(a, wid)
    open_board(b, wid)
    expect(a.page.get_by_test_id("task-card")).to_have_count(6)
    for theme in ("light", "dark"):
        a.page.get_by_label("Theme").select_option(theme)
        _shoot(a.page, "board" if theme == "light" else "board-dark")

    a.page.get_by_label("Theme").select_option("light")
    title = "Write the launch announcement"
    card(a, title).get_by_role("button", name=re.compile("Open task")).click()
    card(b, title).get_by_role("button", name=re.compile("Open task")).click()
    a.page.get_by_test_id("description").click()
    b.page.get_by_test_id("description").click()
    b.page.keyboard.type("Announce on the blog and the newsletter; ")
    a.page.keyboard.type("Draft by **Friday**. ")
    expect(a.page.locator(".cm-ySelectionCaret")).to_have_count(1)
    _shoot(a.page, "task-detail")
    a.page.get_by_label("Theme").select_option("dark")
    _shoot(a.page, "task-detail-dark")

    phone = person("Alice on the phone", a.account, viewport=PHONE)
    open_board(phone, wid)
    expect(phone.page.get_by_role("tablist", name="Columns")).to_be_visible()
    _shoot(phone.page, "board-phone")
    phone.page.get_by_label("Theme").select_option("dark")
    phone.page.get_by_role("tab", name=re.compile("In progress")).click()
    _shoot(phone.page, "board-phone-dark")
