"""Request dependencies: the database session, the caller, and the caller's membership and rights."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.context import AppContext
from api.domain.audit import bind_actor
from api.domain.errors import not_found
from api.domain.sessions import Caller, resolve
from api.errors import ApiError
from api.permissions import PERMISSIONS, allowed
from persistence.models import Membership, User, Workspace, is_uuid

_bearer = HTTPBearer(
    auto_error=False,
    description="Access token from POST /api/auth/login (or /api/auth/refresh), or a personal access token"
    " (plait_pat_..., POST /api/me/tokens)",
)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def get_session(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    """One session per request; routes commit explicitly, anything uncommitted is rolled back."""
    async with ctx.db.session() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


def unauthorized(detail: str = "Not authenticated") -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def current_caller(
    request: Request,
    ctx: Ctx,
    session: Session,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Who is behind ``Authorization: Bearer``: missing, forged, expired or revoked tokens and orphaned
    accounts are 401; a read-scoped personal access token may only read (403 otherwise)."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise unauthorized()
    caller = await resolve(session, creds.credentials, ctx.secret_key)
    if caller is None:
        raise unauthorized("Invalid or expired token")
    if "write" not in caller.scopes and request.method not in READ_METHODS:
        raise ApiError(403, "This token's scope (read) does not allow changes")
    request.state.caller = caller
    ctx.activity.seen(caller.session_id)
    bind_actor(caller.user.id, caller.user.email, request.client.host if request.client else None)  # audit log
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]


async def current_user(caller: CurrentCaller) -> User:
    """The account behind ``Authorization: Bearer`` (see ``current_caller``)."""
    return caller.user


CurrentUser = Annotated[User, Depends(current_user)]


@dataclass
class Member:
    """The caller inside one workspace: what routes under ``/api/workspaces/{wid}`` work with."""

    user: User
    workspace: Workspace
    membership: Membership

    @property
    def role(self) -> str:
        return self.membership.role


async def load_member(session: AsyncSession, user: User, workspace_id: str) -> Member:
    """The caller's membership; unknown workspaces and non-members get the same 404 (nothing leaks)."""
    if not is_uuid(workspace_id):
        raise not_found()
    row = (
        await session.execute(
            select(Workspace, Membership)
            .join(Membership, Membership.workspace_id == Workspace.id)
            .where(Workspace.id == workspace_id, Membership.user_id == user.id)
        )
    ).first()
    if row is None:
        raise not_found()
    return Member(user=user, workspace=row[0], membership=row[1])


async def workspace_member(wid: str, user: CurrentUser, session: Session) -> Member:
    return await load_member(session, user, wid)


def token_allows(caller: Caller, action: str) -> bool:
    """A personal access token never grants more than its owner's role, and its scope narrows it further:
    ``read`` allows the viewer's actions, ``write`` the editor's, ``admin`` everything the owner's role allows."""
    needed = PERMISSIONS[action]
    if needed == "viewer":
        return "read" in caller.scopes
    if needed == "editor":
        return "write" in caller.scopes
    return "admin" in caller.scopes


def require(action: str) -> Callable[..., Awaitable[Member]]:
    """Dependency: the caller is a member of ``{wid}`` whose role allows ``action`` (else 404 / 403)."""
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}: add it to api.permissions.PERMISSIONS")

    async def dependency(request: Request, member: Annotated[Member, Depends(workspace_member)]) -> Member:
        if not allowed(member.role, action):
            raise ApiError(403, f"Your role ({member.role}) may not do this ({action})")
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is not None and caller.is_token and not token_allows(caller, action):
            raise ApiError(403, f"This token's scope does not allow this ({action})")
        return member

    return dependency
