"""Admission verdicts in-process: origin, token, account, membership, storage outage, epoch."""

from __future__ import annotations

import uuid

import pytest

from persistence.membership import Member
from sync_server import close_codes
from sync_server.admission import Admission, Admitted, Credential, Refusal, epoch_refusal

WID = str(uuid.uuid4())
TOKENS = {"good": "alice", "ghost": "nobody"}
MEMBERS = {(WID, "alice"): Member("alice", "Alice", "editor")}
USERS = {"alice", "bob"}


class Outage(OSError):
    pass


def admission(*, fail: BaseException | None = None) -> Admission:
    async def find_member(workspace_id: str, user_id: str) -> Member | None:
        if fail is not None:
            raise fail
        return MEMBERS.get((workspace_id, user_id))

    async def user_exists(user_id: str) -> bool:
        return user_id in USERS

    async def authenticate(token: str) -> Credential | None:
        user_id = TOKENS.get(token)
        return None if user_id is None else Credential(user_id, session_id=f"session-of-{token}")

    return Admission(
        authenticate=authenticate, find_member=find_member, user_exists=user_exists, allowed_origins=["https://ok"]
    )


def scope(query: str = "", **headers: str) -> dict[str, object]:
    return {
        "type": "websocket",
        "query_string": query.encode(),
        "headers": [(k.encode(), v.encode()) for k, v in {"host": "plait.test", **headers}.items()],
    }


async def test_a_member_with_a_valid_token_is_admitted_with_its_role_and_epoch() -> None:
    verdict = await admission().admit(scope("token=good&epoch=e1"), WID)
    assert verdict == Admitted("alice", "Alice", "editor", "e1", session_id="session-of-good")
    assert epoch_refusal(verdict, "e1") is None
    refusal = epoch_refusal(verdict, "e2")
    assert refusal is not None and refusal.event.code == close_codes.EPOCH_CHANGED


async def test_the_bearer_header_works_like_the_query_token() -> None:
    verdict = await admission().admit(scope(authorization="Bearer good"), WID)
    assert isinstance(verdict, Admitted) and verdict.epoch is None


@pytest.mark.parametrize(
    ("query", "headers", "workspace", "event"),
    [
        ("token=good", {"origin": "https://evil"}, WID, close_codes.ORIGIN_NOT_ALLOWED),
        ("", {}, WID, close_codes.BAD_TOKEN),
        ("token=forged", {}, WID, close_codes.BAD_TOKEN),
        ("token=ghost", {}, WID, close_codes.ACCOUNT_GONE),
        ("token=good", {}, str(uuid.uuid4()), close_codes.WORKSPACE_NOT_FOUND),
        ("token=good", {}, "not-a-uuid", close_codes.WORKSPACE_NOT_FOUND),
    ],
)
async def test_refusals(query: str, headers: dict[str, str], workspace: str, event: close_codes.CloseEvent) -> None:
    assert await admission().admit(scope(query, **headers), workspace) == Refusal(event)


async def test_the_servers_own_and_configured_origins_pass() -> None:
    for origin in ("https://plait.test", "https://ok"):
        assert isinstance(await admission().admit(scope("token=good", origin=origin), WID), Admitted)


async def test_a_storage_outage_is_a_retryable_1011() -> None:
    verdict = await admission(fail=Outage("connection refused")).admit(scope("token=good"), WID)
    assert verdict == Refusal(close_codes.STORAGE_UNAVAILABLE)


async def test_a_programming_error_is_not_dressed_up_as_an_outage() -> None:
    with pytest.raises(KeyError):
        await admission(fail=KeyError("bug")).admit(scope("token=good"), WID)
