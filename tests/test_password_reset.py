"""Password reset by e-mail through a real SMTP server: the mailed link resets the password once and ends every
session; unknown addresses get the same answer and no mail; requests are limited per address and per client;
the outbox survives an SMTP server that refuses or is down; TLS and STARTTLS with a verified certificate."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.metrics import scrape, wait_moved
from tests.support.node import wait_until
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer, free_port, test_settings
from tests.support.smtp import SmtpServer
from tests.support.sql import query
from tests.support.users import Account, create_workspace, register

NEW_PASSWORD = "a brand new secret"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    srv = SmtpServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mail_server(backend: str, smtp: SmtpServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """A server that mails through ``smtp``, without the per-client limit (the module's requests share one)."""
    tmp = tmp_path_factory.mktemp(f"mail-{backend}")
    url = fresh_database(backend, tmp)
    srv = ThreadServer(test_settings(url, tmp, password_reset_max_per_address=0, **smtp.settings())).start()
    yield srv
    srv.stop()
    if backend == "postgres":
        drop_postgres_database(url)


@pytest.fixture
def http(mail_server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mail_server.base_url, timeout=30) as c:
        yield c


def token_of(link: str) -> str:
    return parse_qs(urlparse(link).query)["token"][0]


def reset_link(smtp: SmtpServer, acct: Account, count: int = 1) -> str:
    mail = smtp.wait_for(acct.email, count)[-1]
    assert "Reset your Plait password" in mail.subject
    (link,) = [link for link in mail.links() if "/reset-password?token=" in link]
    return link


async def test_the_mailed_link_resets_the_password_once_and_ends_every_session(
    mail_server: ThreadServer, http: httpx.Client, smtp: SmtpServer
) -> None:
    acct = register(http, "forgetful")
    wid = create_workspace(http, acct)
    first = http.post("/api/auth/login", json={"email": acct.email, "password": acct.password}).json()
    sock = YClient()
    await sock.connect(sync_url(mail_server.ws_url, wid, acct.token))
    await sock.wait_synced()

    r = http.post("/api/auth/password-reset", json={"email": acct.email.upper()})  # any case: one account
    assert r.status_code == 202 and r.content == b""
    link = reset_link(smtp, acct)
    assert link.startswith(mail_server.base_url + "/reset-password?token=")
    assert http.get(link).status_code == 200  # the web client's page is there to follow it
    token = token_of(link)
    # stored as its SHA-256 only
    stored = await asyncio.to_thread(
        query, mail_server.settings.resolved_database_url(), "SELECT token_hash FROM password_reset_tokens"
    )
    assert (hashlib.sha256(token.encode()).hexdigest(),) in stored
    assert all(token not in row[0] for row in stored)

    r = http.post("/api/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD})
    assert r.status_code == 204, r.text
    assert await sock.wait_closed() == 4401
    for access in (acct.token, first["access_token"]):
        assert http.get("/api/me", headers={"Authorization": f"Bearer {access}"}).status_code == 401
    assert http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    assert http.post("/api/auth/login", json={"email": acct.email, "password": acct.password}).status_code == 401
    assert http.post("/api/auth/login", json={"email": acct.email, "password": NEW_PASSWORD}).status_code == 200
    # single use
    r = http.post("/api/auth/password-reset/confirm", json={"token": token, "new_password": "yet another one"})
    assert r.status_code == 400 and r.json() == {"detail": "Invalid or expired reset token"}
    # the sent mail's body (which held the link) is not kept
    bodies = await asyncio.to_thread(
        query, mail_server.settings.resolved_database_url(), "SELECT body, status FROM mail_outbox"
    )
    assert all(token not in body for body, _ in bodies)


def execute(url: str, sql: str, **params: str) -> None:
    """One write on the server's database (to move a link's expiry into the past, as an hour would)."""

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql), params)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_links_expire_and_using_one_voids_the_others(
    mail_server: ThreadServer, http: httpx.Client, smtp: SmtpServer
) -> None:
    acct = register(http, "thrice")
    for n in (1, 2, 3):
        assert http.post("/api/auth/password-reset", json={"email": acct.email}).status_code == 202
        reset_link(smtp, acct, n)
    one, two, three = (token_of(reset_link(smtp, acct, n)) for n in (1, 2, 3))
    h = hashlib.sha256(one.encode()).hexdigest()
    execute(
        mail_server.settings.resolved_database_url(),
        "UPDATE password_reset_tokens SET expires_at = created_at WHERE token_hash = :h",
        h=h,
    )
    confirm = "/api/auth/password-reset/confirm"
    assert http.post(confirm, json={"token": one, "new_password": NEW_PASSWORD}).status_code == 400
    assert http.post(confirm, json={"token": two, "new_password": NEW_PASSWORD}).status_code == 204
    assert http.post(confirm, json={"token": three, "new_password": NEW_PASSWORD}).status_code == 400
    for bad in ("", "plait_rst_unknown", "x" * 201):
        r = http.post(confirm, json={"token": bad, "new_password": NEW_PASSWORD})
        assert r.status_code in (400, 422) and "detail" in r.json()
    assert http.post(confirm, json={"token": three, "new_password": "short"}).status_code == 422


def test_unknown_addresses_get_the_same_answer_and_no_mail(
    mail_server: ThreadServer, http: httpx.Client, smtp: SmtpServer
) -> None:
    acct = register(http, "known")
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    done = mail_server.ctx.mail.resets_done
    a = http.post("/api/auth/password-reset", json={"email": unknown})
    b = http.post("/api/auth/password-reset", json={"email": acct.email})
    assert (a.status_code, a.content) == (b.status_code, b.content) == (202, b"")
    varying = {"date", "x-request-id"}
    assert {k: v for k, v in a.headers.items() if k not in varying} == {
        k: v for k, v in b.headers.items() if k not in varying
    }
    smtp.wait_for(acct.email)
    wait_until(lambda: mail_server.ctx.mail.resets_done >= done + 2, 10, message="both requests handled")
    assert smtp.to(unknown) == []


def test_requests_are_limited_per_email_and_per_client(
    make_server: Callable[..., ThreadServer], smtp: SmtpServer
) -> None:
    srv = make_server(password_reset_max_per_email=2, password_reset_max_per_address=5, **smtp.settings())
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        acct = register(http, "limited")
        unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
        for email in (acct.email, unknown):  # the limit does not tell who has an account either
            codes = [http.post("/api/auth/password-reset", json={"email": email}).status_code for _ in range(3)]
            assert codes == [202, 202, 429]
        r = http.post("/api/auth/password-reset", json={"email": f"x-{uuid.uuid4().hex[:8]}@example.com"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1  # the 6th request from this client
        assert "detail" in r.json()
        smtp.wait_for(acct.email, 2)


def test_the_outbox_retries_while_smtp_refuses_or_is_down(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    port = free_port()
    down = SmtpServer(port=port)  # not started yet: nothing listens on the port
    srv = make_server(mail_retry_base_seconds=0.05, **down.settings())
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        acct = register(http, "patient")
        before = scrape(http)
        assert http.post("/api/auth/password-reset", json={"email": acct.email}).status_code == 202
        wait_moved(http, before, "plait_mail_attempt_failures_total", at_least=2, kind="password_reset")
        down.handler.refuse = 2  # up, but refusing twice more (451)
        down.start()
        try:
            reset_link(down, acct)
            assert down.handler.refused == 2
            after = wait_moved(http, before, "plait_mail_sent_total", kind="password_reset")
            assert after  # sent once it could be
        finally:
            down.stop()


@pytest.mark.allow_errors(r"given up after 2 attempts")
def test_a_mail_that_keeps_failing_is_given_up_loudly(make_server: Callable[..., ThreadServer]) -> None:
    refusing = SmtpServer().start()
    refusing.handler.refuse = 10**6
    try:
        srv = make_server(mail_retry_base_seconds=0.05, mail_max_attempts=2, **refusing.settings())
        with httpx.Client(base_url=srv.base_url, timeout=30) as http:
            acct = register(http, "unlucky")
            before = scrape(http)
            assert http.post("/api/auth/password-reset", json={"email": acct.email}).status_code == 202
            wait_moved(http, before, "plait_mail_failed_total", kind="password_reset")
            rows = query(srv.settings.resolved_database_url(), "SELECT status, attempts, body FROM mail_outbox")
            assert rows == [("failed", 2, "")]
    finally:
        refusing.stop()


@pytest.mark.parametrize("tls", ["tls", "starttls"])
def test_tls_and_starttls_with_a_verified_certificate(
    make_server: Callable[..., ThreadServer], tmp_path: Path, tls: str
) -> None:
    secure = SmtpServer(tls=tls, ca_dir=tmp_path).start()
    try:
        srv = make_server(**secure.settings())
        with httpx.Client(base_url=srv.base_url, timeout=30) as http:
            acct = register(http, tls)
            assert http.post("/api/auth/password-reset", json={"email": acct.email}).status_code == 202
            assert reset_link(secure, acct)
    finally:
        secure.stop()


def test_without_smtp_the_answer_is_the_same_and_nothing_is_stored(server: ThreadServer, client: httpx.Client) -> None:
    acct = register(client, "nomail")
    done = server.ctx.mail.resets_done
    assert client.post("/api/auth/password-reset", json={"email": acct.email}).status_code == 202
    wait_until(lambda: server.ctx.mail.resets_done > done, 10)
    url = server.settings.resolved_database_url()
    assert query(url, "SELECT count(*) FROM mail_outbox") == [(0,)]
    assert query(url, "SELECT count(*) FROM password_reset_tokens WHERE user_id = :u", u=acct.id) == [(0,)]
