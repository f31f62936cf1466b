"""Issue 24's smaller items: the tab title names the workspace, a too-long title is refused with a message (not
cut), the activity list does not claim "No activity" while it loads, and dark mode (system, or chosen)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.node import wait_until
from tests.support.users import create_workspace

from .conftest import Person
from .test_live import add_task, card, open_board, team

pytestmark = pytest.mark.browser


def test_the_tab_title_names_the_workspace(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Titled")
    first = create_workspace(api, a.account, "Roadmap 2027")
    second = create_workspace(api, a.account, "Hiring")
    open_board(a, first)
    expect(a.page).to_have_title("Roadmap 2027 · Plait")
    a.page.get_by_role("link", name="Members").click()
    expect(a.page).to_have_title("Members · Roadmap 2027 · Plait")
    a.page.get_by_label("Switch workspace").select_option(label="Hiring")
    expect(a.page).to_have_url(re.compile(f"/w/{second}$"))
    expect(a.page).to_have_title("Hiring · Plait")
    a.page.get_by_label("Switch workspace").select_option(label="All workspaces")
    expect(a.page).to_have_title("Plait")


def test_a_title_over_the_limit_is_refused_with_a_message_not_cut(
    person: Callable[..., Person], api: httpx.Client
) -> None:
    a, b, wid = team(person, api)
    too_long = "x" * 501
    a.page.get_by_label("New task title").fill(too_long)
    a.page.get_by_role("button", name="Add task").click()
    expect(a.page.get_by_test_id("title-error")).to_contain_text("501 characters (at most 500)")
    expect(a.page.get_by_label("New task title")).to_have_value(too_long)  # kept whole, to be shortened
    expect(a.page.get_by_test_id("task-card")).to_have_count(0)
    a.page.get_by_label("New task title").fill("x" * 500)  # exactly the limit is fine
    expect(a.page.get_by_test_id("title-error")).to_have_count(0)
    a.page.get_by_role("button", name="Add task").click()
    expect(card(b, "x" * 500)).to_be_visible()

    card(a, "x" * 500).get_by_role("button", name=re.compile("Open task")).click()
    title = a.page.get_by_label("Title", exact=True)
    title.fill("y" * 600)
    title.press("Enter")
    expect(a.page.get_by_test_id("title-error")).to_contain_text("600 characters (at most 500)")
    expect(title).to_have_value("y" * 600)
    expect(card(b, "x" * 500)).to_be_visible()  # nothing was saved, not even a cut-down title
    expect(b.page.get_by_test_id("task-card").filter(has_text="yyy")).to_have_count(0)
    tasks = api.get(f"/api/workspaces/{wid}/tasks", headers=a.account.headers).json()
    assert [t["title"] for t in (tasks["items"] if isinstance(tasks, dict) else tasks)] == ["x" * 500]


# Records whether the text ever appears in the page, however briefly (a flash between two renders).
WATCH_TEXT = """text => {
  window.__seen = false
  const check = () => { if (document.body.innerText.includes(text)) window.__seen = true }
  new MutationObserver(check).observe(document.body, { childList: true, subtree: true, characterData: true })
}"""


def test_no_flash_of_no_activity_while_the_activity_loads(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Historian")
    wid = create_workspace(api, a.account, "History")
    open_board(a, wid)
    add_task(a, "Has a history")
    expect(card(a, "Has a history")).to_be_visible()

    def activity() -> list[Any]:
        got = api.get(f"/api/workspaces/{wid}/activity", headers=a.account.headers).json()
        items: list[Any] = got["items"]
        return items

    wait_until(lambda: len(activity()) >= 1, 10, message="the creation's activity row")
    a.page.evaluate(WATCH_TEXT, "No activity recorded yet.")
    card(a, "Has a history").get_by_role("button", name=re.compile("Open task")).click()
    expect(a.page.get_by_test_id("activity")).to_contain_text("created the task")
    assert a.page.evaluate("window.__seen") is False, "'No activity recorded yet.' flashed while loading"


def background(p: Person) -> tuple[int, ...]:
    rgb = p.page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    return tuple(int(x) for x in re.findall(r"\d+", rgb)[:3])


def is_dark(rgb: tuple[int, ...]) -> bool:
    return sum(rgb) / 3 < 80


def test_dark_mode_follows_the_system_and_a_choice_sticks(person: Callable[..., Person], api: httpx.Client) -> None:
    a = person("Owl")
    a.page.emulate_media(color_scheme="dark")
    wid = create_workspace(api, a.account, "After hours")
    open_board(a, wid)
    assert is_dark(background(a)), background(a)
    a.page.get_by_label("Theme").select_option("light")
    assert not is_dark(background(a)), background(a)
    a.page.reload()
    expect(a.page.get_by_label("Theme")).to_have_value("light")
    assert not is_dark(background(a)), "the choice outlives a reload"
    a.page.get_by_label("Theme").select_option("system")
    assert is_dark(background(a))
    a.page.emulate_media(color_scheme="light")  # the system changes: the page follows at once
    assert not is_dark(background(a))
    a.page.get_by_label("Theme").select_option("dark")
    assert is_dark(background(a))
    a.shot("board-dark")
