"""Request and response bodies of the REST API (validation lives here, not in the routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from api.permissions import InviteRole, Role
from persistence.models import as_utc

Timestamp = Annotated[datetime, AfterValidator(as_utc)]
Password = Annotated[str, Field(min_length=8, max_length=1024)]
NO_NUL = r"^[^\x00]*$"  # text stored in PostgreSQL columns cannot hold NUL (it failed there with a 500)
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL)]
WorkspaceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]


class _In(BaseModel):
    """Request bodies reject unknown fields, so typos are a 422 instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid")


class RegisterIn(_In):
    email: EmailStr
    password: Password
    display_name: DisplayName
    invite_token: Annotated[str | None, Field(min_length=1, max_length=200)] = None  # joins its workspace too


class LoginIn(_In):
    email: EmailStr
    # Not length-checked: a short password is simply wrong (401), not malformed.
    password: Annotated[str, Field(max_length=1024)]


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str


class MeOut(UserOut):
    """The signed-in account, and whether it is an instance administrator (the web client shows /admin then)."""

    is_admin: bool


class SessionOut(BaseModel):
    """One live sign-in of the account (``GET /api/me/sessions``); ``current``: the one asking."""

    id: str
    created_at: Timestamp
    last_refreshed_at: Timestamp
    last_active_at: Timestamp  # its last request, open socket or stream (to the session sweep's interval), or refresh
    expires_at: Timestamp
    user_agent: str | None
    current: bool


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the scheme name, not a secret)
    expires_in: int


class WorkspaceIn(_In):
    name: WorkspaceName


class WorkspaceOut(BaseModel):
    id: str
    name: str
    role: Role
    created_at: Timestamp


class MemberOut(BaseModel):
    user_id: str
    display_name: str
    email: str
    role: Role
    joined_at: Timestamp


class RoleIn(_In):
    role: Role


class InviteIn(_In):
    role: InviteRole
    expires_in_seconds: Annotated[int, Field(ge=1, le=366 * 24 * 3600)] | None = None
    max_uses: Annotated[int, Field(ge=1, le=100_000)] | None = None


class InviteInfo(BaseModel):
    """An invite as listed later: the token itself is only shown once, at creation (it is stored hashed)."""

    id: str
    role: InviteRole
    created_at: Timestamp
    expires_at: Timestamp
    max_uses: int | None
    uses: int
    expired: bool


class InviteOut(BaseModel):
    id: str
    token: str
    url: str
    role: InviteRole
    expires_at: Timestamp
    max_uses: int | None
    uses: int


class AcceptOut(BaseModel):
    workspace_id: str
    role: Role
