"""What the sync layer tells the rest of the node: a change is committed (durable, in log order).

Listeners (notifications, webhooks, versions) get these values, not rooms or write requests, so the
durability pipeline can change without them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Committed:
    workspace_id: str
    seq: int  # its log sequence number: derived data keyed by it happens exactly once
    actor_id: str | None
    source: str  # Principal.source: "ws:<id>", "rest", "server", "remote"
    changes: tuple[object, ...]  # field-level changes the document model recorded (sync_server.schema.TaskChange)


# Called synchronously after each flush with that flush's commits (one workspace, in log order): must be cheap.
CommitListener = Callable[[Sequence[Committed]], None]
