"""Entry point of the sync layer for the API: rooms, the WebSocket handler, the document API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from persistence.db import Database
from persistence.settings import Settings

Authenticate = Callable[[str], Awaitable[str | None]]


class SyncService:
    """Placeholder until the sync issue lands: accepts and closes with 1013 (try again later)."""

    def __init__(self, db: Database, settings: Settings, authenticate: Authenticate) -> None:
        self.db = db
        self.settings = settings
        self.authenticate = authenticate

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def serve(self, websocket: WebSocket, workspace_id: str) -> None:
        await websocket.accept()
        await websocket.close(1013)

    async def membership_changed(self, workspace_id: str, user_id: str, role: str | None) -> None:
        """Apply a role change (None: removed) to the user's open sockets in that workspace."""
        return None
