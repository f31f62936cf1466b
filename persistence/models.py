"""SQLAlchemy models: the one description of Plait's tables (Alembic migrations create them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    """Whether ``value`` can be an id at all (checked before a query: PostgreSQL refuses a malformed uuid)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything Plait stores is UTC, so say so on the wire."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_z(value: datetime) -> str:
    """A stored time as ISO 8601 with a ``Z``, the one form the API and webhooks send."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


UUID = String(36)
TS = DateTime(timezone=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    # instance administration (migration 0009, docs/admin.md): granted only by ``plait admin grant``
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    disabled_at: Mapped[datetime | None] = mapped_column(TS)  # a disabled account cannot sign in or use a token


class Workspace(Base):
    __tablename__ = "workspaces"
    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(UUID, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    workspace_id: Mapped[str] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    joined_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    __table_args__ = (Index("ix_memberships_user_id", "user_id"),)


class Invite(Base):
    __tablename__ = "invites"
    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(UUID, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TS)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


class Notification(Base):
    __tablename__ = "notifications"
    # Monotonic cursor for pagination and SSE Last-Event-ID; ``id`` is the public identifier.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(UUID, unique=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"))
    workspace_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    task_id: Mapped[str | None] = mapped_column(UUID)
    actor_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("users.id", ondelete="SET NULL"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Identifies the change that caused it, so several nodes never create it twice.
    dedup_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        UniqueConstraint("user_id", "dedup_key", name="uq_notifications_user_dedup"),
        Index("ix_notifications_user_seq", "user_id", "seq"),
    )


class NotificationPreference(Base):
    __tablename__ = "notification_preferences"
    user_id: Mapped[str] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Document(Base):
    """Head of one workspace's Yjs document: the last log sequence number and the storage epoch."""

    __tablename__ = "documents"
    workspace_id: Mapped[str] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    epoch: Mapped[str] = mapped_column(UUID, default=new_id)
    updated_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class DocUpdate(Base):
    """Append-only log of Yjs v1 updates, in apply order (``seq`` is contiguous per workspace)."""

    __tablename__ = "doc_updates"
    workspace_id: Mapped[str] = mapped_column(
        UUID, ForeignKey("documents.workspace_id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    actor_id: Mapped[str | None] = mapped_column(UUID)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class DocSnapshot(Base):
    """Merged state of every log row up to ``upto_seq`` (those rows are deleted in the same transaction)."""

    __tablename__ = "doc_snapshots"
    workspace_id: Mapped[str] = mapped_column(
        UUID, ForeignKey("documents.workspace_id", ondelete="CASCADE"), primary_key=True
    )
    upto_seq: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # How ``data`` is encoded (persistence/snapshot_codec.py): NULL as is, "lz4" compressed by Plait
    # (PostgreSQL); raw_bytes is then the length of the document itself, which the size quota counts.
    codec: Mapped[str | None] = mapped_column(String(16))
    raw_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class LoginFailure(Base):
    """Failed logins, shared by all nodes, for throttling by account and by client address."""

    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow, index=True)


class Activity(Base):
    """One field-level task change (text edits summarized), derived from the document's update log.

    ``doc_seq`` is the log sequence number of the update that caused it; ``dedup_key`` (unique per workspace)
    makes recording idempotent, so a retried or repeated derivation never records a change twice.
    """

    __tablename__ = "activity"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(UUID, unique=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # created | updated | deleted
    field: Mapped[str | None] = mapped_column(String(40))
    old_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    new_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    actor_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("users.id", ondelete="SET NULL"))
    doc_seq: Mapped[int] = mapped_column(BigInteger)
    dedup_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    __table_args__ = (
        UniqueConstraint("workspace_id", "dedup_key", name="uq_activity_workspace_dedup"),
        Index("ix_activity_workspace_seq", "workspace_id", "seq"),
        Index("ix_activity_workspace_task_seq", "workspace_id", "task_id", "seq"),
    )


class DocVersion(Base):
    """A saved state of a workspace document (full Yjs update), independent of the log and its compaction.

    ``kind``: "named" (a user saved it), "auto" (at most one per interval while the document changes; only
    the newest few are kept) or "pre-restore" (taken just before a restore: restoring it undoes the restore).
    """

    __tablename__ = "doc_versions"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(UUID, unique=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[bytes] = mapped_column(LargeBinary)
    task_count: Mapped[int] = mapped_column(Integer, default=0)
    doc_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # log head when taken (informational)
    created_by: Mapped[str | None] = mapped_column(UUID, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    __table_args__ = (Index("ix_doc_versions_workspace_seq", "workspace_id", "seq"),)


class Webhook(Base):
    """An HTTP endpoint that receives a workspace's events, signed with ``secret`` (HMAC-SHA256)."""

    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed attempts
    disabled_at: Mapped[datetime | None] = mapped_column(TS)
    created_by: Mapped[str | None] = mapped_column(UUID, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook, stored before it is sent (survives restarts), retried with backoff.

    ``dedup_key`` (unique per webhook) names the change that caused it, so a repeated derivation never
    sends the same event twice.
    """

    __tablename__ = "webhook_deliveries"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(UUID, unique=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(UUID, ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(TS)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    dedup_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        UniqueConstraint("webhook_id", "dedup_key", name="uq_webhook_deliveries_webhook_dedup"),
        Index("ix_webhook_deliveries_webhook_seq", "webhook_id", "seq"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )


class AuthSession(Base):
    """One sign-in (a refresh-token family): its access tokens carry its id (``sid``) and die with it.

    Revoked by logout, "log out everywhere", a password change, or the reuse of a rotated refresh token."""

    __tablename__ = "auth_sessions"
    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    refreshed_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TS)  # moves forward with every refresh
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    last_active_at: Mapped[datetime | None] = mapped_column(TS)  # migration 0011; api/domain/session_activity.py


class RefreshToken(Base):
    """Every refresh token a session was given (SHA-256 of it): the current one has ``used_at`` NULL; presenting
    a used one again is a reuse, which revokes the whole session."""

    __tablename__ = "refresh_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(UUID, ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(TS)


class PersonalAccessToken(Base):
    """A token for scripts (``plait_pat_...``), stored as its SHA-256; scopes: read, write, admin."""

    __tablename__ = "personal_access_tokens"
    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(TS)
    last_used_at: Mapped[datetime | None] = mapped_column(TS)


class TaskIndex(Base):
    """One task of a workspace document, as search and the due-date scheduler read it (issue 23).

    Derived data: maintained from committed changes by ``api.domain.search.indexer`` and rebuilt from the
    document at any time (``plait reindex``). ``body`` is the searchable text besides the title (description,
    comment bodies, checklist items). The full-text index over ``title`` and ``body`` is the database's own
    and lives only in the migration (0007): an FTS5 table kept by triggers on SQLite, a generated ``tsvector``
    column with a GIN index on PostgreSQL (``FULLTEXT_OBJECTS``). ``doc_seq`` is a log sequence number the
    row's document state included at least: a write never replaces a row read from a newer state.
    """

    __tablename__ = "task_index"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16), default="none")
    assignee_id: Mapped[str | None] = mapped_column(String(64))
    due_date: Mapped[str | None] = mapped_column(String(10))  # "YYYY-MM-DD" (sorts as text)
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    rank: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[str | None] = mapped_column(String(40))  # the document's ISO string
    body: Mapped[str] = mapped_column(Text, default="")
    doc_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    indexed_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    __table_args__ = (
        UniqueConstraint("workspace_id", "task_id", name="uq_task_index_workspace_task"),
        Index("ix_task_index_due_date", "due_date"),
    )


class TaskIndexState(Base):
    """A workspace whose task index was built from its document once; from then on changes keep it."""

    __tablename__ = "task_index_state"
    workspace_id: Mapped[str] = mapped_column(UUID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    built_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    doc_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class SchedulerLease(Base):
    """Which node runs a cluster-wide periodic job (``name``) until ``expires_at``; renewed while it runs, taken
    over by another node once it lapses (a node that stopped or died)."""

    __tablename__ = "scheduler_leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(TS)


class PasswordResetToken(Base):
    """A password reset link (SHA-256 of its token): works once (``used_at``), until ``expires_at``."""

    __tablename__ = "password_reset_tokens"
    id: Mapped[str] = mapped_column(UUID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TS)
    used_at: Mapped[datetime | None] = mapped_column(TS)


class MailMessage(Base):
    """The mail outbox: one e-mail, stored before it is sent (survives restarts and a failing SMTP server), sent
    by a worker with backoff. ``body`` is emptied once the mail is sent or given up (it may hold a reset link)."""

    __tablename__ = "mail_outbox"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(UUID, unique=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))  # password_reset | invite | digest
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (Index("ix_mail_outbox_status_next", "status", "next_attempt_at"),)


class MailPreference(Base):
    """A user's e-mail channel: the digest of unread notifications (opt-in), and where the last one stopped."""

    __tablename__ = "mail_preferences"
    user_id: Mapped[str] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    digest_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    last_digest_at: Mapped[datetime | None] = mapped_column(TS)
    last_digest_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # notifications up to here were mailed


class DeletedAccount(Base):
    """An account its owner deleted: the ``users`` row stays as "Deleted user" (no e-mail, no password), so the
    content it authored keeps its attribution; everything personal is gone."""

    __tablename__ = "deleted_accounts"
    user_id: Mapped[str] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


# Full-text objects of the task index that SQLAlchemy cannot describe, per dialect (created by migration 0007):
# schema comparisons leave them out.
FULLTEXT_OBJECTS = {
    "sqlite": ("task_index_fts",),  # an FTS5 table (and its shadow tables task_index_fts_*), three triggers
    "postgresql": ("search_vector", "ix_task_index_search_vector"),  # generated tsvector column, GIN index
}


class AuditEntry(Base):
    """One recorded action (docs/admin.md#audit-log): who did what to what, when, from which address.

    Append-only: no route changes or deletes an entry. ``workspace_id`` has no foreign key on purpose, so the
    entries of a deleted workspace (its deletion among them) stay for the instance administrators. ``actor_id``
    is NULL for the command line; ``actor_email`` keeps who it was after the account is gone."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(UUID, unique=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("users.id", ondelete="SET NULL"))
    actor_email: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str | None] = mapped_column(UUID)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    address: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        Index("ix_audit_log_workspace_seq", "workspace_id", "seq"),
        Index("ix_audit_log_actor_seq", "actor_id", "seq"),
        Index("ix_audit_log_target_seq", "target_id", "seq"),  # migration 0010
    )
