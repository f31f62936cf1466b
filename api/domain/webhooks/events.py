"""The webhook events a committed update causes, and how a run of typing folds into one ``task.updated``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal, get_args

from sync_server.schema import TaskChange

WebhookEvent = Literal[
    "task.created",
    "task.updated",
    "task.deleted",
    "task.assigned",
    "task.completed",
    "comment.created",
    "comment.edited",
    "comment.deleted",
    "member.joined",
    "member.left",
]
EVENTS: tuple[str, ...] = get_args(WebhookEvent)


def task_events(changes: Sequence[TaskChange]) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, task id, data) for one update's task changes: one ``task.updated`` per task with every changed
    field, plus ``task.assigned`` / ``task.completed`` where they apply, and one ``comment.*`` per comment."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    updated: dict[str, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any] | None] = {}
    for ch in changes:
        tid = ch.task_id
        if ch.kind == "created":
            task = ch.task or {}
            out.append(("task.created", tid, {"task": ch.task}))
            if task.get("assignee_id"):
                out.append(
                    ("task.assigned", tid, {"task": ch.task, "assignee_id": task["assignee_id"], "previous": None})
                )
            if task.get("status") == "done":
                out.append(("task.completed", tid, {"task": ch.task}))
        elif ch.kind == "deleted":
            out.append(("task.deleted", tid, {"task": ch.task}))
        elif ch.kind == "updated" and ch.field == "comment":
            event = "comment.created" if ch.old is None else "comment.deleted" if ch.new is None else "comment.edited"
            out.append((event, tid, {"task": ch.task, "comment": ch.new or ch.old, "previous": ch.old}))
        elif ch.kind == "updated" and ch.field is not None and ch.field != "mentions":
            tasks[tid] = ch.task
            if ch.field == "description":
                updated.setdefault(tid, {})["description"] = {"edit": ch.summary}
                continue
            if ch.old == ch.new:
                continue
            updated.setdefault(tid, {})[ch.field] = {"from": ch.old, "to": ch.new}
            if ch.field == "assignee_id" and ch.new:
                out.append(("task.assigned", tid, {"task": ch.task, "assignee_id": ch.new, "previous": ch.old}))
            if ch.field == "status" and ch.new == "done":
                out.append(("task.completed", tid, {"task": ch.task}))
    for tid, fields in updated.items():
        out.append(("task.updated", tid, {"task": tasks.get(tid), "changes": fields}))
    return out


TYPING_DELAY = timedelta(seconds=2)  # description edits wait this long for more keystrokes to fold in


def is_typing(event: str, data: dict[str, Any]) -> bool:
    return event == "task.updated" and set(data.get("changes") or {}) == {"description"}


def typing_key(task_id: str, actor: str | None, seq: int) -> str:
    return f"typing:{task_id}:{actor or 'server'}:{seq}"


def merge_typing(payload: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the newer task state and the edit counts added up."""
    old = ((payload.get("data") or {}).get("changes") or {}).get("description", {}).get("edit") or {}
    new = (data.get("changes") or {}).get("description", {}).get("edit") or {}
    edit = {k: int(old.get(k, 0)) + int(new.get(k, 0)) for k in ("inserted", "deleted")}
    return {**payload, "data": {"task": data.get("task"), "changes": {"description": {"edit": edit}}}}
