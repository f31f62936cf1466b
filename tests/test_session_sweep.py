"""The session sweep (``PLAIT_SESSION_SWEEP_SECONDS``): each node re-checks, now and then, the sessions and
personal access tokens its open sockets and notification streams were admitted with, and closes what is no
longer live (4401): a session that timed out without being refreshed, and one revoked while this node missed
the revocation's broadcast (Redis was away). Both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import update

from persistence.db import Database
from persistence.models import AuthSession, PersonalAccessToken, utcnow
from tests.support.pyclient import YClient, async_wait_until, sync_url
from tests.support.server import SECRET, ThreadServer
from tests.support.sse import SseReader
from tests.support.users import Account, create_workspace, register


def _login(http: httpx.Client, acct: Account) -> str:
    r = http.post("/api/auth/login", json={"email": acct.email, "password": acct.password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def _db_write(url: str, statement: Any) -> None:
    """A change made behind the node's back: what time, or another node whose broadcast was lost, did."""
    db = Database(url)
    try:
        async with db.transaction() as s:
            await s.execute(statement)
    finally:
        await db.dispose()


async def _joined(srv: ThreadServer, wid: str, token: str) -> YClient:
    c = YClient()
    await c.connect(sync_url(srv.ws_url, wid, token))
    await c.wait_synced()
    return c


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_timed_out_and_silently_revoked_sessions_lose_their_sockets_and_streams(
    backend: str, make_server: Callable[..., ThreadServer]
) -> None:
    srv = make_server(backend, session_sweep_seconds=0.2)
    url = srv.settings.database_url
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        timed_out, revoked, live = _login(http, owner), _login(http, owner), _login(http, owner)
        pat = http.post("/api/me/tokens", json={"name": "script", "scopes": ["write"]}, headers=owner.headers)
        assert pat.status_code == 201, pat.text
        socks = {
            name: await _joined(srv, wid, token)
            for name, token in (("timed_out", timed_out), ("revoked", revoked), ("live", live))
        }
        pat_sock = await _joined(srv, wid, pat.json()["token"])
        with SseReader(f"{srv.base_url}/api/notifications/stream?token={timed_out}") as sse:
            assert sse.wait_open() == 200

            def sid(token: str) -> str:
                return str(jwt.decode(token, SECRET, algorithms=["HS256"])["sid"])

            past = utcnow() - timedelta(seconds=1)
            await _db_write(url, update(AuthSession).where(AuthSession.id == sid(timed_out)).values(expires_at=past))
            await _db_write(url, update(AuthSession).where(AuthSession.id == sid(revoked)).values(revoked_at=past))
            await _db_write(
                url,
                update(PersonalAccessToken).where(PersonalAccessToken.id == pat.json()["id"]).values(expires_at=past),
            )
            assert await socks["timed_out"].wait_closed() == 4401
            assert await socks["revoked"].wait_closed() == 4401
            assert await pat_sock.wait_closed() == 4401
            sse._thread.join(timeout=10)
            assert not sse._thread.is_alive(), "the stream of the timed-out session is still open"
        assert socks["live"].connected
        await socks["live"].close()


def _sessions(http: httpx.Client, token: str) -> dict[str, dict[str, Any]]:
    """The account's sessions by user agent, their times parsed."""
    r = http.get("/api/me/sessions", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    times = ("last_active_at", "last_refreshed_at")
    return {str(s["user_agent"]): {**s, **{k: datetime.fromisoformat(s[k]) for k in times}} for s in r.json()}


@pytest.mark.db_agnostic
async def test_last_active_follows_requests_and_open_sockets_not_only_refreshes(
    make_server: Callable[..., ThreadServer],
) -> None:
    """``last_active_at`` in the session list: a session used for a request, or holding a socket open, is active
    as of the sweep's next pass; one left alone stays at its sign-in (its last refresh). The list is read with a
    fourth session, so reading it moves none of the three."""
    srv = make_server("sqlite", session_sweep_seconds=0.2)
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        tokens = {}
        for agent in ("asks", "listens", "idle"):
            r = http.post(
                "/api/auth/login",
                json={"email": owner.email, "password": owner.password},
                headers={"User-Agent": agent},
            )
            tokens[agent] = str(r.json()["access_token"])
        before = _sessions(http, owner.token)
        assert all(before[a]["last_active_at"] == before[a]["last_refreshed_at"] for a in tokens)
        client = await _joined(srv, wid, tokens["listens"])
        try:
            assert http.get("/api/workspaces", headers={"Authorization": f"Bearer {tokens['asks']}"}).status_code == 200

            def moved() -> dict[str, dict[str, Any]] | None:
                now = _sessions(http, owner.token)
                ok = all(now[a]["last_active_at"] > before[a]["last_active_at"] for a in ("asks", "listens"))
                return now if ok else None

            after = await async_wait_until(moved, timeout=10)
        finally:
            await client.close()
        assert after["idle"]["last_active_at"] == after["idle"]["last_refreshed_at"] == before["idle"]["last_active_at"]
