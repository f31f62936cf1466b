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
from api.domain.errors import not_found
from api.errors import ApiError
from api.permissions import PERMISSIONS, allowed
from api.security import decode_access_token
from persistence.models import Membership, User, Workspace, is_uuid

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/auth/login")


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


async def current_user(
    ctx: Ctx, session: Session, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    """The account behind ``Authorization: Bearer``; missing, forged, expired or orphaned tokens are 401."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise unauthorized()
    user_id = decode_access_token(creds.credentials, ctx.secret_key)
    user = await session.get(User, user_id) if user_id else None
    if user is None:
        raise unauthorized("Invalid or expired token")
    return user


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


def require(action: str) -> Callable[..., Awaitable[Member]]:
    """Dependency: the caller is a member of ``{wid}`` whose role allows ``action`` (else 404 / 403)."""
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}: add it to api.permissions.PERMISSIONS")

    async def dependency(member: Annotated[Member, Depends(workspace_member)]) -> Member:
        if not allowed(member.role, action):
            raise ApiError(403, f"Your role ({member.role}) may not do this ({action})")
        return member

    return dependency
