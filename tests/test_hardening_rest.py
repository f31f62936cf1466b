"""Issue 21 hardening, REST side: bad input is a 4xx JSON error (never a 500), and the webhook SSRF guard
refuses IPv6 forms that wrap or are private addresses. Everything goes through a real server."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.support.server import ThreadServer
from tests.support.users import Account, add_member, create_workspace, register

JSON = {"Content-Type": "application/json"}


def _bad_request(r: httpx.Response) -> None:
    """400 or 422 with a JSON error body."""
    assert r.status_code in (400, 422), (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.json()["detail"], r.text


# ---- item 11: non-finite numbers and lone surrogates in JSON bodies -------------------------------------

BAD_VALUES = ["NaN", "Infinity", "-Infinity", '"\\ud800"', '"x\\udfffy"', '"\\ud800@example.com"']


@pytest.mark.parametrize("value", BAD_VALUES)
def test_non_finite_numbers_and_lone_surrogates_are_refused(client: httpx.Client, value: str) -> None:
    """In any JSON body, the unauthenticated login and registration included: 400/422 JSON, never a 500."""
    r = client.post("/api/auth/login", content=f'{{"email": {value}, "password": "x"}}', headers=JSON)
    _bad_request(r)
    r = client.post("/api/auth/login", content=f'{{"email": "a@example.com", "password": {value}}}', headers=JSON)
    _bad_request(r)
    body = f'{{"email": "a@example.com", "password": "long enough pw", "display_name": {value}}}'
    _bad_request(client.post("/api/auth/register", content=body, headers=JSON))
    owner = register(client, "owner")
    auth = {**JSON, **owner.headers}
    _bad_request(client.post("/api/workspaces", content=f'{{"name": {value}}}', headers=auth))
    wid = create_workspace(client, owner)
    _bad_request(client.post(f"/api/workspaces/{wid}/tasks", content=f'{{"title": {value}}}', headers=auth))
    _bad_request(client.patch(f"/api/workspaces/{wid}", content=f'{{"name": {value}}}', headers=auth))
    _bad_request(client.post(f"/api/workspaces/{wid}/versions", content=f'{{"label": {value}}}', headers=auth))
    body = f'{{"role": "viewer", "expires_in_seconds": {value}}}'
    _bad_request(client.post(f"/api/workspaces/{wid}/invites", content=body, headers=auth))
    _bad_request(client.put("/api/notifications/preferences", content=f'{{"x": [{value}]}}', headers=auth))
    # the workspace is untouched and works
    assert client.get(f"/api/workspaces/{wid}", headers=owner.headers).json()["name"] == "ws"
    assert client.get(f"/api/workspaces/{wid}/tasks", headers=owner.headers).json() == []


def test_valid_unicode_and_large_numbers_still_work(client: httpx.Client) -> None:
    """A surrogate *pair* (an emoji written as escapes) is fine; so is a huge integer where a number is checked."""
    owner = register(client, "owner")
    auth = {**JSON, **owner.headers}
    r = client.post("/api/workspaces", content='{"name": "ship \\ud83d\\ude80"}', headers=auth)
    assert r.status_code == 201 and r.json()["name"] == "ship \U0001f680"
    wid = r.json()["id"]
    r = client.post(f"/api/workspaces/{wid}/invites", content='{"role": "viewer", "max_uses": 1e400}', headers=auth)
    _bad_request(r)  # 1e400 is a float overflow (inf) in Python: refused like Infinity
    r = client.post(f"/api/workspaces/{wid}/invites", content='{"role": "viewer", "max_uses": ' + "9" * 40 + "}")
    assert r.status_code == 401
    r = client.post(
        f"/api/workspaces/{wid}/invites", content='{"role": "viewer", "max_uses": ' + "9" * 40 + "}", headers=auth
    )
    _bad_request(r)


# ---- item 11: cursors ---------------------------------------------------------------------------------

HUGE = [str(2**63), str(2**64 + 5), "9" * 30, "1_0", " 5", "+5", "\u0661"]


def test_cursors_out_of_range_are_422(client: httpx.Client) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    hook = client.post(
        f"/api/workspaces/{wid}/webhooks",
        json={"url": "https://93.184.216.34/hook", "events": ["task.created"]},
        headers=owner.headers,
    ).json()
    paths = [
        "/api/notifications",
        f"/api/workspaces/{wid}/activity",
        f"/api/workspaces/{wid}/versions",
        f"/api/workspaces/{wid}/webhooks/{hook['id']}/deliveries",
    ]
    for path in paths:
        for cursor in HUGE:
            _bad_request(client.get(path, params={"cursor": cursor}, headers=owner.headers))
        ok = client.get(path, params={"cursor": str(2**63 - 1)}, headers=owner.headers)
        assert ok.status_code == 200, (path, ok.text)


@pytest.mark.parametrize("last", [str(2**63), "9" * 25])
def test_sse_last_event_id_out_of_range_is_422(server: ThreadServer, last: str) -> None:
    """Before: the stream opened with 200 and then aborted on the database error."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        owner = register(client, "owner")
        for headers, params in (
            ({**owner.headers, "Last-Event-ID": last}, {}),
            (owner.headers, {"last_event_id": last}),
        ):
            with client.stream("GET", "/api/notifications/stream", headers=headers, params=params) as r:
                r.read()
                _bad_request(r)


# ---- item 11 (webhook URL) and item 14 (SSRF guard) ----------------------------------------------------


def _webhook(client: httpx.Client, wid: str, owner: Account, url: str) -> httpx.Response:
    return client.post(
        f"/api/workspaces/{wid}/webhooks", json={"url": url, "events": ["task.created"]}, headers=owner.headers
    )


def test_invalid_webhook_urls_are_422(client: httpx.Client) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    for url in (
        f"https://{'a' * 64}.example.com/hook",
        f"https://{'a' * 200}/hook",
        "https://" + ".".join(["abcdefghij"] * 30) + "/hook",  # over 253 characters in all
        "https://exa\u00admple..com/hook",
        "https://93.184.216.34/ho\u0000ok",  # NUL: a 500 on PostgreSQL
        "https://93.184.216.34/hook?x=\u0000",
        "https://93.184.216.34/ho ok",
        "https://93.184.216.34/hook\u007f",
    ):
        r = _webhook(client, wid, owner, url)
        _bad_request(r)
        assert r.status_code == 422


WRAPPING_OR_PRIVATE = [
    "fec0::1",  # site-local (deprecated, private)
    "fed0:1234::1",
    "2002:0a00:0001::1",  # 6to4 wrapping 10.0.0.1
    "2002:7f00:0001::1",  # 6to4 wrapping 127.0.0.1
    "2002:5db8:d822::1",  # 6to4 wrapping a public address: 6to4 relays are not trusted either
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::ffff:0:a00:1",  # IPv4-translated (SIIT)
    "64:ff9b::a00:1",  # NAT64 wrapping 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 wrapping 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64
    "::a00:1",  # IPv4-compatible (deprecated)
    "3fff::1",  # documentation (RFC 9637)
    "2001:db8::1",
    "fc00::1",
    "fe80::1",
]


@pytest.mark.parametrize("address", WRAPPING_OR_PRIVATE)
def test_ssrf_guard_refuses_ipv6_forms_that_wrap_or_are_private(client: httpx.Client, address: str) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    r = _webhook(client, wid, owner, f"http://[{address}]/hook")
    assert r.status_code == 422, r.text
    assert "non-public" in r.json()["detail"]


def test_ssrf_guard_still_admits_public_ipv6(client: httpx.Client) -> None:
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    for address in ("2606:4700:4700::1111", "2a00:1450:4001:80b::200e"):
        r = _webhook(client, wid, owner, f"https://[{address}]/hook")
        assert r.status_code == 201, r.text


# ---- item 5: named versions, owned workspaces, stored bytes per user, workspace creation rate -----------


def _quota(r: httpx.Response, status: int, quota: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["x-plait-quota"] == quota
    assert r.json()["detail"].startswith(f"Quota exceeded ({quota}): "), r.text


def test_named_versions_per_workspace_quota(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", quota_max_named_versions=3)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "owner")
        wid = create_workspace(client, owner)
        url = f"/api/workspaces/{wid}/versions"
        client.post(f"/api/workspaces/{wid}/tasks", json={"title": "t"}, headers=owner.headers)
        saved = [client.post(url, json={"label": f"v{i}"}, headers=owner.headers) for i in range(3)]
        assert [r.status_code for r in saved] == [201, 201, 201]
        _quota(client.post(url, json={"label": "one too many"}, headers=owner.headers), 413, "versions")
        assert len(client.get(url, headers=owner.headers).json()["items"]) == 3, "nothing was saved"
        # a restore still works at the limit (its pre-restore version is not a named one) ...
        r = client.post(f"{url}/{saved[0].json()['id']}/restore", headers=owner.headers)
        assert r.status_code == 200, r.text
        _quota(client.post(url, json={"label": "still too many"}, headers=owner.headers), 413, "versions")
        # ... and deleting one makes room
        assert client.delete(f"{url}/{saved[1].json()['id']}", headers=owner.headers).status_code == 204
        assert client.post(url, json={"label": "fits again"}, headers=owner.headers).status_code == 201
        # the limit is per workspace
        other = create_workspace(client, owner)
        assert (
            client.post(f"/api/workspaces/{other}/versions", json={"label": "x"}, headers=owner.headers).status_code
            == 201
        )


def test_owned_workspaces_per_user_quota(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", quota_max_workspaces_per_user=3)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        alice, bob = register(client, "alice"), register(client, "bob")
        mine = [create_workspace(client, alice, f"a{i}") for i in range(3)]
        r = client.post("/api/workspaces", json={"name": "fourth"}, headers=alice.headers)
        _quota(r, 413, "workspaces")
        assert len(client.get("/api/workspaces", headers=alice.headers).json()) == 3, "nothing was created"
        # being a member (not an owner) of someone else's workspaces does not count
        for i in range(3):
            add_member(client, create_workspace(client, bob, f"b{i}"), bob, alice, "editor")
        assert len(client.get("/api/workspaces", headers=alice.headers).json()) == 6
        # room again after deleting one
        assert client.delete(f"/api/workspaces/{mine[0]}", headers=alice.headers).status_code == 204
        assert client.post("/api/workspaces", json={"name": "fits"}, headers=alice.headers).status_code == 201


@pytest.mark.slow
def test_workspace_creation_is_under_the_rest_write_rate(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server("sqlite", quota_rest_writes_per_minute=5, quota_rest_window_seconds=2)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        alice, bob = register(client, "alice"), register(client, "bob")
        for i in range(5):
            create_workspace(client, alice, f"w{i}")
        r = client.post("/api/workspaces", json={"name": "too fast"}, headers=alice.headers)
        _quota(r, 429, "rest_writes")
        assert 1 <= int(r.headers["retry-after"]) <= 2
        assert len(client.get("/api/workspaces", headers=alice.headers).json()) == 5, "nothing was created"
        assert client.post("/api/workspaces", json={"name": "other user"}, headers=bob.headers).status_code == 201
        time.sleep(float(r.headers["retry-after"]) + 0.1)
        assert client.post("/api/workspaces", json={"name": "later"}, headers=alice.headers).status_code == 201


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_stored_bytes_per_user_quota(make_server: Callable[..., ThreadServer], backend: str) -> None:
    """Documents and versions of the workspaces a user owns, charged to the owner whoever writes."""
    srv = make_server(backend, quota_max_user_bytes=60_000)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner, editor = register(client, "owner"), register(client, "editor")
        wid = create_workspace(client, owner)
        add_member(client, wid, owner, editor, "editor")
        tasks = f"/api/workspaces/{wid}/tasks"
        versions = f"/api/workspaces/{wid}/versions"
        big = client.post(tasks, json={"title": "big", "description": "x" * 25_000}, headers=owner.headers)
        assert big.status_code == 201, big.text
        first = client.post(versions, json={"label": "one"}, headers=owner.headers)  # about 50 kB stored now
        assert first.status_code == 201, first.text
        _quota(client.post(versions, json={"label": "two"}, headers=editor.headers), 413, "user_bytes")
        # a write by a member is charged to the owner; so is one in another workspace of the same owner
        r = client.post(tasks, json={"title": "more", "description": "y" * 12_000}, headers=editor.headers)
        _quota(r, 413, "user_bytes")
        other = create_workspace(client, owner)
        r = client.post(
            f"/api/workspaces/{other}/tasks",
            json={"title": "z" * 200, "description": "z" * 12_000},
            headers=owner.headers,
        )
        _quota(r, 413, "user_bytes")
        # a restore would copy the document into a pre-restore version
        _quota(client.post(f"{versions}/{first.json()['id']}/restore", headers=owner.headers), 413, "user_bytes")
        # the editor's own storage is not the owner's
        assert (
            client.post(
                f"/api/workspaces/{create_workspace(client, editor)}/versions",
                json={"label": "mine"},
                headers=editor.headers,
            ).status_code
            == 201
        )
        # nor is another user's: someone else's full account never refuses their writes
        stranger = register(client, "stranger")
        theirs = create_workspace(client, stranger)
        r = client.post(
            f"/api/workspaces/{theirs}/tasks",
            json={"title": "mine", "description": "s" * 12_000},
            headers=stranger.headers,
        )
        assert r.status_code == 201, r.text
        # small edits, reads and deletions keep working; deleting the version makes room
        assert (
            client.patch(f"{tasks}/{big.json()['id']}", json={"status": "done"}, headers=owner.headers).status_code
            == 200
        )
        assert len(client.get(tasks, headers=owner.headers).json()) == 1
        assert client.delete(f"{versions}/{first.json()['id']}", headers=owner.headers).status_code == 204
        assert client.post(versions, json={"label": "two"}, headers=owner.headers).status_code == 201
    srv.stop()
    # over the limit (it was lowered): the owner cannot create another workspace either
    again = make_server(backend, database_url=srv.settings.database_url, quota_max_user_bytes=40_000)
    with httpx.Client(base_url=again.base_url, timeout=30) as client:
        token = client.post("/api/auth/login", json={"email": owner.email, "password": owner.password})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        _quota(client.post("/api/workspaces", json={"name": "no room"}, headers=headers), 413, "user_bytes")
        assert client.post("/api/workspaces", json={"name": "editor's"}, headers=editor.headers).status_code == 201


def test_malformed_json_bodies_are_4xx(client: httpx.Client) -> None:
    """Malformed bodies stay FastAPI's: 422 json_invalid, 400 for nesting too deep or a 5000-digit integer."""
    r = client.post("/api/auth/login", content=b'{"email": ', headers=JSON)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = client.post("/api/auth/login", content=b"[" * 100_000 + b"]" * 100_000, headers=JSON)
    assert r.status_code == 400 and r.json()["detail"]
    r = client.post("/api/auth/login", content=b'{"email": ' + b"7" * 5000 + b', "password": "x"}', headers=JSON)
    assert r.status_code == 400 and r.json()["detail"]
    r = client.post("/api/auth/login", content=b'{"email": "\xed\xa0\x80@example.com", "password": "x"}', headers=JSON)
    assert r.status_code in (400, 422) and r.json()["detail"]
    utf16 = '{"email": "\ud800@example.com", "password": "x"}'.encode("utf-16-le", "surrogatepass")
    r = client.post("/api/auth/login", content=utf16, headers=JSON)
    assert r.status_code in (400, 422) and r.json()["detail"]
