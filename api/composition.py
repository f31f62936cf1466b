"""The composition root: builds a node's parts in dependency order and stops them in the reverse order.

Read top to bottom, this is the node: the database; the sync service on it (the document store and, with
Redis, the cluster); the workers that derive from committed changes (notifications, versions, webhooks);
then the sync service starts taking changes. The supervisor runs the stop steps backwards: the sync service
stops taking changes (sockets closed with 1012, writer drained, logs folded) before the derived workers flush
what they hold (the notification worker writes its summaries through the document store), and the store and
the database close last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.context import AppContext, Core
from api.domain.admin import UpdateRate
from api.domain.audit_retention import AuditRetention
from api.domain.mail.service import MailService
from api.domain.notifications.hub import NotificationHub
from api.domain.notifications.worker import NotificationService
from api.domain.search.due_soon import DueSoonScheduler
from api.domain.search.indexer import SearchIndex
from api.domain.session_activity import SessionActivity
from api.domain.session_sweep import SessionSweep
from api.domain.sessions import Authenticator, SessionWatch
from api.domain.versions import VersionService
from api.domain.webhooks.service import WebhookService
from api.quotas import InFlight
from api.throttle import AuthGuards
from persistence.db import Database
from persistence.doclog import open_document_log
from persistence.settings import Settings
from sync_server.service import SyncService
from sync_server.supervisor import Supervisor


@asynccontextmanager
async def running_node(settings: Settings, secret_key: str, database_url: str) -> AsyncIterator[AppContext]:
    """The node's context while it runs; leaving the block stops everything, each step bounded in time."""
    async with Supervisor() as sup:
        db = Database(database_url, sqlite_synchronous=settings.sqlite_synchronous)
        sup.on_stop("database", db.dispose)

        log = open_document_log(db)
        sup.on_stop("document log", log.close)

        authenticator = Authenticator(db, secret_key)
        sync = SyncService(db, settings, authenticate=authenticator.credential, store=log)
        sessions = SessionWatch(sync)
        activity = SessionActivity()
        sweep = SessionSweep(db, sync, sessions, activity, settings.session_sweep_seconds)
        sup.on_stop("cluster", sync.close_cluster)

        hub = NotificationHub()
        hub.bridge(sync)  # before the sync service starts: its Redis listener subscribes to the kinds registered
        notifications = NotificationService(db, batch_window=settings.derive_batch_ms / 1000, store=log, hub=hub)
        versions = VersionService(Core(settings=settings, db=db, sync=sync))
        webhooks = WebhookService(db, settings)
        for name, worker in (("notifications", notifications), ("versions", versions), ("webhooks", webhooks)):
            sync.subscribe(worker.on_durable)
            worker.start(sup)
            sup.on_stop(name, worker.stop)

        updates = UpdateRate()
        sync.subscribe(updates.on_durable)
        search = SearchIndex(db, sync, log, debounce=settings.search_index_debounce_ms / 1000)
        sync.subscribe(search.on_durable)
        search.start(sup)
        sup.on_stop("search index", search.stop)
        due_soon = DueSoonScheduler(
            db, hub, search, node_id=sync.node_id, hours=settings.due_soon_hours, every=settings.due_soon_scan_seconds
        )
        due_soon.start(sup)
        sup.on_stop("due soon", due_soon.stop)

        audit_retention = AuditRetention(
            db,
            node_id=sync.node_id,
            days=settings.audit_retention_days,
            every=settings.audit_prune_seconds,
            batch=settings.audit_prune_batch,
        )
        audit_retention.start(sup)
        sup.on_stop("audit retention", audit_retention.stop)

        mail = MailService(db, settings, node_id=sync.node_id)
        mail.start(sup)
        sup.on_stop("mail", mail.stop)

        # closing the sockets, draining the writer (up to 10 s) and folding the logs (up to 10 s)
        sup.on_stop("sync", sync.stop, timeout=25.0)
        await sync.start(sup)
        sweep.start(sup)
        sup.on_stop("session sweep", sweep.stop)
        yield AppContext(
            settings=settings,
            db=db,
            secret_key=secret_key,
            supervisor=sup,
            sync=sync,
            hub=hub,
            notifications=notifications,
            versions=versions,
            webhooks=webhooks,
            version_saves=InFlight("version_saves", "version saves or restores"),
            auth=AuthGuards.from_settings(settings),
            authenticator=authenticator,
            sessions=sessions,
            activity=activity,
            search=search,
            mail=mail,
            updates=updates,
        )
