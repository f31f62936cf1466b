"""Runtime configuration, read once from ``PLAIT_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import logging
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("plait.settings")
MIN_SECRET_KEY_BYTES = 32


class StartupError(RuntimeError):
    """The deployment is wrong in a way the operator must fix; the message says what and how (one line)."""


class Settings(BaseSettings):
    """Every knob of a Plait node; the defaults run a single embedded node from a fresh clone."""

    model_config = SettingsConfigDict(env_prefix="PLAIT_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("data")
    database_url: str | None = None
    redis_url: str | None = None
    redis_namespace: str = Field(default="plait", description="Prefix of every Redis key and channel")
    node_id: str | None = Field(default=None, description="This node's id in a cluster (default: random per process)")
    presence_ttl_seconds: float = 30.0
    migrate_on_start: bool | None = Field(
        default=None, description="Apply migrations when serving; default: only for SQLite"
    )
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(default=None, description="Base URL used in invite links")
    allowed_origins: list[str] = Field(default_factory=list)
    metrics_token: str | None = None
    web_dist: Path | None = Field(default=None, description="Built web client (default: web/dist of the checkout)")

    access_token_ttl_seconds: int = Field(
        default=900, gt=0, description="Access-token lifetime; clients renew it with their refresh token"
    )
    refresh_token_ttl_seconds: int = Field(
        default=30 * 24 * 3600,
        gt=0,
        description="A session not refreshed for this long ends (each refresh starts the period again)",
    )
    session_sweep_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often each node re-checks the sessions of its open sockets and streams (timed out, or "
        "revoked while it missed the broadcast)",
    )
    pat_max_per_user: int = Field(default=50, ge=1, description="Personal access tokens one account may hold")
    invite_default_ttl_seconds: int = 7 * 24 * 3600
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    password_hash_parallelism: int = 4
    login_max_failures_per_account_address: int = Field(
        default=5, description="Failed logins one address may make on one account per window, then 429"
    )
    login_max_failures_per_address: int = Field(
        default=30, description="Failed logins one address may make on all accounts per window, then 429"
    )
    login_max_failures_per_account: int = Field(
        default=5,
        description="Failed logins on one account (from anywhere) per window after which every attempt on it is"
        " delayed; never refused, so others cannot lock the owner out",
    )
    login_delay_base_seconds: float = Field(default=0.5, description="First delay; doubles with each further failure")
    login_max_delay_seconds: float = Field(default=5.0, description="Longest delay of a login attempt")
    login_failure_window_seconds: int = 900
    register_max_per_address: int = Field(
        default=10, description="Registration attempts per client address per window (per node), then 429"
    )
    register_window_seconds: float = 3600.0
    password_hash_threads: int = Field(default=2, ge=1, description="Threads checking passwords of logins")
    password_hash_register_threads: int = Field(
        default=1, ge=1, description="Threads hashing passwords of registrations (at a lower CPU priority)"
    )
    password_hash_max_waiting: int = Field(
        default=32, ge=0, description="Hashes that may wait for a thread, per lane; beyond that 503 + Retry-After"
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1",
        description="Proxies whose X-Forwarded-For/-Proto are believed (comma-separated addresses or networks;"
        " empty: none). The client address throttles count is the right-most untrusted X-Forwarded-For entry",
    )

    max_message_bytes: int = 16 * 1024 * 1024
    max_awareness_bytes: int = 64 * 1024
    max_awareness_per_second: float = 30.0
    send_queue_max_bytes: int = 32 * 1024 * 1024
    send_queue_max_messages: int = 10_000
    ws_per_message_deflate: bool = Field(
        default=False,
        description="Offer permessage-deflate on sockets: a zlib context per socket and per frame, and no shared"
        " broadcast frames (off, as in the ws server under Hocuspocus and y-websocket)",
    )
    send_stall_seconds: float = Field(
        default=15.0,
        gt=0,
        description="A socket whose pending send cannot go out for this long (its reader stopped reading) is"
        " closed with 1013",
    )
    max_awareness_clients_per_socket: int = Field(
        default=4, description="Awareness client ids one socket may hold states for (a y-websocket client has one)"
    )
    max_awareness_room_bytes: int = Field(
        default=1024 * 1024, description="Total size of the awareness states a room holds (what a newcomer receives)"
    )
    awareness_timeout_seconds: float = Field(
        default=30.0, description="Awareness states not renewed for this long are removed (y-protocols' timeout)"
    )
    max_sockets_per_user: int = Field(default=100, description="Open sync sockets per account on one node (0: no cap)")
    max_sockets_per_node: int = Field(default=20_000, description="Open sync sockets on one node (0: no cap)")
    max_sse_streams_per_user: int = Field(
        default=10, description="Open notification streams per account on one node (0: no cap)"
    )
    max_sse_streams_per_node: int = Field(
        default=5_000, description="Open notification streams on one node (0: no cap)"
    )
    group_commit_max_wait_ms: float = 0.0
    group_commit_max_batch: int = 512
    compaction_max_updates: int = 500
    compaction_max_bytes: int = 8 * 1024 * 1024
    room_idle_seconds: float = 30.0
    sync_keepalive_seconds: float = Field(
        default=10.0, gt=0, description="A socket sent nothing for this long gets an empty awareness update"
    )
    derive_batch_ms: float = Field(
        default=250.0, description="Activity and notifications are derived in one transaction per workspace per window"
    )
    quota_socket_bytes_per_second: int = Field(
        default=1024 * 1024, description="Sustained bytes per second one socket may send (burst: max_message_bytes)"
    )
    quota_max_document_bytes: int = Field(default=64 * 1024 * 1024, description="Largest workspace document")
    import_max_bytes: int = Field(
        default=32 * 1024 * 1024, description="Largest body POST /api/workspaces/import takes"
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    malloc_trim_seconds: float = Field(
        default=1.0, ge=0, description="plait serve returns free heap pages to the OS this often (0: never)"
    )

    # version history (docs/versions.md)
    version_auto_interval_seconds: float = Field(
        default=600.0, description="At most one automatic version per workspace per interval while it changes"
    )
    version_retention_count: int = Field(default=50, description="Automatic versions kept per workspace")
    max_version_saves_per_user: int = Field(
        default=1, ge=0, description="Version saves and restores one account may have in flight on a node (0: no cap)"
    )
    max_version_saves_per_node: int = Field(
        default=4,
        ge=0,
        description="Version saves and restores in flight on a node; each copies the document (0: no cap)",
    )
    # webhooks (docs/webhooks.md)
    webhook_retry_base_seconds: float = 10.0
    webhook_max_attempts: int = 8
    webhook_max_consecutive_failures: int = 20
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Deadline of one delivery attempt as a whole (resolve, connect, send, answer)"
    )
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhook URLs on private/loopback/link-local addresses (SSRF guard off)"
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=256, description="Webhook attempts in flight at once per node (one per webhook)"
    )
    # search and due dates (docs/search.md, docs/notifications.md)
    search_index_debounce_ms: float = Field(
        default=3000.0, ge=0, description="Changed tasks are re-indexed for search at most this long after a change"
    )
    due_soon_hours: float = Field(
        default=24.0, ge=0, description="due_soon goes to the assignee this long before a task is due (0: never)"
    )
    due_soon_scan_seconds: float = Field(
        default=60.0, gt=0, description="How often one node of the cluster looks for tasks due soon"
    )
    # REST quotas (docs/quotas.md)
    quota_max_tasks: int = 10_000
    quota_max_members: int = 500
    quota_rest_writes_per_minute: int = 600
    quota_rest_window_seconds: float = Field(default=60.0, description="Window of the REST write rate (tests)")
    quota_max_named_versions: int = Field(default=100, description="Named versions per workspace")
    quota_max_workspaces_per_user: int = Field(default=100, description="Workspaces a user owns")
    quota_max_user_bytes: int = Field(
        default=1024 * 1024 * 1024, description="Stored bytes (documents + versions) of the workspaces a user owns"
    )
    # e-mail: password reset, invites, notification digests (docs/accounts.md)
    smtp_host: str | None = Field(default=None, description="SMTP server; unset: no e-mail is sent")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port (465 is usual with smtp_tls=tls)")
    smtp_username: str | None = Field(default=None, description="SMTP login (with smtp_password)")
    smtp_password: str | None = None
    smtp_from: str = Field(default="Plait <plait@localhost>", description="From address of Plait's e-mail")
    smtp_tls: Literal["none", "starttls", "tls"] = Field(
        default="starttls", description="none: plain; starttls: upgrade after connecting; tls: TLS from the start"
    )
    smtp_ca_file: Path | None = Field(default=None, description="CA bundle the SMTP server's certificate is checked by")
    smtp_timeout_seconds: float = Field(default=15.0, gt=0, description="Deadline of one SMTP attempt")
    mail_retry_base_seconds: float = Field(
        default=30.0, gt=0, description="First retry of an unsent e-mail; doubles per attempt (at most 1 hour)"
    )
    mail_max_attempts: int = Field(default=10, ge=1, description="Attempts per e-mail; then it is marked failed")
    password_reset_ttl_seconds: int = Field(default=3600, gt=0, description="Lifetime of a password reset link")
    password_reset_max_per_email: int = Field(
        default=3, ge=0, description="Reset requests per e-mail address per window, then 429 (0: no limit)"
    )
    password_reset_max_per_address: int = Field(
        default=20, ge=0, description="Reset requests per client address per window, then 429 (0: no limit)"
    )
    password_reset_window_seconds: float = Field(default=3600.0, gt=0)
    mail_digest_interval_seconds: float = Field(
        default=24 * 3600.0, gt=0, description="At most one notification digest e-mail per user per interval"
    )
    mail_digest_scan_seconds: float = Field(
        default=60.0, gt=0, description="How often one node of the cluster looks for digests to send"
    )
    invite_mail_max_per_user: int = Field(
        default=50, ge=0, description="Invite e-mails one account may send per hour (per node; 0: no limit)"
    )
    # instance administration (docs/admin.md)
    registration: Literal["open", "invite-only", "closed"] = Field(
        default="open",
        description="Who may register: anyone (open), only with a valid invite token (invite-only), nobody (closed)",
    )
    audit_retention_days: int = Field(
        default=365, ge=0, description="Audit log entries older than this are deleted (0: kept forever)"
    )
    audit_prune_seconds: float = Field(
        default=3600.0, gt=0, description="How often one node of the cluster deletes expired audit entries"
    )
    audit_prune_batch: int = Field(default=1000, ge=1, description="Audit entries deleted per statement")
    redis_cluster: bool = Field(
        default=False, description="PLAIT_REDIS_URL is a Redis Cluster node (also: a redis+cluster:// URL)"
    )
    redis_pubsub: Literal["auto", "sharded", "plain"] = Field(
        default="auto", description="Fan-out channels: sharded (SSUBSCRIBE, Redis 7), plain, or auto by version"
    )
    redis_ssl_ca_certs: str | None = Field(default=None, description="CA bundle for a rediss:// URL")
    redis_ssl_certfile: str | None = Field(default=None, description="Client certificate for a rediss:// URL")
    redis_ssl_keyfile: str | None = Field(default=None, description="Client key for a rediss:// URL")
    redis_ssl_cert_reqs: Literal["required", "optional", "none"] = Field(
        default="required", description="Server certificate check for a rediss:// URL"
    )

    def uvicorn_options(self) -> dict[str, Any]:
        """uvicorn's settings (WebSocket transport, trusted proxies), for every place that starts uvicorn."""
        return {
            "ws_max_size": self.transport_max_frame_bytes(),
            "ws_per_message_deflate": self.ws_per_message_deflate,
            "proxy_headers": bool(self.forwarded_allow_ips.strip()),
            "forwarded_allow_ips": self.forwarded_allow_ips,
        }

    def transport_max_frame_bytes(self) -> int:
        """The largest frame the WebSocket server itself reads. 64 KiB above ``max_message_bytes``, so that a
        frame somewhat over the limit reaches the sync handler and is refused with a close handshake (1009). A
        frame the transport cuts off is closed with its rest unread on the socket, and the client may see the
        reset (1006) before the close frame; the fuzz test saw that, twice in five full runs."""
        return self.max_message_bytes + 64 * 1024

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'plait.db').resolve()}"

    def production_problems(self) -> tuple[list[str], list[str]]:
        """With ``PLAIT_ENV=production``: the settings refused there and those only warned about, each with its
        reason (``([], [])`` in any other environment).

        Refused: no ``PLAIT_SECRET_KEY``, a key shorter than 32 bytes, the development key generated into the
        data directory, and SQLite with ``PLAIT_REDIS_URL`` set (several nodes, each with its own file).
        Refused too: ``PLAIT_SMTP_HOST`` without ``PLAIT_PUBLIC_URL`` (mailed links would trust the Host header).
        Warned: ``PLAIT_WEBHOOK_ALLOW_PRIVATE=true`` (some deployments deliver to an internal service on
        purpose), an SMTP password sent without TLS."""
        refused: list[str] = []
        warned: list[str] = []
        if self.env != "production":
            return refused, warned
        key = self.secret_key
        dev_key_file = self.data_dir / "secret_key"
        if not key:
            refused.append(
                "PLAIT_SECRET_KEY must be set when PLAIT_ENV=production (the generated development key is not for "
                "production); generate one with `openssl rand -base64 48`"
            )
        elif len(key.encode()) < MIN_SECRET_KEY_BYTES:
            refused.append(
                f"PLAIT_SECRET_KEY is {len(key.encode())} bytes; production needs at least {MIN_SECRET_KEY_BYTES} "
                "(a short HS256 key can be guessed and tokens forged); generate one with `openssl rand -base64 48`"
            )
        elif _read(dev_key_file) == key:
            refused.append(
                f"PLAIT_SECRET_KEY is the development key generated in {dev_key_file}; production needs a key of "
                "its own: generate one with `openssl rand -base64 48`"
            )
        if self.redis_url and self.resolved_database_url().startswith("sqlite"):
            refused.append(
                "PLAIT_REDIS_URL is set (several nodes) but the database is SQLite: each node would have a "
                "database of its own; set PLAIT_DATABASE_URL to a PostgreSQL database shared by all nodes"
            )
        if self.smtp_host and not self.public_url:
            refused.append(
                "PLAIT_SMTP_HOST is set but PLAIT_PUBLIC_URL is not: mailed links (password reset, invites) would be"
                " built from the request's Host header; set PLAIT_PUBLIC_URL to the address users open Plait at"
            )
        if self.smtp_host and self.smtp_tls == "none" and self.smtp_password:
            warned.append("PLAIT_SMTP_TLS=none with a PLAIT_SMTP_PASSWORD: the SMTP password is sent unencrypted")
        if self.webhook_allow_private:
            warned.append(
                "PLAIT_WEBHOOK_ALLOW_PRIVATE=true in production: webhooks may be sent to private, loopback and "
                "link-local addresses (the SSRF guard is off)"
            )
        return refused, warned

    def resolved_secret_key(self) -> str:
        """The JWT key: configured, or (outside production) generated once and kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        if self.env == "production":
            raise StartupError(
                "PLAIT_SECRET_KEY must be set when PLAIT_ENV=production; generate one with `openssl rand -base64 48`"
            )
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        log.warning("PLAIT_SECRET_KEY is not set: generated a development key and stored it in %s", path)
        return key


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
