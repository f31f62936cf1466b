"""Issue 21, items 7-10 and 15: nobody can lock another person out of their account, the client address is the
one a trusted proxy names, registration and password hashing are bounded, invites die with their creator's
authority, and every response carries the browser security headers. All through a real server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from persistence.settings import Settings
from tests.support.server import ThreadServer
from tests.support.users import Account, add_member, create_workspace, register

PASSWORD = "correct horse battery"


def _login(c: httpx.Client, email: str, password: str, address: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return c.post("/api/auth/login", json={"email": email, "password": password}, headers=headers)


def _register(c: httpx.Client, address: str | None = None, tag: str = "r") -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    email = f"{tag}-{uuid.uuid4().hex[:10]}@example.com"
    return c.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "display_name": tag}, headers=headers
    )


def _retry_after(r: httpx.Response, most: float) -> int:
    seconds = int(r.headers["Retry-After"])
    assert 0 < seconds <= most, r.headers
    return seconds


# --- item 7: failures on an account throttle their address, never the owner ----------------------------------


@pytest.mark.slow
def test_others_failures_never_refuse_the_right_password(
    backend: str, make_server: Callable[..., ThreadServer]
) -> None:
    srv = make_server(
        backend,
        login_max_failures_per_account_address=3,
        login_max_failures_per_address=10,
        login_max_failures_per_account=3,
        login_failure_window_seconds=120,
        login_delay_base_seconds=0.05,
        login_max_delay_seconds=0.2,
    )
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        owner = register(c, "owner")
        # X guesses until its own limit on this account: the 4th attempt is refused, even with the password.
        for _ in range(3):
            assert _login(c, owner.email, "wrong-password", "10.7.0.1").status_code == 401
        refused = _login(c, owner.email, owner.password, "10.7.0.1")
        assert refused.status_code == 429 and "detail" in refused.json()
        _retry_after(refused, 120)
        # The owner, from elsewhere, gets in.
        assert _login(c, owner.email, owner.password, "10.7.0.2").status_code == 200
        # A distributed attack (three more addresses, three guesses each) slows the account down but never
        # refuses the right password.
        for attacker in ("10.7.1.1", "10.7.1.2", "10.7.1.3"):
            for _ in range(3):
                assert _login(c, owner.email, "wrong-password", attacker).status_code == 401
        started = time.monotonic()
        assert _login(c, owner.email, owner.password, "10.7.0.3").status_code == 200
        assert time.monotonic() - started >= 0.2  # the growing delay, capped
        # X is still refused on this account, but X may log in to its own (other) account.
        assert _login(c, owner.email, owner.password, "10.7.0.1").status_code == 429
        mine = register(c, "x-user")
        assert _login(c, mine.email, mine.password, "10.7.0.1").status_code == 200


def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(make_server: Callable[..., ThreadServer]) -> None:
    """Attempts from one address on one account are taken one at a time (on a node), so a burst cannot slip
    guesses past the limit while the first ones are still being checked."""
    srv = make_server(
        login_max_failures_per_account_address=3, password_hash_time_cost=2, password_hash_memory_kib=4096
    )
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        owner = register(c, "burst")
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        with httpx.Client(base_url=srv.base_url, timeout=60) as gc:
            r = _login(gc, owner.email, f"guess {i}", "10.7.3.1")
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(15)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [401] * 3 + [429] * 12, statuses


def test_an_address_is_refused_after_its_total_failures(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server(login_max_failures_per_account_address=3, login_max_failures_per_address=4)
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        for i in range(4):
            assert _login(c, f"spray{i}-{uuid.uuid4().hex[:6]}@example.com", "wrong-pw", "10.7.2.1").status_code == 401
        acct = register(c, "neighbour")
        r = _login(c, acct.email, acct.password, "10.7.2.1")
        assert r.status_code == 429
        _retry_after(r, srv.settings.login_failure_window_seconds)
        assert _login(c, acct.email, acct.password, "10.7.2.2").status_code == 200


# --- item 8: the client address is the one a trusted proxy names, and only then ------------------------------


def test_forwarded_allow_ips_is_passed_to_uvicorn() -> None:
    options = Settings(forwarded_allow_ips="10.0.0.0/8, 127.0.0.1").uvicorn_options()
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == "10.0.0.0/8, 127.0.0.1"
    assert Settings(forwarded_allow_ips="").uvicorn_options()["proxy_headers"] is False
    assert Settings().uvicorn_options()["forwarded_allow_ips"] == "127.0.0.1,::1"


def test_x_forwarded_for_from_a_trusted_proxy_names_the_throttled_address(
    make_server: Callable[..., ThreadServer],
) -> None:
    srv = make_server(forwarded_allow_ips="127.0.0.1", login_max_failures_per_address=3)
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        acct = register(c, "behind-proxy")
        for i in range(3):
            assert _login(c, f"nobody{i}-{uuid.uuid4().hex[:6]}@example.com", "wrong-pw", "10.8.0.1").status_code == 401
        assert _login(c, acct.email, acct.password, "10.8.0.1").status_code == 429
        # Another client behind the same proxy is another address.
        assert _login(c, acct.email, acct.password, "10.8.0.2").status_code == 200
        # nginx appends the address it saw: the right-most untrusted entry counts, not what the client wrote.
        assert _login(c, acct.email, acct.password, "10.8.0.2, 10.8.0.1").status_code == 429


@pytest.mark.parametrize("trusted", ["192.0.2.1", ""])
def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    make_server: Callable[..., ThreadServer], trusted: str
) -> None:
    srv = make_server(forwarded_allow_ips=trusted, login_max_failures_per_address=3)
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        acct = register(c, "direct")
        for i in range(3):
            address = f"10.8.1.{i}"  # a client cannot dodge the limit by inventing addresses
            assert _login(c, f"nobody{i}-{uuid.uuid4().hex[:6]}@example.com", "wrong-pw", address).status_code == 401
        assert _login(c, acct.email, acct.password, "10.8.1.99").status_code == 429
        assert _login(c, acct.email, acct.password).status_code == 429


# --- item 9: registration is rate limited per address; hashing is bounded and off the event loop -------------


def test_registration_is_rate_limited_per_address(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server(register_max_per_address=3, register_window_seconds=60)
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        for _ in range(3):
            assert _register(c, "10.9.0.1").status_code == 201
        r = _register(c, "10.9.0.1")
        assert r.status_code == 429 and "detail" in r.json()
        _retry_after(r, 60)
        # Conflicts count too (they probe which emails exist), and other addresses are unaffected.
        assert _register(c, "10.9.0.2").status_code == 201


def test_a_registration_flood_is_refused_not_queued_and_login_stays_fast(
    make_server: Callable[..., ThreadServer],
) -> None:
    srv = make_server(
        # a real cost (about 30-60 ms a hash here), so that a queue of them is visible
        password_hash_time_cost=2,
        password_hash_memory_kib=32 * 1024,
        password_hash_parallelism=1,
        password_hash_threads=1,
        password_hash_max_waiting=2,
    )
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        acct = register(c, "legit")
        started = time.monotonic()
        assert _login(c, acct.email, acct.password).status_code == 200
        alone = time.monotonic() - started

    statuses: list[int] = []
    retry_after: list[str | None] = []
    lock = threading.Lock()

    def flood(i: int) -> None:
        with httpx.Client(base_url=srv.base_url, timeout=120) as fc:
            r = _register(fc, f"10.9.{i // 200}.{i % 200 + 1}", "flood")
        with lock:
            statuses.append(r.status_code)
            retry_after.append(r.headers.get("Retry-After"))

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        started = time.monotonic()
        assert _login(c, acct.email, acct.password).status_code == 200
        during = time.monotonic() - started
    for t in threads:
        t.join()
    assert set(statuses) <= {201, 503}, statuses
    assert statuses.count(503) > 0, statuses  # refused at once instead of queued for ever
    assert all(ra is not None and int(ra) >= 1 for s, ra in zip(statuses, retry_after, strict=True) if s == 503)
    # Logins verify in their own lane: a registration flood does not queue them behind it.
    assert during < max(1.0, 10 * alone), (alone, during)


def test_a_login_flood_is_refused_not_queued(make_server: Callable[..., ThreadServer]) -> None:
    srv = make_server(
        password_hash_time_cost=2,
        password_hash_memory_kib=32 * 1024,
        password_hash_parallelism=1,
        password_hash_threads=1,
        password_hash_max_waiting=1,
        login_max_failures_per_address=0,  # not under test here: only the lane refuses
        login_max_failures_per_account_address=0,
        login_max_failures_per_account=0,
    )
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        acct = register(c, "busy")
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:  # from many addresses: one address's attempts on an account queue up instead
        with httpx.Client(base_url=srv.base_url, timeout=60) as fc:
            r = _login(fc, acct.email, "wrong password", f"10.9.9.{i + 1}")
        with lock:
            statuses.append(r.status_code)
            assert r.status_code != 503 or r.headers["Retry-After"] == "1"

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {401, 503} and statuses.count(503) > 0, statuses
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:  # and the lane is free again afterwards
        assert _login(c, acct.email, acct.password).status_code == 200


# --- item 10: an invite is only as good as its creator's current authority ----------------------------------


def _invite(c: httpx.Client, wid: str, who: Account, role: str) -> str:
    return _invite_with_id(c, wid, who, role)[1]


def _invite_with_id(c: httpx.Client, wid: str, who: Account, role: str) -> tuple[str, str]:
    r = c.post(f"/api/workspaces/{wid}/invites", json={"role": role}, headers=who.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), str(r.json()["token"])


def _accept(c: httpx.Client, token: str, who: Account) -> httpx.Response:
    return c.post(f"/api/invites/{token}/accept", headers=who.headers)


def test_a_removed_admin_cannot_rejoin_through_their_own_invite(client: httpx.Client) -> None:
    owner, admin = register(client, "owner"), register(client, "admin")
    wid = create_workspace(client, owner)
    add_member(client, wid, owner, admin, "admin")
    comeback_id, comeback = _invite_with_id(client, wid, admin, "admin")
    friend_id, for_friend = _invite_with_id(client, wid, admin, "editor")
    r = client.delete(f"/api/workspaces/{wid}/members/{admin.id}", headers=owner.headers)
    assert r.status_code == 204
    assert _accept(client, comeback, admin).status_code == 404
    friend = register(client, "friend")
    assert _accept(client, for_friend, friend).status_code == 404
    listed = {i["id"] for i in client.get(f"/api/workspaces/{wid}/invites", headers=owner.headers).json()}
    assert listed.isdisjoint({comeback_id, friend_id})  # revoked, so no longer listed
    members = {m["user_id"] for m in client.get(f"/api/workspaces/{wid}/members", headers=owner.headers).json()}
    assert members == {owner.id}


def test_a_demoted_admins_invites_stop_working(client: httpx.Client) -> None:
    owner, admin = register(client, "owner"), register(client, "admin")
    wid = create_workspace(client, owner)
    add_member(client, wid, owner, admin, "admin")
    token = _invite(client, wid, admin, "admin")
    owners_own = _invite(client, wid, owner, "admin")
    r = client.patch(f"/api/workspaces/{wid}/members/{admin.id}", json={"role": "editor"}, headers=owner.headers)
    assert r.status_code == 200
    newcomer = register(client, "newcomer")
    assert _accept(client, token, newcomer).status_code == 404
    # Promoting them again does not bring the old invite back; the owner's invites were never affected.
    r = client.patch(f"/api/workspaces/{wid}/members/{admin.id}", json={"role": "admin"}, headers=owner.headers)
    assert r.status_code == 200
    assert _accept(client, token, newcomer).status_code == 404
    r = _accept(client, owners_own, newcomer)
    assert r.status_code == 200 and r.json()["role"] == "admin"


def test_an_admin_who_leaves_takes_their_invites_with_them(client: httpx.Client) -> None:
    owner, admin = register(client, "owner"), register(client, "admin")
    wid = create_workspace(client, owner)
    add_member(client, wid, owner, admin, "admin")
    token = _invite(client, wid, admin, "viewer")
    assert client.delete(f"/api/workspaces/{wid}/members/{admin.id}", headers=admin.headers).status_code == 204
    assert _accept(client, token, register(client, "late")).status_code == 404


def test_an_owner_demoted_to_admin_keeps_their_invites(client: httpx.Client) -> None:
    first, second = register(client, "first"), register(client, "second")
    wid = create_workspace(client, first)
    add_member(client, wid, first, second, "owner")
    token = _invite(client, wid, second, "admin")
    r = client.patch(f"/api/workspaces/{wid}/members/{second.id}", json={"role": "admin"}, headers=first.headers)
    assert r.status_code == 200
    r = _accept(client, token, register(client, "joiner"))
    assert r.status_code == 200 and r.json()["role"] == "admin"


# --- item 15: browser security headers -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/invite/abc", "/signin", "/api/me", "/healthz", "/api/no-such-route"])
def test_every_response_has_the_security_headers(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_the_web_client_csp_allows_only_its_own_origin(client: httpx.Client, server: ThreadServer) -> None:
    csp = client.get("/").headers["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    host = server.base_url.removeprefix("http://")
    assert directives["connect-src"] == ["'self'", f"ws://{host}"]
    # Behind TLS (X-Forwarded-Proto from the trusted proxy) the socket is wss.
    csp = client.get("/", headers={"X-Forwarded-Proto": "https"}).headers["Content-Security-Policy"]
    assert f"wss://{host}" in csp
    # A Host header that is not a plain host[:port] never reaches the policy.
    csp = client.get("/", headers={"Host": "evil.example; script-src *"}).headers["Content-Security-Policy"]
    assert "evil" not in csp and "script-src 'self';" in csp


def test_api_docs_still_load(client: httpx.Client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["X-Frame-Options"] == "DENY"
    assert "script-src" not in r.headers["Content-Security-Policy"]  # Swagger UI's inline start-up script


def test_compose_trusts_nginx_for_the_client_address() -> None:
    from tests.test_deployment import _rendered

    for node in ("plait-1", "plait-2"):
        trusted = _rendered()["services"][node]["environment"]["PLAIT_FORWARDED_ALLOW_IPS"]
        assert Settings(forwarded_allow_ips=trusted).uvicorn_options()["proxy_headers"] is True
        assert "172.16.0.0/12" in trusted.split(",")  # Docker's default bridge networks
