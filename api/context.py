"""Per-process state shared by the routes: settings, database, sync service."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.security import decode_access_token
from persistence.db import Database
from persistence.membership import user_exists
from persistence.settings import Settings
from sync_server.service import SyncService


@dataclass
class AppContext:
    settings: Settings
    db: Database
    secret_key: str
    sync: SyncService = field(init=False)

    def token_user(self, token: str) -> str | None:
        """The user id a valid token (signature, expiry) speaks for; whether the account still exists is the
        caller's check (the sync endpoint's membership lookup joins the account)."""
        return decode_access_token(token, self.secret_key)

    async def authenticate_token(self, token: str) -> str | None:
        """User id for a valid token of an existing account (used by the sync endpoint too)."""
        user_id = self.token_user(token)
        if user_id is None:
            return None
        return user_id if await user_exists(self.db, user_id) else None
