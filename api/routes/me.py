"""The signed-in account: profile, password, sessions, and personal access tokens."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from api.deps import Ctx, CurrentCaller, CurrentUser, Session
from api.domain import account, membership, sessions, tokens
from api.domain.audit import record_action
from api.domain.sessions import Caller
from api.errors import ApiError
from api.routes.auth import client_address, user_out
from api.schemas import DisplayName, MeOut, Password, SessionOut, UserOut, _In
from api.security import hash_password, verify_password
from api.throttle import LoginThrottle
from persistence.models import is_uuid

router = APIRouter(prefix="/api/me", tags=["account"])

_ERRORS: dict[int | str, dict[str, str]] = {401: {"description": "Not authenticated"}}
_SESSION_ONLY: dict[int | str, dict[str, str]] = {
    **_ERRORS,
    403: {"description": "Called with a personal access token (a signed-in session is needed)"},
}


async def session_caller(caller: CurrentCaller) -> Caller:
    """Account security (password, tokens) needs a signed-in session: a token cannot make or widen tokens."""
    if caller.is_token:
        raise ApiError(403, "A personal access token cannot do this; sign in")
    return caller


SessionCaller = Annotated[Caller, Depends(session_caller)]


class ProfileIn(_In):
    display_name: DisplayName


class PasswordIn(_In):
    current_password: Annotated[str, Field(max_length=1024)]
    new_password: Password


Scope = Literal["read", "write", "admin"]


class TokenIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]*$")]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)]
    expires_in_days: Annotated[int | None, Field(ge=1, le=3650)] = None


class TokenOut(BaseModel):
    id: str
    name: str
    scopes: list[Scope]
    created_at: str
    expires_at: str | None
    last_used_at: str | None


class NewTokenOut(TokenOut):
    token: str  # shown once


@router.get("", response_model=MeOut, responses=_ERRORS)
async def me(user: CurrentUser) -> MeOut:
    """Who is signed in, and whether they are an instance administrator."""
    return MeOut(**user_out(user).model_dump(), is_admin=bool(user.is_admin))


@router.patch("", response_model=UserOut, responses={**_ERRORS, 403: {"description": "Read-only token"}})
async def update_profile(body: ProfileIn, caller: CurrentCaller, session: Session, ctx: Ctx) -> UserOut:
    """Change the display name (what others see on tasks, presence and notifications)."""
    user = await session.merge(caller.user)
    user.display_name = body.display_name
    await session.commit()
    await membership.announce_user(ctx, user.id)  # open clients of their workspaces re-read the member list
    return user_out(user)


@router.post(
    "/password",
    status_code=204,
    response_class=Response,
    responses={
        **_SESSION_ONLY,
        403: {"description": "Wrong current password, or called with a personal access token"},
        429: {"description": "Too many failed attempts from this address"},
        503: {"description": "Too many passwords being checked; retry after Retry-After"},
    },
)
async def change_password(
    body: PasswordIn, request: Request, caller: SessionCaller, ctx: Ctx, session: Session
) -> Response:
    """Change the password; every other session of the account ends (its sockets close with 4401), this one
    stays. Wrong current passwords count as failed logins (same limits, same delays)."""
    user = caller.user
    guard = ctx.auth
    guard.login.refuse_if_full()
    address = client_address(request)
    throttle = LoginThrottle(ctx.settings)
    async with guard.attempts.hold((user.email, address)):
        delay = await throttle.check(session, user.email, address)
        await session.commit()
        if delay:
            await asyncio.sleep(delay)
        ok = await guard.login.run(verify_password, user.password_hash, body.current_password)
        if not ok:
            await throttle.record_failure(session, user.email, address)
            raise ApiError(403, "Current password is wrong")
        await throttle.record_success(session, user.email, address)
    new_hash = await guard.register.run(hash_password, body.new_password)
    account = await session.merge(user)
    account.password_hash = new_hash
    ended = await sessions.revoke(session, user.id, reason="password_changed", keep=caller.session_id)
    await session.commit()
    ctx.sessions.ended(ended)
    return Response(status_code=204)


@router.post(
    "/tokens",
    status_code=201,
    response_model=NewTokenOut,
    responses={**_SESSION_ONLY, 409: {"description": "Too many tokens"}},
)
async def create_token(body: TokenIn, caller: SessionCaller, ctx: Ctx, session: Session) -> dict[str, Any]:
    """A personal access token (``plait_pat_...``) for ``Authorization: Bearer`` on REST and ``/sync``; the
    token is in this answer only. Scopes: ``read`` (viewer's actions), ``write`` (an editor's), ``admin``
    (everything the owner's role allows); a token never grants more than its owner's role."""
    pat, secret = await tokens.create(
        session, caller.user.id, body.name, list(body.scopes), body.expires_in_days, ctx.settings.pat_max_per_user
    )
    await record_action(
        session, "token.created", target=("token", pat.id), details={"name": pat.name, "scopes": list(pat.scopes)}
    )
    return {**tokens.token_json(pat), "token": secret}


@router.get("/tokens", response_model=list[TokenOut], responses=_SESSION_ONLY)
async def list_tokens(caller: SessionCaller, session: Session) -> list[dict[str, Any]]:
    """The account's tokens (name, scopes, created, expires, last used), never the tokens themselves."""
    return [tokens.token_json(p) for p in await tokens.listed(session, caller.user.id)]


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    responses={**_SESSION_ONLY, 404: {"description": "No such token of this account"}},
)
async def delete_token(token_id: str, caller: SessionCaller, ctx: Ctx, session: Session) -> Response:
    """Delete a token: it stops working at once, and the sockets opened with it close (4401) on every node."""
    await tokens.remove(session, caller.user.id, token_id)
    await record_action(session, "token.deleted", target=("token", token_id))
    ctx.sessions.ended({token_id})
    return Response(status_code=204)


@router.delete(
    "",
    status_code=204,
    response_class=Response,
    responses={
        **_SESSION_ONLY,
        409: {"description": "The last owner of a workspace that has other members: hand it over first"},
    },
)
async def delete_me(caller: SessionCaller, ctx: Ctx, session: Session) -> Response:
    """Delete my account. Refused (409) while I am the last owner of a workspace that has other members.
    Otherwise my memberships go (a workspace where I am the only member is deleted), my sessions and tokens
    end and my open sockets close (4401); what I wrote stays, attributed to "Deleted user"."""
    await account.delete_account(ctx, session, caller.user.id)
    return Response(status_code=204)


@router.get("/export", responses=_SESSION_ONLY)
async def export_me(caller: SessionCaller, session: Session) -> dict[str, Any]:
    """My data as JSON: account, memberships, notifications (newest 10,000), preferences, sessions and
    personal access tokens (their metadata, never the tokens)."""
    return await account.export_account(session, caller.user)


@router.get("/sessions", response_model=list[SessionOut], responses=_SESSION_ONLY)
async def list_sessions(caller: SessionCaller, session: Session) -> list[SessionOut]:
    """The account's live sessions (signed in, not signed out, not expired), newest sign-in first; ``current``
    marks the session of the calling access token."""
    return [
        SessionOut(
            id=s.id,
            created_at=s.created_at,
            last_refreshed_at=s.refreshed_at,
            last_active_at=max(s.refreshed_at, s.last_active_at or s.refreshed_at),
            expires_at=s.expires_at,
            user_agent=s.user_agent,
            current=s.id == caller.session_id,
        )
        for s in await sessions.live_sessions(session, caller.user.id)
    ]


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses={**_SESSION_ONLY, 404: {"description": "No such live session of this account"}},
)
async def end_session(session_id: str, caller: SessionCaller, ctx: Ctx, session: Session) -> Response:
    """Sign one session out (another device, or this one): its access and refresh tokens stop working and its
    sockets and streams close (4401) on every node, as a logout there would."""
    live = {s.id for s in await sessions.live_sessions(session, caller.user.id)} if is_uuid(session_id) else set()
    if session_id not in live:
        raise ApiError(404, "Session not found")
    ended = await sessions.revoke(session, caller.user.id, {session_id}, reason="signed_out_remotely")
    await session.commit()
    ctx.sessions.ended(ended)
    return Response(status_code=204)
