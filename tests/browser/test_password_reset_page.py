"""The reset page of the web client, reached through the link a real SMTP server received."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.databases import fresh_database
from tests.support.server import ThreadServer, free_port, test_settings
from tests.support.smtp import SmtpServer
from tests.support.users import register

pytestmark = pytest.mark.browser


@pytest.fixture
def mailing_server(web_dist: Path, tmp_path: Path) -> Iterator[tuple[ThreadServer, SmtpServer]]:
    smtp = SmtpServer().start()
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    settings = test_settings(
        fresh_database("sqlite", tmp_path), tmp_path, public_url=origin, web_dist=web_dist, **smtp.settings()
    )
    srv = ThreadServer(settings, port=port).start()
    try:
        yield srv, smtp
    finally:
        srv.stop()
        smtp.stop()


def test_ask_for_a_link_and_follow_it_to_a_new_password(
    browser: Any, mailing_server: tuple[ThreadServer, SmtpServer]
) -> None:
    srv, smtp = mailing_server
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        acct = register(http, "reset")
        ctx = browser.new_context(base_url=srv.base_url)
        try:
            page = ctx.new_page()
            page.set_default_timeout(15_000)
            page.goto("/reset-password")
            page.get_by_label("Email").fill(acct.email)
            page.get_by_role("button", name="Send me a link").click()
            expect(page.get_by_role("status")).to_contain_text("If an account has this address")
            (mail,) = smtp.wait_for(acct.email)
            (link,) = [link for link in mail.links() if "/reset-password?token=" in link]
            page.goto(link)
            page.get_by_label("New password", exact=True).fill("a brand new secret")
            page.get_by_role("button", name="Set password").click()
            expect(page.get_by_role("status")).to_contain_text("Your password is changed")
            page.goto(link)  # the link works once
            page.get_by_label("New password", exact=True).fill("another new secret")
            page.get_by_role("button", name="Set password").click()
            expect(page.get_by_role("alert")).to_contain_text("Invalid or expired reset token")
        finally:
            ctx.close()
        r = http.post("/api/auth/login", json={"email": acct.email, "password": "a brand new secret"})
        assert r.status_code == 200
