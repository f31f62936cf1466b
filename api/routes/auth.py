"""Accounts: register, log in (throttled on failures), and who am I."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.deps import Ctx, CurrentUser, Session
from api.errors import ApiError
from api.schemas import LoginIn, RegisterIn, TokenOut, UserOut
from api.security import create_access_token, hash_password, verify_password
from api.throttle import LoginThrottle
from persistence.models import User

router = APIRouter(prefix="/api", tags=["auth"])
log = logging.getLogger("plait.auth")

_ERRORS: dict[int | str, dict[str, str]] = {401: {"description": "Not authenticated"}}


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
        409: {"description": "Email already registered"},
        429: {"description": "Too many registrations from this address"},
        503: {"description": "Too many passwords being hashed; retry after Retry-After"},
    },
)
async def register(body: RegisterIn, request: Request, ctx: Ctx, session: Session) -> UserOut:
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
    return user_out(user)


@router.post(
    "/auth/login",
    response_model=TokenOut,
    responses={
        401: {"description": "Bad credentials"},
        429: {"description": "Too many failed attempts from this address"},
        503: {"description": "Too many passwords being checked; retry after Retry-After"},
    },
)
async def login(body: LoginIn, request: Request, ctx: Ctx, session: Session) -> TokenOut:
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
    ttl = ctx.settings.access_token_ttl_seconds
    return TokenOut(access_token=create_access_token(user.id, ctx.secret_key, ttl), expires_in=ttl)


@router.get("/me", response_model=UserOut, responses=_ERRORS)
async def me(user: CurrentUser) -> UserOut:
    return user_out(user)
