"""What the domain needs of a running node: the document (through the sync service), the database and the
settings. The application context satisfies it; the version worker gets one before that context exists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from persistence.db import Database
    from persistence.settings import Settings
    from sync_server.service import SyncService


class Node(Protocol):
    @property
    def sync(self) -> SyncService: ...
    @property
    def db(self) -> Database: ...
    @property
    def settings(self) -> Settings: ...
