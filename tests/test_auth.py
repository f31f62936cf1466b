"""Accounts through HTTP: registration, login, bearer tokens, and failed-login throttling."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.pool import AccountPool
from tests.support.server import SECRET, ThreadServer
from tests.support.server import test_settings as settings_for
from tests.support.sql import query
from tests.support.users import register


@pytest.fixture(scope="module")
def users(server: ThreadServer) -> AccountPool:
    return AccountPool(server.base_url)


def new_email(tag: str = "u") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def other_address() -> dict[str, str]:
    """A distinct client address (uvicorn trusts X-Forwarded-For from 127.0.0.1), so intentional
    failures here never count against the address every other test logs in from."""
    return {"X-Forwarded-For": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}


def test_register_returns_the_account_without_secrets(client: httpx.Client, server: ThreadServer) -> None:
    email = new_email()
    r = client.post("/api/auth/register", json={"email": email, "password": "longenough", "display_name": " Ann "})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "email", "display_name"}
    assert body["email"] == email and body["display_name"] == "Ann"
    uuid.UUID(body["id"])
    [(stored,)] = query(
        server.settings.resolved_database_url(), "SELECT password_hash FROM users WHERE id = :i", i=body["id"]
    )
    assert stored.startswith("$argon2id$") and "longenough" not in stored


def test_register_conflict_is_case_insensitive(client: httpx.Client) -> None:
    email = new_email()
    payload = {"email": email, "password": "longenough", "display_name": "A"}
    assert client.post("/api/auth/register", json=payload).status_code == 201
    r = client.post("/api/auth/register", json={**payload, "email": email.upper()})
    assert r.status_code == 409
    assert r.json() == {"detail": "Email already registered"}


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not-an-email", "password": "longenough", "display_name": "A"},
        {"email": "a@example.com", "password": "short", "display_name": "A"},
        {"email": "a@example.com", "password": "longenough", "display_name": ""},
        {"email": "a@example.com", "password": "longenough", "display_name": "   "},
        {"email": "a@example.com", "password": "longenough", "display_name": "x" * 101},
        {"email": "a@example.com", "password": "longenough"},
        {"email": "a@example.com", "password": "longenough", "display_name": "A", "role": "admin"},
    ],
)
@pytest.mark.db_agnostic
def test_register_rejects_invalid_input(client: httpx.Client, payload: dict[str, str]) -> None:
    r = client.post("/api/auth/register", json=payload)
    assert r.status_code == 422
    assert "detail" in r.json()


@pytest.mark.db_agnostic
def test_malformed_json_is_a_json_422(client: httpx.Client) -> None:
    r = client.post("/api/auth/register", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "detail" in r.json()


@pytest.mark.db_agnostic
def test_login_issues_a_signed_token_with_the_contract_claims(client: httpx.Client, server: ThreadServer) -> None:
    acct = register(client, "login")
    r = client.post("/api/auth/login", json={"email": acct.email.upper(), "password": acct.password})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == server.settings.access_token_ttl_seconds
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "HS256"
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == acct.id
    assert claims["exp"] - claims["iat"] == server.settings.access_token_ttl_seconds
    assert abs(claims["iat"] - time.time()) < 60


@pytest.mark.db_agnostic
def test_bad_credentials_get_one_indistinguishable_401(client: httpx.Client) -> None:
    acct = register(client, "bad")
    wrong = client.post(
        "/api/auth/login", json={"email": acct.email, "password": "wrong password"}, headers=other_address()
    )
    unknown = client.post(
        "/api/auth/login", json={"email": new_email("nobody"), "password": "whatever1"}, headers=other_address()
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Invalid email or password"}


def test_me_returns_the_caller(client: httpx.Client) -> None:
    acct = register(client, "me")
    r = client.get("/api/me", headers=acct.headers)
    assert r.status_code == 200
    assert r.json() == {"id": acct.id, "email": acct.email, "display_name": "me", "is_admin": False}


def _token(claims: dict[str, object], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda uid: None, id="missing"),
        pytest.param(lambda uid: "Bearer not-a-jwt", id="garbage"),
        pytest.param(lambda uid: "Bearer", id="scheme-only"),
        pytest.param(
            lambda uid: f"Basic {_token({'sub': uid, 'iat': int(time.time()), 'exp': int(time.time()) + 60})}",
            id="wrong-scheme",
        ),
        pytest.param(
            lambda uid: (
                "Bearer " + _token({"sub": uid, "iat": int(time.time()), "exp": int(time.time()) + 60}, key="x" * 64)
            ),
            id="forged",
        ),
        pytest.param(
            lambda uid: "Bearer " + _token({"sub": uid, "iat": int(time.time()) - 120, "exp": int(time.time()) - 60}),
            id="expired",
        ),
        pytest.param(lambda uid: "Bearer " + _token({"sub": uid, "exp": int(time.time()) + 60}), id="no-iat"),
        pytest.param(
            lambda uid: (
                "Bearer " + _token({"sub": str(uuid.uuid4()), "iat": int(time.time()), "exp": int(time.time()) + 60})
            ),
            id="unknown-user",
        ),
        pytest.param(
            lambda uid: (
                "Bearer "
                + jwt.encode(
                    {"sub": uid, "iat": int(time.time()), "exp": int(time.time()) + 60}, None, algorithm="none"
                )
            ),
            id="alg-none",
        ),
    ],
)
@pytest.mark.db_agnostic
def test_invalid_tokens_are_401(client: httpx.Client, users: AccountPool, make_header: object) -> None:
    acct = users("tok")
    value = make_header(acct.id)  # type: ignore[operator]
    r = client.get("/api/me", headers={"Authorization": value} if value is not None else {})
    assert r.status_code == 401
    assert "detail" in r.json()
    assert r.headers["WWW-Authenticate"] == "Bearer"


# --- failed-login throttling, on a dedicated server with small limits -----------------------------

ACCOUNT_LIMIT = 3
ADDRESS_LIMIT = 5
WINDOW = 120


@pytest.fixture(scope="module")
def throttled(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp(f"throttle-{backend}")
    url = fresh_database(backend, tmp)
    srv = ThreadServer(
        settings_for(
            url,
            tmp,
            login_max_failures_per_account_address=ACCOUNT_LIMIT,
            login_max_failures_per_address=ADDRESS_LIMIT,
            login_failure_window_seconds=WINDOW,
        )
    ).start()
    try:
        with httpx.Client(base_url=srv.base_url, timeout=30) as c:
            yield c
    finally:
        srv.stop()
        if backend == "postgres":
            drop_postgres_database(url)


def _login(c: httpx.Client, email: str, password: str, address: str) -> httpx.Response:
    return c.post("/api/auth/login", json={"email": email, "password": password}, headers={"X-Forwarded-For": address})


@pytest.mark.db_agnostic
def test_failed_logins_throttle_the_address_on_that_account(throttled: httpx.Client) -> None:
    acct = register(throttled, "victim")
    for _ in range(ACCOUNT_LIMIT):
        assert _login(throttled, acct.email, "wrong-password", "10.1.0.1").status_code == 401
    # Even the right password waits now, from that address: it has guessed too often on this account.
    r = _login(throttled, acct.email, acct.password, "10.1.0.1")
    assert r.status_code == 429
    assert "detail" in r.json()
    assert 0 < int(r.headers["Retry-After"]) <= WINDOW
    # The owner, from anywhere else, is never refused because of someone else's failures (issue 21, item 7).
    assert _login(throttled, acct.email, acct.password, "10.1.1.1").status_code == 200
    # Other accounts are unaffected, from that address too.
    other = register(throttled, "bystander")
    assert _login(throttled, other.email, other.password, "10.1.0.1").status_code == 200


@pytest.mark.db_agnostic
def test_failed_logins_throttle_the_address_across_accounts(throttled: httpx.Client) -> None:
    for _ in range(ADDRESS_LIMIT):
        assert _login(throttled, new_email("spray"), "wrong-password", "10.2.0.1").status_code == 401
    acct = register(throttled, "neighbour")
    r = _login(throttled, acct.email, acct.password, "10.2.0.1")
    assert r.status_code == 429
    assert 0 < int(r.headers["Retry-After"]) <= WINDOW
    assert _login(throttled, acct.email, acct.password, "10.2.0.2").status_code == 200


@pytest.mark.db_agnostic
def test_many_users_logging_in_from_one_address_are_never_throttled(throttled: httpx.Client) -> None:
    users = [register(throttled, f"office{i}") for i in range(3 * ADDRESS_LIMIT)]
    for _ in range(2):
        for u in users:
            assert _login(throttled, u.email, u.password, "10.3.0.1").status_code == 200


@pytest.mark.db_agnostic
def test_a_success_does_not_count_and_forgets_own_mistakes(throttled: httpx.Client) -> None:
    acct = register(throttled, "typo")
    for _ in range(3):
        for _ in range(ACCOUNT_LIMIT - 1):
            assert _login(throttled, acct.email, "wrong-password", "10.4.0.1").status_code == 401
        assert _login(throttled, acct.email, acct.password, "10.4.0.1").status_code == 200


@pytest.mark.slow
@pytest.mark.db_agnostic
def test_throttle_lifts_after_the_window(tmp_path: Path) -> None:
    url = fresh_database("sqlite", tmp_path)
    srv = ThreadServer(
        settings_for(url, tmp_path, login_max_failures_per_account_address=2, login_failure_window_seconds=2)
    ).start()
    try:
        with httpx.Client(base_url=srv.base_url, timeout=30) as c:
            acct = register(c, "wait")
            for _ in range(2):
                assert _login(c, acct.email, "wrong-password", "10.5.0.1").status_code == 401
            r = _login(c, acct.email, acct.password, "10.5.0.1")
            assert r.status_code == 429
            time.sleep(int(r.headers["Retry-After"]) + 0.2)
            assert _login(c, acct.email, acct.password, "10.5.0.1").status_code == 200
    finally:
        srv.stop()
