"""The sync layer's exceptions, apart from the room, so that callers (routes, the socket loop) need not import
it. Each maps to one close event or HTTP status where it is caught."""

from __future__ import annotations

import sqlite3

import asyncpg
from sqlalchemy.exc import SQLAlchemyError

from .protocol import ProtocolError


class RoomFailed(RuntimeError):
    """The room's memory may be ahead of the database (a commit failed); it is being rebuilt."""


class DocumentTooLarge(RuntimeError):
    """Applying the update would take the document past its size quota."""


class InvalidUpdate(ProtocolError):
    """An update pycrdt cannot apply."""


class MissingDependencies(ProtocolError):
    """A client's update refers to structs the server does not have: yrs would keep it as pending, outside the
    document and the size quota, for ever. A client cannot have sent those structs (the server has everything
    it sent before, in order), so the update is refused."""


# What a database or log store that is down or unreachable raises: a socket refused for one of these gets a
# retryable close (1011); anything else is a bug and is not dressed up as an outage.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
    OSError,  # connection refused or reset, and TimeoutError
)
