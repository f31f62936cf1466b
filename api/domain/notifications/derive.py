"""What a committed update causes, derived without I/O: the notifications (before membership and preference
filtering) and the activity rows. Both carry a key derived from the update's log sequence number, so a change
is recorded once however often it is derived."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync_server.schema import TaskChange, mentioned_ids

NOTIFICATION_TYPES = (
    "task_assigned",
    "task_unassigned",
    "task_completed",
    "task_due_date_changed",
    "member_joined",
    "mentioned",
    "commented",
    "due_soon",
)
MAX_NOTIFICATION_TASK_ID = 36  # notifications.task_id column width
MAX_ACTIVITY_TASK_ID = 64  # activity.task_id column width
EXCERPT = 140  # characters of a comment that a notification, an activity row or a webhook event carries


def excerpt(text: object) -> str:
    text = text if isinstance(text, str) else ""
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def comment_summary(comment: dict[str, Any] | None) -> dict[str, Any] | None:
    """A comment as derived records carry it: its id, author and the start of its text."""
    if comment is None:
        return None
    return {"id": comment.get("id"), "author_id": comment.get("author_id"), "excerpt": excerpt(comment.get("body"))}


@dataclass(frozen=True)
class Planned:
    """A notification to create, before membership and preference filtering."""

    user_id: str
    type: str
    workspace_id: str
    task_id: str | None
    actor_id: str | None
    data: dict[str, Any]
    dedup_key: str


def derive_notifications(
    workspace_id: str, seq: int, actor_id: str | None, changes: Sequence[TaskChange]
) -> list[Planned]:
    """The notifications one update causes: never to its actor, at most one per (recipient, task, type)."""
    out: dict[tuple[str, str], Planned] = {}

    def add(user: object, type_: str, ch: TaskChange, data: dict[str, Any]) -> None:
        if not isinstance(user, str) or not user or user == actor_id:
            return
        if len(ch.task_id) > MAX_NOTIFICATION_TASK_ID:
            return  # not a task id the schema allows; nothing sensible to point at
        key = f"{workspace_id}:{seq}:{ch.task_id}:{type_}"
        out.setdefault((user, key), Planned(user, type_, workspace_id, ch.task_id, actor_id, data, key))

    for ch in changes:
        task = ch.task or {}
        base = {"title": task.get("title")}
        if ch.kind == "created":
            assignee = task.get("assignee_id")
            add(assignee, "task_assigned", ch, {**base, "assignee_id": assignee})
        elif ch.kind == "updated" and ch.field == "assignee_id" and ch.old != ch.new:
            add(ch.new, "task_assigned", ch, {**base, "assignee_id": ch.new})
            add(ch.old, "task_unassigned", ch, {**base, "assignee_id": ch.new})
        elif ch.kind == "updated" and ch.field == "status" and ch.new == "done" and ch.old != "done":
            data = {**base, "completed_at": task.get("completed_at")}
            add(task.get("created_by"), "task_completed", ch, data)
            add(task.get("assignee_id"), "task_completed", ch, data)
        elif ch.kind == "updated" and ch.field == "due_date" and ch.old != ch.new:
            data = {**base, "old": ch.old, "new": ch.new, "due_date": ch.new}
            add(task.get("assignee_id"), "task_due_date_changed", ch, data)
        elif ch.kind == "updated" and ch.field == "mentions":
            for user in ch.new or ():
                add(user, "mentioned", ch, {**base, "source": "description"})
        elif ch.kind == "updated" and ch.field == "comment" and ch.new is not None:
            new_body = ch.new.get("body") or ""
            mentioned = mentioned_ids(new_body) - mentioned_ids((ch.old or {}).get("body") or "")
            data = {**base, "source": "comment", "comment": comment_summary(ch.new)}
            for user in sorted(mentioned):
                add(user, "mentioned", ch, data)
            if ch.old is None:  # a new comment: the task's people hear of it (unless mentioned in it already)
                for user in (task.get("assignee_id"), task.get("created_by")):
                    if user not in mentioned:
                        add(user, "commented", ch, {**base, "comment": comment_summary(ch.new)})
    return list(out.values())


def activity_rows(
    workspace_id: str, seq: int, actor_id: str | None, changes: Sequence[TaskChange], now: datetime
) -> list[dict[str, Any]]:
    """One row per field-level change (creations and deletions carry the whole task). Without an ``id``: most
    description edits are folded into an earlier row, so the coalescer gives one only to a row it inserts."""
    rows: dict[str, dict[str, Any]] = {}
    for ch in changes:
        if len(ch.task_id) > MAX_ACTIVITY_TASK_ID or ch.field == "mentions":
            continue
        key = f"{seq}:{ch.task_id}:{ch.kind}:{ch.field or ''}"
        old, new = ch.old, ch.new
        if ch.kind == "created":
            old, new = None, ch.task
        elif ch.kind == "deleted":
            old, new = ch.task, None
        elif ch.field == "comment":  # one row per comment: several in one update are several changes
            key = f"{key}:{(ch.new or ch.old or {}).get('id')}"
            old, new = comment_summary(ch.old), comment_summary(ch.new)
        rows.setdefault(
            key,
            {
                "workspace_id": workspace_id,
                "task_id": ch.task_id,
                "kind": ch.kind,
                "field": ch.field,
                "old_value": old,
                "new_value": new,
                "summary": None if ch.field == "comment" else ch.summary,
                "actor_id": actor_id,
                "doc_seq": seq,
                "dedup_key": key,
                "created_at": now,
            },
        )
    return list(rows.values())
