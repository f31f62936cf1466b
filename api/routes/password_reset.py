"""Password reset by e-mail: ask for a link (always 202), then set a new password with its token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import EmailStr, Field

from api.deps import Ctx, Session
from api.domain.mail import password_reset
from api.routes.auth import client_address, normalize_email
from api.schemas import Password, _In

router = APIRouter(prefix="/api/auth", tags=["auth"])


class ResetIn(_In):
    email: EmailStr


class ResetConfirmIn(_In):
    token: Annotated[str, Field(min_length=1, max_length=200)]
    new_password: Password


@router.post(
    "/password-reset",
    status_code=202,
    response_class=Response,
    responses={
        202: {"description": "Accepted: if the address has an account, a reset link is on its way"},
        429: {"description": "Too many reset requests for this address or from this client"},
        503: {"description": "Too many requests being handled; retry after Retry-After"},
    },
)
async def request_reset(body: ResetIn, request: Request, ctx: Ctx) -> Response:
    """Mails a single-use reset link to the account of ``email``. The answer is the same 202, as fast, for an
    address without an account: nothing is looked up before answering (the e-mail is prepared in the
    background). Limited per e-mail address and per client address."""
    ctx.mail.request_password_reset(normalize_email(body.email), client_address(request), str(request.base_url))
    return Response(status_code=202)


@router.post(
    "/password-reset/confirm",
    status_code=204,
    response_class=Response,
    responses={
        400: {"description": "Unknown, used or expired reset token"},
        503: {"description": "Too many passwords being hashed; retry after Retry-After"},
    },
)
async def confirm_reset(body: ResetConfirmIn, ctx: Ctx, session: Session) -> Response:
    """Sets the new password; the token is used up, and every session of the account ends (its open sockets
    and notification streams close with 4401). Personal access tokens stay (delete them separately)."""
    ctx.auth.register.refuse_if_full()
    _, ended = await password_reset.confirm(session, ctx.auth.register, body.token, body.new_password)
    ctx.sessions.ended(ended)
    return Response(status_code=204)
