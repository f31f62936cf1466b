"""Invites by e-mail and the notification digest, through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from persistence.settings import Settings
from tests.support.node import wait_until
from tests.support.server import ThreadServer
from tests.support.smtp import SmtpServer
from tests.support.users import create_workspace, register, workspace_with


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    srv = SmtpServer().start()
    yield srv
    srv.stop()


def test_an_invite_is_mailed_with_the_workspace_and_the_inviter(
    make_server: Callable[..., ThreadServer], smtp: SmtpServer
) -> None:
    srv = make_server(invite_mail_max_per_user=2, **smtp.settings())
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        owner = register(http, "Ada")
        wid = create_workspace(http, owner, "Rocket Plans")
        guest = f"guest-{wid[:8]}@example.com"
        r = http.post(f"/api/workspaces/{wid}/invites", json={"role": "editor", "email": guest}, headers=owner.headers)
        assert r.status_code == 201, r.text
        assert r.json()["mailed"] is True
        (mail,) = smtp.wait_for(guest)
        assert "Ada" in mail.subject and "Rocket Plans" in mail.subject
        assert "Ada" in mail.body and "Rocket Plans" in mail.body and "editor" in mail.body
        assert r.json()["url"] in mail.links()
        # the mailed link is the invite: its token joins the workspace
        joiner = register(http, "joiner")
        token = r.json()["url"].rsplit("/", 1)[1]
        r = http.post(f"/api/invites/{token}/accept", headers=joiner.headers)
        assert r.status_code == 200 and r.json() == {"workspace_id": wid, "role": "editor"}
        # without an address nothing is mailed; invite e-mail is limited per inviter
        r = http.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers)
        assert r.status_code == 201 and "mailed" not in r.json()
        r = http.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer", "email": guest}, headers=owner.headers)
        assert r.status_code == 201
        r = http.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer", "email": guest}, headers=owner.headers)
        assert r.status_code == 429 and "Retry-After" in r.headers
        r = http.post(
            f"/api/workspaces/{wid}/invites", json={"role": "viewer", "email": "not an address"}, headers=owner.headers
        )
        assert r.status_code == 422


def test_without_smtp_an_invite_with_an_address_is_made_but_not_mailed(client: httpx.Client) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    r = client.post(
        f"/api/workspaces/{wid}/invites", json={"role": "viewer", "email": "x@example.com"}, headers=owner.headers
    )
    assert r.status_code == 201 and r.json()["mailed"] is False and r.json()["token"]


def _assign(http: httpx.Client, wid: str, owner_headers: dict[str, str], user_id: str, title: str) -> None:
    r = http.post(f"/api/workspaces/{wid}/tasks", json={"title": title, "assignee_id": user_id}, headers=owner_headers)
    assert r.status_code == 201, r.text


def _unread(http: httpx.Client, headers: dict[str, str], n: int) -> bool:
    items = http.get("/api/notifications?unread=true", headers=headers).json()["items"]
    return len(items) >= n


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_digest_is_opt_in_and_at_most_one_per_interval(
    make_server: Callable[..., ThreadServer], smtp: SmtpServer, backend: str
) -> None:
    srv = make_server(backend, mail_digest_scan_seconds=0.1, mail_digest_interval_seconds=3600, **smtp.settings())
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        wid, owner, (reader, quiet) = workspace_with(http, "editor", "editor")
        r = http.get("/api/notifications/preferences/email", headers=reader.headers)
        assert r.status_code == 200
        assert r.json() == {"digest": False, "interval_seconds": 3600.0, "available": True}
        _assign(http, wid, owner.headers, reader.id, "before opting in")  # not in the first digest
        wait_until(lambda: _unread(http, reader.headers, 1), 10)
        r = http.put("/api/notifications/preferences/email", json={"digest": True}, headers=reader.headers)
        assert r.status_code == 200 and r.json()["digest"] is True
        assert http.get("/api/notifications/preferences/email", headers=reader.headers).json()["digest"] is True
        assert (
            http.put("/api/notifications/preferences/email", json={"digest": "yes"}, headers=reader.headers).status_code
            == 422
        )
        _assign(http, wid, owner.headers, reader.id, "Write the launch plan")
        _assign(http, wid, owner.headers, quiet.id, "Quiet task")
        (digest,) = smtp.wait_for(reader.email)
        assert "1 unread notification" in digest.subject
        assert "Write the launch plan" in digest.body and "before opting in" not in digest.body
        assert "owner assigned you a task" in digest.body
        # more notifications within the interval: no second digest; the one who did not opt in gets none
        _assign(http, wid, owner.headers, reader.id, "Another one")
        wait_until(lambda: _unread(http, reader.headers, 3), 10)
        scans = srv.ctx.mail.digest.scans
        wait_until(lambda: srv.ctx.mail.digest.scans >= scans + 3, 10, message="three more digest scans")
        assert len(smtp.to(reader.email)) == 1
        assert smtp.to(quiet.email) == []
        assert _unread(http, quiet.headers, 1)


def test_production_refuses_smtp_without_a_public_url(tmp_path: Path) -> None:
    """Mailed links built from the request's Host header could point a reset link at anyone's server."""
    key = "k" * 48
    refused, _ = Settings(env="production", secret_key=key, data_dir=tmp_path, smtp_host="mail").production_problems()
    assert any("PLAIT_PUBLIC_URL" in line for line in refused)
    ok = Settings(env="production", secret_key=key, data_dir=tmp_path, smtp_host="mail", public_url="https://p.example")
    refused, warned = ok.production_problems()
    assert refused == [] and warned == []
    plain = Settings(
        env="production",
        secret_key=key,
        data_dir=tmp_path,
        smtp_host="m",
        public_url="https://p.example",
        smtp_tls="none",
        smtp_password="pw",
    )
    assert any("unencrypted" in line for line in plain.production_problems()[1])
