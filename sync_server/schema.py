"""The task document schema — the single source of truth (docs/document-schema.md describes it for clients).

Root ``Y.Map`` ``tasks``: task id (UUID string) -> ``Y.Map`` with ``id``, ``title`` (str), ``description``
(``Y.Text``), ``status`` (one of STATUSES), ``assignee_id`` (member id or null), ``due_date`` ("YYYY-MM-DD" or
null), ``created_by``, ``created_at``, ``updated_at``, ``completed_at`` (ISO-8601 UTC; null unless done),
``rank`` (a fractional index: the order within a column), ``priority`` (one of PRIORITIES), ``labels``
(``Y.Array`` of label ids), ``checklist`` (``Y.Array`` of ``Y.Map`` {id, text, done}) and ``comments``
(``Y.Array`` of ``Y.Map`` {id, author_id, body, created_at, edited_at}). Root ``Y.Map`` ``labels``: label id ->
``Y.Map`` {id, name, color}. Root ``Y.Map`` ``meta``: ``schema_version``.

Also here: reading tasks as JSON and the server's own edits (a new description is applied as a minimal diff,
a new label set as the minimal array edit). The change tracker is in :mod:`.tracker`, the guard in :mod:`.guard`.
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fractional_indexing import generate_key_between, generate_n_keys_between, validate_order_key
from pycrdt import Array, Doc, Map, Text

TASKS = "tasks"
LABELS = "labels"
META = "meta"
SCHEMA_VERSION = 2
STATUSES = ("todo", "in_progress", "done")
PRIORITIES = ("none", "low", "medium", "high", "urgent")
SCALAR_FIELDS = (
    "id",
    "title",
    "status",
    "assignee_id",
    "due_date",
    "created_by",
    "created_at",
    "updated_at",
    "completed_at",
    "rank",
    "priority",
)
ARRAY_FIELDS = ("labels", "checklist", "comments")
COMMENT_FIELDS = ("author_id", "body", "created_at", "edited_at")  # a comment's keys besides its id
# Fields whose changes are recorded as activity and derived into notifications and webhook events.
TRACKED_FIELDS = ("title", "description", "status", "assignee_id", "due_date", "rank", "priority")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_COLOR = "#6b7280"
MAX_LABEL_NAME = 50
# ``@[Display Name](user:USER_ID)``: Markdown-link shaped, so it renders as a link; the id is what counts.
MENTION = re.compile(r"@\[[^\]\n]{0,200}\]\(user:([0-9a-fA-F-]{36})\)")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def tasks_map(doc: Doc[Any]) -> Map[Any]:
    tasks: Map[Any] = doc.get(TASKS, type=Map)
    return tasks


def labels_map(doc: Doc[Any]) -> Map[Any]:
    labels: Map[Any] = doc.get(LABELS, type=Map)
    return labels


def meta_map(doc: Doc[Any]) -> Map[Any]:
    meta: Map[Any] = doc.get(META, type=Map)
    return meta


def valid_due_date(value: object) -> bool:
    if value is None:
        return True
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def valid_rank(value: object) -> bool:
    if not isinstance(value, str) or not value or len(value) > 200:
        return False
    try:
        validate_order_key(value)
    except Exception:
        return False
    return True


def mentioned_ids(text: str) -> set[str]:
    return {m.lower() for m in MENTION.findall(text)} if "@[" in text else set()


def _plain(value: object) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class TaskChange:
    """One change of a task, attributed later to the transaction's origin.

    ``field`` is a task field, or ``"comment"`` (``old``/``new``: the comment before and after, None when
    created or deleted; ``summary["index"]`` its place), ``"checklist"`` (``old``/``new``: done and total) or
    ``"mentions"`` (``new``: ids newly mentioned in the description; derived into notifications only)."""

    task_id: str
    kind: str  # "created" | "updated" | "deleted"
    field: str | None = None
    old: Any = None
    new: Any = None
    summary: dict[str, int] | None = None  # description edits: {"inserted": n, "deleted": m}
    task: dict[str, Any] | None = None  # the task after the change (before it, for deletions)


# ---- reading -----------------------------------------------------------------------------------------


def label_ids(task: Map[Any]) -> list[str]:
    labels = task.get("labels")
    return [v for v in labels if isinstance(v, str)] if isinstance(labels, Array) else []


def checklist_items(task: Map[Any]) -> list[dict[str, Any]]:
    items = task.get("checklist")
    if not isinstance(items, Array):
        return []
    return [
        {"id": _str(item.get("id")), "text": _str(item.get("text")) or "", "done": item.get("done") is True}
        for item in items
        if isinstance(item, Map)
    ]


def comment_json(comment: Map[Any]) -> dict[str, Any]:
    return {
        "id": _str(comment.get("id")),
        "author_id": _str(comment.get("author_id")),
        "body": _str(comment.get("body")) or "",
        "created_at": _str(comment.get("created_at")),
        "edited_at": _str(comment.get("edited_at")),
    }


def comments_of(task: Map[Any]) -> list[dict[str, Any]]:
    comments = task.get("comments")
    if not isinstance(comments, Array):
        return []
    return [comment_json(c) for c in comments if isinstance(c, Map)]


def task_to_json(task_id: str, task: object, *, with_description: bool = True) -> dict[str, Any] | None:
    """The REST shape of a task (description as a plain string); None if the entry is not a task map.

    ``with_description=False`` gives the light view the change tracker keeps for every task: no description,
    no checklist items and no comments (rendering those on every keystroke is the hot path), only counts."""
    if not isinstance(task, Map):
        return None
    out: dict[str, Any] = {"id": task_id}
    for name in SCALAR_FIELDS[1:]:
        out[name] = _plain(task.get(name))
    if out["priority"] not in PRIORITIES:
        out["priority"] = "none"
    if not isinstance(out["rank"], str):
        out["rank"] = None
    out["labels"] = label_ids(task)
    checklist = checklist_items(task)
    out["progress"] = {"done": sum(1 for i in checklist if i["done"]), "total": len(checklist)}
    comments = task.get("comments")
    out["comment_count"] = sum(1 for c in comments if isinstance(c, Map)) if isinstance(comments, Array) else 0
    if with_description:
        desc = task.get("description")
        out["description"] = str(desc) if isinstance(desc, Text) else (desc if isinstance(desc, str) else "")
        out["checklist"] = checklist
        out["comments"] = comments_of(task)
    return out


def order_key(task: dict[str, Any]) -> tuple[int, str, str]:
    """Board order: by rank, ties by task id (so concurrent moves to one place still give every client one
    order); tasks without a rank after the ranked ones, oldest first."""
    rank = task.get("rank")
    if isinstance(rank, str):
        return (0, rank, task["id"])
    return (1, task.get("created_at") or "", task["id"])


def list_tasks(doc: Doc[Any]) -> list[dict[str, Any]]:
    tasks = tasks_map(doc)
    out = [task_to_json(tid, tasks[tid]) for tid in list(tasks.keys())]
    return sorted((t for t in out if t is not None), key=lambda t: (t.get("created_at") or "", t["id"]))


def get_task(doc: Doc[Any], task_id: str) -> dict[str, Any] | None:
    tasks = tasks_map(doc)
    return task_to_json(task_id, tasks.get(task_id)) if task_id in tasks else None


def task_map(doc: Doc[Any], task_id: str) -> Map[Any] | None:
    tasks = tasks_map(doc)
    task = tasks.get(task_id) if task_id in tasks else None
    return task if isinstance(task, Map) else None


def label_json(label_id: str, label: object) -> dict[str, Any] | None:
    if not isinstance(label, Map):
        return None
    return {"id": label_id, "name": _str(label.get("name")) or "", "color": _str(label.get("color")) or DEFAULT_COLOR}


def list_labels(doc: Doc[Any]) -> list[dict[str, Any]]:
    labels = labels_map(doc)
    out = [label_json(lid, labels[lid]) for lid in list(labels.keys())]
    return sorted((x for x in out if x is not None), key=lambda x: (x["name"].lower(), x["id"]))


# ---- ranks -------------------------------------------------------------------------------------------


def column_ranks(doc: Doc[Any], status: str, *, exclude: str | None = None) -> list[tuple[str, str]]:
    """(rank, task id) of a column's ranked tasks, in order."""
    tasks = tasks_map(doc)
    out = []
    for tid in list(tasks.keys()):
        task = tasks[tid]
        if tid == exclude or not isinstance(task, Map) or task.get("status") != status:
            continue
        rank = task.get("rank")
        if valid_rank(rank):
            out.append((str(rank), tid))
    return sorted(out)


def rank_between(before: str | None, after: str | None) -> str:
    """A key strictly between two neighbours (None: an open end). Equal neighbours (two tasks moved to one
    place at once) get a key after both."""
    if before is not None and after is not None and before >= after:
        after = None
    return str(generate_key_between(before, after))


def rank_at(doc: Doc[Any], status: str, position: int | None, *, exclude: str | None = None) -> str:
    """The rank that puts a task at ``position`` (0-based; None or past the end: last) of a column."""
    ranks = [r for r, _ in column_ranks(doc, status, exclude=exclude)]
    if position is None or position >= len(ranks):
        return rank_between(ranks[-1] if ranks else None, None)
    position = max(0, position)
    return rank_between(ranks[position - 1] if position > 0 else None, ranks[position])


def rank_next_to(doc: Doc[Any], neighbour_id: str, *, after: bool, exclude: str | None = None) -> str | None:
    """The rank just before or after another task of its column; None if that task has no rank."""
    neighbour = task_map(doc, neighbour_id)
    if neighbour is None:
        return None
    ranks = column_ranks(doc, str(neighbour.get("status")), exclude=exclude)
    index = next((i for i, (_, tid) in enumerate(ranks) if tid == neighbour_id), None)
    if index is None:
        return None
    if after:
        nxt = ranks[index + 1][0] if index + 1 < len(ranks) else None
        return rank_between(ranks[index][0], nxt)
    prev = ranks[index - 1][0] if index > 0 else None
    return rank_between(prev, ranks[index][0])


# ---- writing -----------------------------------------------------------------------------------------


def checklist_item(text: str, done: bool = False, item_id: str | None = None) -> Map[Any]:
    return Map({"id": item_id or new_id(), "text": text, "done": done})


def comment_map(body: str, author_id: str | None, *, comment_id: str | None = None, now: str | None = None) -> Map[Any]:
    now = now or now_iso()
    return Map(
        {"id": comment_id or new_id(), "author_id": author_id, "body": body, "created_at": now, "edited_at": None}
    )


def create_task(
    doc: Doc[Any],
    *,
    task_id: str,
    title: str,
    description: str = "",
    status: str = "todo",
    assignee_id: str | None = None,
    due_date: str | None = None,
    priority: str = "none",
    labels: Sequence[str] = (),
    checklist: Sequence[dict[str, Any]] = (),
    created_by: str | None,
    now: str | None = None,
) -> None:
    """A new task at the end of its column, with every field a v2 document has."""
    now = now or now_iso()
    rank = rank_at(doc, status, None)
    tasks_map(doc)[task_id] = Map(
        {
            "id": task_id,
            "title": title,
            "description": Text(description),
            "status": status,
            "assignee_id": assignee_id,
            "due_date": due_date,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "completed_at": now if status == "done" else None,
            "rank": rank,
            "priority": priority,
            "labels": Array(list(dict.fromkeys(labels))),
            "checklist": Array([checklist_item(i["text"], bool(i.get("done"))) for i in checklist]),
            "comments": Array([]),
        }
    )


def apply_text_diff(text: Text, new: str) -> None:
    """Turn ``text`` into ``new`` with the smallest edits, so concurrent typing elsewhere in it survives.

    pycrdt indexes text by UTF-8 byte offset (Yjs clients by UTF-16 unit); positions are converted here.
    """
    old = str(text)
    if old == new:
        return
    offsets = [0]
    for ch in old:
        offsets.append(offsets[-1] + len(ch.encode()))
    ops = difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in reversed(ops):  # from the end: earlier offsets stay valid
        if tag in ("replace", "delete"):
            del text[offsets[i1] : offsets[i2]]
        if tag in ("replace", "insert"):
            text.insert(offsets[i1], new[j1:j2])


def array_of(task: Map[Any], name: str) -> Array[Any]:
    """The task's ``labels``/``checklist``/``comments`` array, created when a task from an old document lacks it."""
    value = task.get(name)
    if isinstance(value, Array):
        return value
    array: Array[Any] = Array([])
    task[name] = array
    integrated: Array[Any] = task[name]
    return integrated


def set_labels(task: Map[Any], wanted: Sequence[str]) -> None:
    """The minimal array edit to ``wanted`` (a set: order kept as it is, new ids appended)."""
    labels = array_of(task, "labels")
    keep = set(wanted)
    for i in reversed(range(len(labels))):
        if labels[i] not in keep:
            del labels[i]
    present = set(label_ids(task))
    for lid in dict.fromkeys(wanted):
        if lid not in present:
            labels.append(lid)


def touch(task: Map[Any], now: str | None = None) -> None:
    task["updated_at"] = now or now_iso()


def set_status(task: Map[Any], status: str, now: str) -> None:
    if task.get("status") != status:
        task["status"] = status
    if status == "done" and not task.get("completed_at"):
        task["completed_at"] = now
    elif status != "done" and task.get("completed_at") is not None:
        task["completed_at"] = None


def update_task(doc: Doc[Any], task_id: str, changes: dict[str, Any], now: str | None = None) -> bool:
    """Apply REST field changes; False if the task does not exist. A status change without a rank keeps the
    task's rank (its place among the new column's tasks follows from it)."""
    task = task_map(doc, task_id)
    if task is None:
        return False
    now = now or now_iso()
    for name, value in changes.items():
        if name == "description":
            desc = task.get("description")
            if isinstance(desc, Text):
                apply_text_diff(desc, value or "")
            else:
                task["description"] = Text(value or "")
        elif name == "labels":
            set_labels(task, value)
        elif name == "status":
            set_status(task, value, now)
        elif task.get(name) != value:
            task[name] = value
    task["updated_at"] = now
    return True


def move_task(doc: Doc[Any], task_id: str, status: str | None, rank: str, now: str | None = None) -> bool:
    task = task_map(doc, task_id)
    if task is None:
        return False
    now = now or now_iso()
    if status is not None:
        set_status(task, status, now)
    if task.get("rank") != rank:
        task["rank"] = rank
    task["updated_at"] = now
    return True


def delete_task(doc: Doc[Any], task_id: str) -> bool:
    tasks = tasks_map(doc)
    if task_id not in tasks:
        return False
    del tasks[task_id]
    return True


def find_item(array: object, item_id: str) -> tuple[int, Map[Any]] | None:
    """Index and map of the checklist item or comment with this id."""
    if not isinstance(array, Array):
        return None
    for i, item in enumerate(array):
        if isinstance(item, Map) and item.get("id") == item_id:
            return i, item
    return None


def remove_label_everywhere(doc: Doc[Any], label_ids_: Iterable[str]) -> int:
    """Take deleted labels off every task; returns how many tasks changed."""
    gone = set(label_ids_)
    tasks = tasks_map(doc)
    changed = 0
    for tid in list(tasks.keys()):
        task = tasks[tid]
        labels = task.get("labels") if isinstance(task, Map) else None
        if not isinstance(labels, Array):
            continue
        hit = False
        for i in reversed(range(len(labels))):
            if labels[i] in gone:
                del labels[i]
                hit = True
        changed += hit
    return changed


# ---- upgrading old documents -------------------------------------------------------------------------


@dataclass(frozen=True)
class Upgrade:
    ranks: dict[str, str]  # task id -> the rank it gets (tasks without a valid one, in creation order per column)
    missing: dict[str, tuple[str, ...]]  # task id -> the fields it lacks (priority, arrays)


def plan_upgrade(doc: Doc[Any]) -> Upgrade | None:
    """What a document written before schema version 2 needs; None if it is current."""
    version = meta_map(doc).get("schema_version")
    if isinstance(version, int | float) and version >= SCHEMA_VERSION:
        return None
    tasks = tasks_map(doc)
    by_column: dict[str, list[tuple[str, str]]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    last: dict[str, str] = {}
    for tid in list(tasks.keys()):
        task = tasks[tid]
        if not isinstance(task, Map):
            continue
        status = str(task.get("status"))
        rank = task.get("rank")
        if valid_rank(rank):
            last[status] = max(last.get(status, ""), str(rank))
        else:
            by_column.setdefault(status, []).append((str(task.get("created_at") or ""), tid))
        lacks = tuple(n for n in ARRAY_FIELDS if not isinstance(task.get(n), Array))
        if task.get("priority") not in PRIORITIES:
            lacks += ("priority",)
        if lacks:
            missing[tid] = lacks
    ranks: dict[str, str] = {}
    for status, entries in by_column.items():
        keys = generate_n_keys_between(last.get(status) or None, None, len(entries))
        ranks.update({tid: str(key) for (_, tid), key in zip(sorted(entries), keys, strict=True)})
    return Upgrade(ranks, missing)


def apply_upgrade(doc: Doc[Any], plan: Upgrade) -> int:
    """Defaults for what old tasks lack, then the schema version; returns fields written."""
    tasks = tasks_map(doc)
    count = 0
    for tid, rank in plan.ranks.items():
        task = task_map(doc, tid)
        if task is not None and not valid_rank(task.get("rank")):
            task["rank"] = rank
            count += 1
    for tid, lacks in plan.missing.items():
        task = tasks.get(tid) if tid in tasks else None
        if not isinstance(task, Map):
            continue
        for name in lacks:
            if name == "priority" and task.get("priority") not in PRIORITIES:
                task["priority"] = "none"
                count += 1
            elif name in ARRAY_FIELDS and not isinstance(task.get(name), Array):
                task[name] = Array([])
                count += 1
    meta_map(doc)["schema_version"] = SCHEMA_VERSION
    return count
