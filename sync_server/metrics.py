"""Prometheus metrics (exposed by the API at /metrics, documented in docs/operations.md): the sync layer's, and
the notification derivation's, which the API layer records."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("plait_connections", "Open sync sockets", ["role"])
ROOMS = Gauge("plait_rooms_loaded", "Workspace documents loaded in memory")
UPDATES_IN = Counter("plait_updates_in_total", "Updates accepted from clients and the server")
UPDATES_DROPPED = Counter("plait_updates_dropped_total", "Updates dropped", ["reason"])
MESSAGES_OUT = Counter("plait_messages_out_total", "Messages queued to sockets")
UPDATES_OUT = Counter("plait_updates_out_total", "Document update messages queued to sockets (one per socket)")
BYTES_IN = Counter("plait_bytes_in_total", "Bytes received on sync sockets")
BYTES_OUT = Counter("plait_bytes_out_total", "Bytes queued to sync sockets")
FANOUT_SECONDS = Histogram(
    "plait_fanout_seconds",
    "From receiving an update to queueing it to every socket (includes the durable commit)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
COMMIT_SECONDS = Histogram(
    "plait_commit_seconds",
    "Group-commit transaction latency",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
COMMIT_BATCH = Histogram(
    "plait_commit_batch_size", "Updates per group commit", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 512)
)
COMMIT_FAILURES = Counter("plait_commit_failures_total", "Failed group commits")
SEND_QUEUE_OVERFLOWS = Counter(
    "plait_send_queue_overflows_total", "Sockets whose send queue overflowed (each one is closed with 1013)"
)
CLOSES = Counter("plait_socket_closes_total", "Sockets closed by the server", ["code"])
SCHEMA_REPAIRS = Counter("plait_schema_repairs_total", "Task fields repaired by the schema guard")
COMPACTIONS = Counter("plait_compactions_total", "Log compactions")
AWARENESS_DROPPED = Counter("plait_awareness_dropped_total", "Awareness messages dropped", ["reason"])
AWARENESS_REWRITTEN = Counter(
    "plait_awareness_identity_rewrites_total", "Awareness states whose identity was corrected"
)
REDIS_PUBLISH_FAILURES = Counter("plait_redis_publish_failures_total", "Fan-out messages Redis did not take")
REDIS_GAP_REPAIRS = Counter("plait_redis_gap_repairs_total", "Rooms caught up from the database after a gap")
REDIS_LAG = Histogram(
    "plait_redis_fanout_lag_seconds",
    "From the origin node's commit to applying it on this node",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
FANOUT_RECEIVED = Counter(
    "plait_fanout_messages_received_total",
    "Messages this node received from Redis: on the channels of the workspaces it hosts, or the node-wide one",
    ["channel"],
)
FANOUT_PUBLISHED = Counter("plait_fanout_messages_published_total", "Messages this node published on Redis")
FANOUT_CHANNELS = Gauge("plait_fanout_workspace_channels", "Workspace channels this node is subscribed to")
NOTIFICATIONS_SENT = Counter("plait_notifications_sent_total", "Notifications stored for a recipient", ["type"])
NOTIFICATIONS_SUPPRESSED = Counter(
    "plait_notifications_suppressed_total",
    "Derived notifications not stored: the recipient is not a member, or switched the type off",
    ["reason"],
)
# Operations (deploy/prometheus/alerts.yml): readiness as the probes saw it, the derivation's backlog, webhooks.
READINESS_CHECKS = Counter("plait_readiness_checks_total", "Answers of /readyz", ["result"])
READINESS_FAILURES = Counter("plait_readiness_failures_total", "Failed checks of /readyz, by check", ["check"])
DERIVATION_LAG = Gauge(
    "plait_derivation_lag_seconds", "Age of the oldest committed change whose activity/notifications are not derived"
)
DERIVATION_FAILURES = Counter("plait_derivation_failures_total", "Windows of a workspace that could not be derived")
WEBHOOK_ATTEMPTS = Counter(
    "plait_webhook_attempts_total",
    "Webhook delivery attempts: delivered, retry (will retry), failed (gave up)",
    ["outcome"],
)
WEBHOOKS_DISABLED = Counter("plait_webhooks_disabled_total", "Webhooks disabled after consecutive failures")
