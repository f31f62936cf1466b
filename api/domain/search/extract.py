"""A task of the document as one row of the task index, read without I/O and defensively: documents written
before task model v2 lack the new keys, and a client may have written anything (the schema guard repairs it
shortly after, and the next change re-indexes the task)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pycrdt import Array, Doc, Map, Text

from sync_server.schema import STATUSES, tasks_map, valid_due_date

PRIORITIES = ("none", "low", "medium", "high", "urgent")
MAX_BODY_CHARS = 100_000  # searchable text kept per task (PostgreSQL's tsvector holds at most 1 MB)
MAX_TITLE_CHARS = 2_000
MAX_LABELS = 100
MAX_ID = 64  # task_index.task_id and assignee_id width


def _text(value: object) -> str:
    if isinstance(value, Text):
        return str(value)
    return value if isinstance(value, str) else ""


def _short_str(value: object, most: int) -> str | None:
    return value if isinstance(value, str) and len(value) <= most else None


def _items(value: object) -> list[Any]:
    """The entries of a ``Y.Array`` (anything else: none)."""
    if not isinstance(value, Array):
        return []
    return [value[i] for i in range(len(value))]


def searchable_body(task: Map[Any]) -> str:
    """Description, then comment bodies, then checklist item texts, one per line, cut at ``MAX_BODY_CHARS``."""
    parts = [_text(task.get("description"))]
    for field, key in (("comments", "body"), ("checklist", "text")):
        for item in _items(task.get(field)):
            if isinstance(item, Map):
                parts.append(_text(item.get(key)))
    body = "\n".join(p for p in parts if p)
    return body[:MAX_BODY_CHARS]


def task_row(task_id: str, task: object) -> dict[str, Any] | None:
    """The index row of one task (without workspace and bookkeeping); None if the entry is not a task."""
    if not isinstance(task, Map) or len(task_id) > MAX_ID:
        return None
    status = task.get("status")
    priority = task.get("priority")
    due = task.get("due_date")
    labels = [x for x in _items(task.get("labels")) if isinstance(x, str) and len(x) <= MAX_ID][:MAX_LABELS]
    return {
        "task_id": task_id,
        "title": _text(task.get("title"))[:MAX_TITLE_CHARS],
        "status": status if status in STATUSES else "todo",
        "priority": priority if priority in PRIORITIES else "none",
        "assignee_id": _short_str(task.get("assignee_id"), MAX_ID),
        "due_date": due if isinstance(due, str) and valid_due_date(due) else None,
        "labels": labels,
        "rank": _short_str(task.get("rank"), 200),
        "updated_at": _short_str(task.get("updated_at"), 40),
        "body": searchable_body(task),
    }


def rows_for(doc: Doc[Any], task_ids: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the given tasks, and the ids among them that are no longer tasks (to delete)."""
    tasks = tasks_map(doc)
    rows: list[dict[str, Any]] = []
    gone: list[str] = []
    for tid in task_ids:
        row = task_row(tid, tasks.get(tid)) if tid in tasks else None
        if row is None:
            gone.append(tid)
        else:
            rows.append(row)
    return rows, gone


def all_rows(doc: Doc[Any]) -> list[dict[str, Any]]:
    """Rows of every task of the document (a rebuild)."""
    tasks = tasks_map(doc)
    return [row for tid in list(tasks.keys()) if (row := task_row(tid, tasks.get(tid))) is not None]
