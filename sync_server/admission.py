"""Who may open a sync socket, for which workspace: origin, token, membership → a verdict.

Admission reads the request once and keeps nothing of it (the token, the query and the membership row must not
stay referenced for the hours a socket lives). It does not touch rooms: the caller loads the room for an
``Admitted`` verdict and checks its epoch (``epoch_refusal``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers, QueryParams
from starlette.types import Scope

from persistence.membership import Member
from persistence.models import is_uuid

from . import close_codes
from .close_codes import CloseEvent
from .errors import STORAGE_ERRORS

log = logging.getLogger("plait.sync")


@dataclass(frozen=True, slots=True)
class Credential:
    """Who a token speaks for: the account, the session (or personal access token) it belongs to, whose
    revocation closes the socket, and whether its scope is read-only (the socket is then a viewer's)."""

    user_id: str
    session_id: str | None = None
    read_only: bool = False


Authenticate = Callable[[str], Awaitable[Credential | None]]  # token -> who it speaks for, if valid and live
FindMember = Callable[[str, str], Awaitable[Member | None]]  # (workspace id, user id)
UserExists = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Admitted:
    user_id: str
    display_name: str
    role: str
    epoch: str | None  # the document epoch the client's local history belongs to (``?epoch=``), if it sent one
    session_id: str | None = None
    read_only: bool = False  # a read-scoped token: a viewer whatever the member's role


@dataclass(frozen=True, slots=True)
class Refusal:
    event: CloseEvent


class Admission:
    def __init__(
        self,
        *,
        authenticate: Authenticate,
        find_member: FindMember,
        user_exists: UserExists,
        allowed_origins: Collection[str],
    ) -> None:
        self._authenticate = authenticate
        self._find_member = find_member
        self._user_exists = user_exists
        self._allowed_origins = allowed_origins

    async def admit(self, scope: Scope, workspace_id: str) -> Admitted | Refusal:
        headers = Headers(scope=scope)
        if not self.origin_allowed(headers):
            return Refusal(close_codes.ORIGIN_NOT_ALLOWED)
        query = QueryParams(scope.get("query_string", b""))
        token = bearer_token(query, headers)
        try:
            credential = await self._authenticate(token) if token else None
        except STORAGE_ERRORS as exc:
            return storage_unavailable(workspace_id, exc)
        if credential is None:
            return Refusal(close_codes.BAD_TOKEN)
        user_id = credential.user_id
        try:
            # One query on the way in: the membership lookup joins the account, so a member's account exists.
            member = await self._find_member(workspace_id, user_id) if is_uuid(workspace_id) else None
            if member is None:
                if not await self._user_exists(user_id):
                    return Refusal(close_codes.ACCOUNT_GONE)
                return Refusal(close_codes.WORKSPACE_NOT_FOUND)
        except STORAGE_ERRORS as exc:  # a clean, retryable close instead of a dead socket
            return storage_unavailable(workspace_id, exc)
        role = "viewer" if credential.read_only else member.role
        return Admitted(
            user_id,
            member.display_name,
            role,
            query.get("epoch") or None,
            credential.session_id,
            credential.read_only,
        )

    def origin_allowed(self, headers: Headers) -> bool:
        """Browsers send Origin; only the server's own origin and configured ones may open a socket."""
        origin = headers.get("origin")
        if not origin:
            return True  # not a browser: authentication decides
        if origin in self._allowed_origins or "*" in self._allowed_origins:
            return True
        host = headers.get("host", "")
        return urlsplit(origin).netloc == host


def epoch_refusal(admitted: Admitted, epoch: str) -> Refusal | None:
    """The client's history belongs to a previous life of this document (storage reset or restored from a
    backup): merging it would duplicate content. It must drop its local copy and reload."""
    if admitted.epoch and admitted.epoch != epoch:
        return Refusal(close_codes.epoch_changed(epoch))
    return None


def storage_unavailable(workspace_id: str, exc: BaseException) -> Refusal:
    log.warning("refusing socket to %s: storage unavailable (%r)", workspace_id, exc)
    return Refusal(close_codes.STORAGE_UNAVAILABLE)


def bearer_token(query: QueryParams, headers: Headers) -> str | None:
    """The token from ``?token=`` (browsers cannot set headers on a WebSocket) or ``Authorization: Bearer``."""
    token = query.get("token")
    if token:
        return token
    return bearer_from_header(headers.get("authorization"))


def bearer_from_header(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (scheme in any case), else None: the one
    parser of that header, for the sockets here and for the REST callers that read it themselves."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None
