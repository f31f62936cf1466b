"""Per-process state shared by the routes: settings, database, sync service and the domain services.

Built in one step by :func:`api.composition.running_node` and frozen: nothing is filled in later, and no
route finds a service anywhere else (``app.state`` holds only this object, for the sync endpoint)."""

from __future__ import annotations

from dataclasses import dataclass

from api.domain.admin import UpdateRate
from api.domain.mail.service import MailService
from api.domain.notifications.hub import NotificationHub
from api.domain.notifications.worker import NotificationService
from api.domain.search.indexer import SearchIndex
from api.domain.session_activity import SessionActivity
from api.domain.sessions import Authenticator, SessionWatch
from api.domain.versions import VersionService
from api.domain.webhooks.service import WebhookService
from api.quotas import InFlight
from api.throttle import AuthGuards
from persistence.db import Database
from persistence.settings import Settings
from sync_server.admission import Credential
from sync_server.service import SyncService
from sync_server.supervisor import Supervisor


@dataclass(frozen=True, slots=True)
class Core:
    """The node's base services, which the domain services are built on (see ``api.domain.node.Node``)."""

    settings: Settings
    db: Database
    sync: SyncService


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    db: Database
    secret_key: str
    supervisor: Supervisor
    sync: SyncService
    hub: NotificationHub
    notifications: NotificationService
    versions: VersionService
    webhooks: WebhookService
    version_saves: InFlight  # saves and restores in progress on this node (a quota)
    auth: AuthGuards  # password hashing lanes and login/registration limits
    authenticator: Authenticator  # tokens to callers, for the sync socket and the notification stream
    sessions: SessionWatch  # ends revoked sessions' sockets and streams on every node
    activity: SessionActivity  # when each session was last used (written by the session sweep)
    search: SearchIndex  # the task index: full-text search and due dates (api/domain/search)
    mail: MailService  # the mail outbox, password reset links, invite e-mail, digests (api/domain/mail)
    updates: UpdateRate  # document updates this node committed in the last minute (GET /api/admin/stats)

    async def authenticate_token(self, token: str) -> Credential | None:
        """Who a valid token of a live session (or a personal access token) speaks for."""
        return await self.authenticator.credential(token)
