"""Accounts and sessions: register, log in (throttled on failures), refresh, log out (who am I: api/routes/me.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.deps import Ctx, CurrentCaller, Session, unauthorized
from api.domain import sessions
from api.domain.registration import join_on_registration, registration_allowed
from api.errors import ApiError
from api.schemas import LoginIn, RegisterIn, TokenOut, UserOut, _In
from api.security import hash_password, verify_password
from api.throttle import LoginThrottle
from persistence.models import User

router = APIRouter(prefix="/api", tags=["auth"])
log = logging.getLogger("plait.auth")

_ERRORS: dict[int | str, dict[str, str]] = {401: {"description": "Not authenticated"}}


class LoginOut(TokenOut):
    """An access token (short-lived, ``expires_in`` seconds) and the refresh token that renews it."""

    refresh_token: str


class RefreshIn(_In):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


def client_address(request: Request) -> str:
    """The client's address: the peer, or what a trusted proxy (``PLAIT_FORWARDED_ALLOW_IPS``) says it is."""
    return request.client.host if request.client else "unknown"


def normalize_email(email: str) -> str:
    """Emails are compared case-insensitively: ``Ann@X.org`` and ``ann@x.org`` are one account."""
    return email.strip().lower()


def user_out(user: User) -> UserOut:
    return UserOut(id=user.id, email=user.email, display_name=user.display_name)


@router.post(
    "/auth/register",
    status_code=201,
    response_model=UserOut,
    responses={
        403: {"description": "Registration closed, or invite-only without a usable invite (PLAIT_REGISTRATION)"},
        409: {"description": "Email already registered"},
        429: {"description": "Too many registrations from this address"},
        503: {"description": "Too many passwords being hashed; retry after Retry-After"},
    },
)
async def register(body: RegisterIn, request: Request, ctx: Ctx, session: Session) -> UserOut:
    """Open, invite-only or closed (``PLAIT_REGISTRATION``); with ``invite_token`` the new account also joins
    the invite's workspace."""
    await registration_allowed(ctx.settings.registration, session, body.invite_token)
    guard = ctx.auth
    # Every attempt counts, conflicts too: they would otherwise probe which emails have accounts.
    guard.registrations.hit(client_address(request))
    guard.register.refuse_if_full()
    email = normalize_email(body.email)
    taken = await session.scalar(select(func.count()).select_from(User).where(User.email == email))
    if taken:
        raise ApiError(409, "Email already registered")
    await session.commit()  # no transaction held open while the hash waits for a thread
    password_hash = await guard.register.run(hash_password, body.password)
    user = User(email=email, password_hash=password_hash, display_name=body.display_name)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:  # a concurrent registration of the same email won
        await session.rollback()
        raise ApiError(409, "Email already registered") from None
    log.info("registered user %s", user.id)
    if body.invite_token:
        await join_on_registration(ctx, session, user, body.invite_token, client_address(request))
    return user_out(user)


@router.post(
    "/auth/login",
    response_model=LoginOut,
    responses={
        401: {"description": "Bad credentials"},
        429: {"description": "Too many failed attempts from this address"},
        503: {"description": "Too many passwords being checked; retry after Retry-After"},
    },
)
async def login(body: LoginIn, request: Request, ctx: Ctx, session: Session) -> LoginOut:
    """Opens a session: a short-lived access token and a refresh token (``POST /api/auth/refresh``)."""
    email = normalize_email(body.email)
    address = client_address(request)
    guard = ctx.auth
    guard.login.refuse_if_full()
    throttle = LoginThrottle(ctx.settings)
    async with guard.attempts.hold((email, address)):
        delay = await throttle.check(session, email, address)
        user = await session.scalar(select(User).where(User.email == email))
        password_hash = user.password_hash if user else None
        await session.commit()  # no transaction (nor pooled connection) held while waiting and hashing
        if delay:
            # Others' failures on this account slow every attempt on it down; they never refuse the owner.
            await asyncio.sleep(delay)
        # verify_password runs a hash even for unknown emails, so both failures look and take the same;
        # argon2 is deliberately slow, so it runs on the login lane's threads, off the event loop.
        ok = await guard.login.run(verify_password, password_hash, body.password)
        if not ok or user is None:
            await throttle.record_failure(session, email, address)
            raise ApiError(401, "Invalid email or password", headers={"WWW-Authenticate": "Bearer"})
        await throttle.record_success(session, email, address)
    if user.disabled_at is not None:  # only said to whoever knows the password
        raise ApiError(403, "This account is disabled; ask an administrator of this server")
    pair = await sessions.open_session(
        session, ctx.settings, ctx.secret_key, user.id, request.headers.get("user-agent")
    )
    return _out(pair)


def _out(pair: sessions.TokenPair) -> LoginOut:
    return LoginOut(access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token)


@router.post(
    "/auth/refresh",
    response_model=LoginOut,
    responses={401: {"description": "Unknown, used, expired or revoked refresh token"}},
)
async def refresh(body: RefreshIn, ctx: Ctx, session: Session) -> LoginOut:
    """A new access token and a new refresh token; the one sent is used up. Sending a used refresh token
    again ends its whole session (every token of it, and its open sockets)."""
    try:
        pair = await sessions.rotate(session, ctx.settings, ctx.secret_key, body.refresh_token)
    except sessions.RefreshReused as reused:
        ctx.sessions.ended({reused.session_id})
        raise unauthorized("Refresh token already used; the session has ended") from None
    if pair is None:
        raise unauthorized("Invalid or expired refresh token")
    return _out(pair)


def _session_only(caller: sessions.Caller) -> None:
    if caller.is_token:
        raise ApiError(
            403, "A personal access token cannot do this; sign in (delete tokens with DELETE /api/me/tokens/{id})"
        )


@router.post(
    "/auth/logout",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 403: {"description": "Called with a personal access token"}},
)
async def logout(caller: CurrentCaller, ctx: Ctx, session: Session) -> Response:
    """Ends this session: its access and refresh tokens stop working, its sockets and streams close (4401)."""
    _session_only(caller)
    ended = await sessions.revoke(session, caller.user.id, {caller.session_id}, reason="logout")
    await session.commit()
    ctx.sessions.ended(ended)
    return Response(status_code=204)


@router.post(
    "/auth/logout-all",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 403: {"description": "Called with a personal access token"}},
)
async def logout_all(caller: CurrentCaller, ctx: Ctx, session: Session) -> Response:
    """Ends every session of the account, this one included (personal access tokens stay: delete them)."""
    _session_only(caller)
    ended = await sessions.revoke(session, caller.user.id, reason="logout_all")
    await session.commit()
    ctx.sessions.ended(ended)
    log.info("user %s logged out everywhere (%d sessions)", caller.user.id, len(ended))
    return Response(status_code=204)
