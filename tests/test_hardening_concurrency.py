"""Issue 21 follow-up: what one account can do with many requests at once, through a real server.

- Saving named versions in parallel must not hold the node's database connections (everyone else's requests
  waited for the pool and got 500); saves in flight are bounded per account and per node, with a clear refusal.
- Count quotas hold exactly under parallel requests (114 workspaces were created against a cap of 100).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import httpx
import pytest

from tests.support.server import ThreadServer
from tests.support.users import Account, create_workspace, register

BACKENDS = ["sqlite", "postgres"]


def _document(http: httpx.Client, wid: str, owner: Account, tasks: int = 10) -> None:
    """About 1 MB of tasks: every save copies it several times."""
    for i in range(tasks):
        r = http.post(
            f"/api/workspaces/{wid}/tasks",
            json={"title": f"t{i}", "description": f"{i:04d}" * 25_000},
            headers=owner.headers,
        )
        assert r.status_code == 201, r.text


def _refused(r: httpx.Response, status: int | None = None) -> None:
    """A refusal of a save or restore in flight: 429 (the account's) or 503 (the node's), JSON, Retry-After."""
    assert r.status_code == status if status is not None else r.status_code in (429, 503), (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.json()["detail"].startswith("Quota exceeded (version_saves): "), r.text
    assert r.headers["x-plait-quota"] == "version_saves"
    assert int(r.headers["retry-after"]) >= 1


# ---- concurrent named-version saves ---------------------------------------------------------------------


NO_CAPS = {"max_version_saves_per_user": 0, "max_version_saves_per_node": 0}


@pytest.mark.slow
@pytest.mark.parametrize("caps", [{}, NO_CAPS], ids=["default-caps", "no-caps"])
@pytest.mark.parametrize("backend", BACKENDS)
async def test_parallel_version_saves_leave_the_database_to_everyone_else(
    make_server: Callable[..., ThreadServer], backend: str, caps: dict[str, int]
) -> None:
    """32 parallel saves by one account (more than the pool's connections on either database) while another
    account works: the other account's requests all succeed; the saves either succeed or are refused with
    Retry-After and a JSON body, and every save answered 201 is listed. Without the caps on saves in flight
    too: a save holds no pooled connection across its document work."""
    srv = make_server(backend, **caps)
    with httpx.Client(base_url=srv.base_url, timeout=120) as http:
        attacker, other = register(http, "attacker"), register(http, "other")
        wid = create_workspace(http, attacker)
        _document(http, wid, attacker)
        theirs = create_workspace(http, other)
    versions = f"/api/workspaces/{wid}/versions"
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120, limits=limits) as client:

        async def ordinary(i: int) -> httpx.Response:
            if i % 3 == 0:
                return await client.post(
                    f"/api/workspaces/{theirs}/tasks", json={"title": f"mine {i}"}, headers=other.headers
                )
            if i % 3 == 1:
                return await client.get(f"/api/workspaces/{theirs}/tasks", headers=other.headers)
            return await client.get("/api/workspaces", headers=other.headers)

        saves = [client.post(versions, json={"label": f"v{i}"}, headers=attacker.headers) for i in range(32)]
        others = [ordinary(i) for i in range(24)]
        answers = await asyncio.gather(*saves, *others)
        saved, theirs_answered = answers[:32], answers[32:]

        assert [r.status_code for r in theirs_answered if r.status_code >= 300] == [], [
            (r.status_code, r.text) for r in theirs_answered if r.status_code >= 300
        ]
        codes = sorted(r.status_code for r in saved)
        assert set(codes) <= {201, 429, 503}, codes
        assert 201 in codes, codes
        if caps == NO_CAPS:
            assert set(codes) == {201}, codes
        for r in saved:
            if r.status_code != 201:
                _refused(r)
        listed = (await client.get(versions, headers=attacker.headers)).json()["items"]
        assert len(listed) == codes.count(201)
        # once the burst is over, the next save is taken
        r = await client.post(versions, json={"label": "after"}, headers=attacker.headers)
        assert r.status_code == 201, r.text


async def _answered(pending: set[asyncio.Task[httpx.Response]], count: int) -> list[httpx.Response]:
    """Wait until ``count`` of the requests have been answered (no timeout: the ones left are the test's)."""
    done: list[httpx.Response] = []
    while len(done) < count:
        finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            pending.discard(task)
            done.append(task.result())
    return done


async def test_saves_in_flight_are_capped_per_account_and_per_node(make_server: Callable[..., ThreadServer]) -> None:
    """The test holds SQLite's write lock, so admitted saves stay in flight (they wait to store the version)
    and the caps are seen exactly: the account's second save gets 429, the node's third 503; both are taken
    once the first ones are done, and another account's reads go on meanwhile."""
    srv = make_server("sqlite", max_version_saves_per_user=1, max_version_saves_per_node=2)
    with httpx.Client(base_url=srv.base_url, timeout=60) as http:
        accounts = [register(http, f"u{i}") for i in range(5)]
        spaces = [create_workspace(http, a) for a in accounts]
    path = srv.settings.resolved_database_url().split("///", 1)[1]
    lock = sqlite3.connect(path, isolation_level=None)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=60) as client:

        def save(i: int, label: str) -> asyncio.Task[httpx.Response]:
            url = f"/api/workspaces/{spaces[i]}/versions"
            return asyncio.create_task(client.post(url, json={"label": label}, headers=accounts[i].headers))

        lock.execute("BEGIN IMMEDIATE")
        try:
            # one account, four at once: one is admitted (and waits for the lock), three are refused: 429
            pending = {save(0, f"a{n}") for n in range(4)}
            for r in await _answered(pending, 3):
                _refused(r, 429)
            # four other accounts: the node has room for one more; three are refused: 503
            pending |= {save(i, "b") for i in range(1, 5)}
            for r in await _answered(pending, 3):
                _refused(r, 503)
            assert len(pending) == 2
            # reads of someone else are not held up
            r = await client.get(f"/api/workspaces/{spaces[4]}/versions", headers=accounts[4].headers)
            assert r.status_code == 200 and r.json()["items"] == []
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert [r.status_code for r in await _answered(pending, 2)] == [201, 201]
        # the places were given back: everyone can save now
        for i in range(5):
            assert (await save(i, "later")).status_code == 201
        counts = [
            len((await client.get(f"/api/workspaces/{w}/versions", headers=a.headers)).json()["items"])
            for a, w in zip(accounts, spaces, strict=True)
        ]
        assert sum(counts) == 2 + 5 and counts[0] == 2


# ---- count quotas under parallel requests ---------------------------------------------------------------


def _quota(r: httpx.Response, quota: str) -> None:
    assert r.status_code == 413, (r.status_code, r.text)
    assert r.headers["x-plait-quota"] == quota
    assert r.json()["detail"].startswith(f"Quota exceeded ({quota}): "), r.text


async def _parallel(
    srv: ThreadServer, requests: list[tuple[str, str, dict[str, object], Account]]
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(client.request(method, url, json=body, headers=acct.headers) for method, url, body, acct in requests)
            )
        )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_count_quotas_are_exact_under_parallel_requests(
    make_server: Callable[..., ThreadServer], backend: str
) -> None:
    """Workspaces per owner, named versions and members per workspace, webhooks per workspace: N parallel
    creations against a cap give exactly the cap, the rest are refused."""
    srv = make_server(
        backend,
        quota_max_workspaces_per_user=5,
        quota_max_named_versions=3,
        quota_max_members=4,
        webhook_allow_private=True,
        **NO_CAPS,  # the named-versions quota itself, not the cap on saves in flight
    )
    with httpx.Client(base_url=srv.base_url, timeout=60) as http:
        owner = register(http, "owner")
        joiners = [register(http, f"j{i}") for i in range(10)]
        wid = create_workspace(http, owner)
        r = http.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        token = r.json()["token"]

    # workspaces: the owner has 1, 20 more at once against a cap of 5
    answers = await _parallel(srv, [("POST", "/api/workspaces", {"name": f"w{i}"}, owner) for i in range(20)])
    assert sorted(r.status_code for r in answers) == [201] * 4 + [413] * 16
    for r in answers:
        if r.status_code == 413:
            _quota(r, "workspaces")
    # named versions: 12 at once against a cap of 3
    url = f"/api/workspaces/{wid}/versions"
    answers = await _parallel(srv, [("POST", url, {"label": f"v{i}"}, owner) for i in range(12)])
    assert sorted(r.status_code for r in answers) == [201] * 3 + [413] * 9
    for r in answers:
        if r.status_code == 413:
            _quota(r, "versions")
    # members: the owner and 10 accepting at once against a cap of 4
    answers = await _parallel(srv, [("POST", f"/api/invites/{token}/accept", {}, j) for j in joiners])
    assert sorted(r.status_code for r in answers) == [200] * 3 + [413] * 7
    for r in answers:
        if r.status_code == 413:
            _quota(r, "members")
    # webhooks: 30 at once against the fixed 20
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["task.created"]}
    answers = await _parallel(srv, [("POST", f"/api/workspaces/{wid}/webhooks", hook, owner) for _ in range(30)])
    assert sorted(r.status_code for r in answers) == [201] * 20 + [409] * 10

    with httpx.Client(base_url=srv.base_url, timeout=60) as http:
        assert len(http.get("/api/workspaces", headers=owner.headers).json()) == 5
        assert len(http.get(url, headers=owner.headers).json()["items"]) == 3
        assert len(http.get(f"/api/workspaces/{wid}/members", headers=owner.headers).json()) == 4
        assert len(http.get(f"/api/workspaces/{wid}/webhooks", headers=owner.headers).json()) == 20
