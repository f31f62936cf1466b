"""WebSocket close codes and the named close events the sync layer sends (Hocuspocus-style ``{code, reason}``).

One table: a reason string is written once, and a test or a client reads the same words for the same event.
4xxx codes the client must not retry blindly are marked permanent; the others are transient."""

from __future__ import annotations

from dataclasses import dataclass

NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED = 1003
ABNORMAL = 1006  # never sent: what a socket that dropped without a close frame reports
TOO_BIG = 1009
INTERNAL = 1011
SERVICE_RESTART = 1012  # a node stopping: what uvicorn sends its sockets, and what the service sends
TRY_AGAIN = 1013
UNAUTHENTICATED = 4401
FORBIDDEN = 4403
NOT_FOUND = 4404
READ_ONLY_NOW = 4423  # permanent for this socket: demoted to viewer; drop unsent local edits, reconnect
EPOCH_CHANGED = 4409  # permanent: the stored document was reset or restored; reload
DOCUMENT_TOO_LARGE = 4413  # permanent: the workspace document reached its size quota
RATE_LIMITED = 4529  # transient: the socket sent faster than its quota; reconnect later
TOO_MANY_SOCKETS = 4503  # transient: the account (or the node) has as many sockets open as allowed


@dataclass(frozen=True, slots=True)
class CloseEvent:
    code: int
    reason: str


# Admission (the socket is accepted, then refused with one of these).
NODE_FULL = CloseEvent(TOO_MANY_SOCKETS, "server at its socket limit, retry later")
USER_FULL = CloseEvent(TOO_MANY_SOCKETS, "too many sockets for this account, retry later")
ORIGIN_NOT_ALLOWED = CloseEvent(FORBIDDEN, "origin not allowed")
BAD_TOKEN = CloseEvent(UNAUTHENTICATED, "missing, invalid or expired token")
ACCOUNT_GONE = CloseEvent(UNAUTHENTICATED, "account no longer exists")
WORKSPACE_NOT_FOUND = CloseEvent(NOT_FOUND, "workspace not found")
STORAGE_UNAVAILABLE = CloseEvent(INTERNAL, "storage unavailable, reconnect")


def epoch_changed(epoch: str) -> CloseEvent:
    return CloseEvent(EPOCH_CHANGED, f"workspace was restored, reload (epoch {epoch})")


# An open socket.
MESSAGE_TOO_BIG = CloseEvent(TOO_BIG, "message too big")
RATE_QUOTA = CloseEvent(RATE_LIMITED, "rate quota exceeded, retry later")
STORAGE_FAILURE = CloseEvent(INTERNAL, "storage failure, reconnect")
MISSING_DEPENDENCIES = CloseEvent(UNSUPPORTED, "update with missing dependencies")
MALFORMED = CloseEvent(UNSUPPORTED, "malformed message")
BINARY_ONLY = CloseEvent(UNSUPPORTED, "binary frames only")
DOCUMENT_QUOTA = CloseEvent(DOCUMENT_TOO_LARGE, "document size quota reached")
ACCESS_WITHDRAWN = CloseEvent(FORBIDDEN, "access withdrawn")
DEMOTED_TO_VIEWER = CloseEvent(READ_ONLY_NOW, "role changed to viewer, discard unsent edits")
ACCOUNT_DISABLED = CloseEvent(UNAUTHENTICATED, "account disabled or deleted")
SESSION_ENDED = CloseEvent(UNAUTHENTICATED, "session ended, sign in again")
RESTARTING = CloseEvent(SERVICE_RESTART, "server restarting, reconnect")
SEND_BUFFER_FULL = CloseEvent(TRY_AGAIN, "send buffer full")
NOT_READING = CloseEvent(TRY_AGAIN, "not reading, reconnect")
