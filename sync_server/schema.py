"""The task document schema — the single source of truth (docs/document-schema.md describes it for clients).

Root ``Y.Map`` ``tasks``: task id (UUID string) -> ``Y.Map`` with ``id``, ``title`` (str), ``description``
(``Y.Text``), ``status`` (one of STATUSES), ``assignee_id`` (member id or null), ``due_date`` ("YYYY-MM-DD" or
null), ``created_by``, ``created_at``, ``updated_at``, ``completed_at`` (ISO-8601 UTC; null unless done).

Also here: reading tasks as JSON, server-side edits (a new description is applied as a minimal diff), the
change tracker that turns Yjs events into field-level ``TaskChange`` records, and the schema guard that
repairs invalid values with a server-authored change (never by rejecting an update: that breaks convergence).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pycrdt import Doc, Map, Text
from pycrdt._pycrdt import MapEvent as RawMapEvent
from pycrdt._pycrdt import TextEvent as RawTextEvent

log = logging.getLogger("plait.schema")

TASKS = "tasks"
STATUSES = ("todo", "in_progress", "done")
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
)
TRACKED_FIELDS = ("title", "description", "status", "assignee_id", "due_date")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tasks_map(doc: Doc[Any]) -> Map[Any]:
    tasks: Map[Any] = doc.get(TASKS, type=Map)
    return tasks


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


def task_to_json(task_id: str, task: object, *, with_description: bool = True) -> dict[str, Any] | None:
    """The REST shape of a task (description as a plain string); None if the entry is not a task map.

    ``with_description=False`` skips rendering the text, the costly part of a long description."""
    if not isinstance(task, Map):
        return None
    out: dict[str, Any] = {"id": task_id}
    for name in SCALAR_FIELDS[1:]:
        value = task.get(name)
        out[name] = value if isinstance(value, str | int | float | bool) or value is None else None
    if with_description:
        desc = task.get("description")
        out["description"] = str(desc) if isinstance(desc, Text) else (desc if isinstance(desc, str) else "")
    return out


def list_tasks(doc: Doc[Any]) -> list[dict[str, Any]]:
    tasks = tasks_map(doc)
    out = [task_to_json(tid, tasks[tid]) for tid in list(tasks.keys())]
    return sorted((t for t in out if t is not None), key=lambda t: (t.get("created_at") or "", t["id"]))


def get_task(doc: Doc[Any], task_id: str) -> dict[str, Any] | None:
    tasks = tasks_map(doc)
    return task_to_json(task_id, tasks.get(task_id)) if task_id in tasks else None


def create_task(
    doc: Doc[Any],
    *,
    task_id: str,
    title: str,
    description: str = "",
    status: str = "todo",
    assignee_id: str | None = None,
    due_date: str | None = None,
    created_by: str | None,
    now: str | None = None,
) -> None:
    now = now or now_iso()
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


def update_task(doc: Doc[Any], task_id: str, changes: dict[str, Any], now: str | None = None) -> bool:
    """Apply REST field changes; False if the task does not exist."""
    tasks = tasks_map(doc)
    task = tasks.get(task_id) if task_id in tasks else None
    if not isinstance(task, Map):
        return False
    now = now or now_iso()
    for name, value in changes.items():
        if name == "description":
            desc = task.get("description")
            if isinstance(desc, Text):
                apply_text_diff(desc, value or "")
            else:
                task["description"] = Text(value or "")
        elif task.get(name) != value:
            task[name] = value
    if "status" in changes:
        if changes["status"] == "done" and not task.get("completed_at"):
            task["completed_at"] = now
        elif changes["status"] != "done" and task.get("completed_at") is not None:
            task["completed_at"] = None
    task["updated_at"] = now
    return True


def delete_task(doc: Doc[Any], task_id: str) -> bool:
    tasks = tasks_map(doc)
    if task_id not in tasks:
        return False
    del tasks[task_id]
    return True


# ---- change tracking -----------------------------------------------------------------------------------


@dataclass
class TaskChange:
    """One field-level change of a task, attributed later to the transaction's origin."""

    task_id: str
    kind: str  # "created" | "updated" | "deleted"
    field: str | None = None
    old: Any = None
    new: Any = None
    summary: dict[str, int] | None = None  # description edits: {"inserted": n, "deleted": m}
    task: dict[str, Any] | None = None  # the task after the change (before it, for deletions)


def _plain(value: object) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return None


@dataclass
class TaskTracker:
    """Collects the task changes of each transaction from ``observe_deep`` events (read inside the transaction;
    turned into TaskChange records right after it)."""

    doc: Doc[Any]
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    _raw: list[tuple[Any, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._tasks = tasks = tasks_map(self.doc)
        for tid in list(tasks.keys()):
            js = task_to_json(tid, tasks[tid], with_description=False)
            if js is not None:
                self.cache[tid] = js
        # The Rust-level deep observer, not ``Map.observe_deep``: pycrdt's wrapper builds a Python event object
        # for every event (the target type, a read transaction) that this tracker never reads. Only the path,
        # the changed keys and the text delta are read here: about a quarter of an update's apply cost.
        self._sub = tasks.integrated.observe_deep(self._on_events)

    def close(self) -> None:
        self._sub.drop()
        with self.doc.transaction():  # releases the callback in pycrdt >= 0.14 (pycrdt #421 workaround)
            pass

    def _on_events(self, events: Iterable[Any]) -> None:
        try:
            for ev in events:
                self._read(ev)
        except Exception:  # an observer must not raise into yrs; the update itself is applied regardless
            log.exception("task change tracking failed")

    def _read(self, ev: Any) -> None:
        path = ev.path
        kind = type(ev)
        if kind is RawMapEvent:
            keys: dict[str, dict[str, Any]] = ev.keys
            if not path:
                for tid, ch in keys.items():
                    self._raw.append(("entry", str(tid), ch.get("action")))
            elif len(path) == 1:
                for name, ch in keys.items():
                    old, new = ch.get("oldValue"), ch.get("newValue")
                    self._raw.append(("field", str(path[0]), str(name), _plain(old), _plain(new)))
        elif kind is RawTextEvent and len(path) == 2 and path[1] == "description":
            delta: list[dict[str, Any]] = ev.delta
            ins: int = sum(len(d["insert"]) for d in delta if isinstance(d.get("insert"), str))
            dele: int = sum(int(d["delete"]) for d in delta if "delete" in d)
            self._raw.append(("text", str(path[0]), ins, dele))

    def collect(self) -> tuple[list[TaskChange], set[str]]:
        """The changes since the last call, and the task ids whose entry or fields changed (for the schema
        guard: typing inside a description cannot break the schema, so text edits alone are not checked).

        ``TaskChange.task`` carries the task without its description (rendering a long text on every keystroke
        is the hot path), except for creations."""
        raw, self._raw = self._raw, []
        if not raw:
            return [], set()
        tasks = self._tasks  # not tasks_map(): Doc.get opens and commits a transaction each call
        changes: list[TaskChange] = []
        created: set[str] = set()
        touched: set[str] = set()
        text_edits: dict[str, list[int]] = {}
        for item in raw:
            kind, tid = item[0], item[1]
            if kind != "text":
                touched.add(tid)
            if kind == "entry":
                if item[2] == "delete":
                    changes.append(TaskChange(tid, "deleted", task=self.cache.pop(tid, {"id": tid})))
                    created.discard(tid)
                else:
                    created.add(tid)
            elif kind == "field" and tid not in created and item[2] in TRACKED_FIELDS:
                changes.append(TaskChange(tid, "updated", field=item[2], old=item[3], new=item[4]))
            elif kind == "text" and tid not in created:
                acc = text_edits.setdefault(tid, [0, 0])
                acc[0] += item[2]
                acc[1] += item[3]
        for tid, (ins, dele) in text_edits.items():
            changes.append(TaskChange(tid, "updated", field="description", summary={"inserted": ins, "deleted": dele}))
        for tid in touched:
            js = task_to_json(tid, tasks.get(tid), with_description=False) if tid in tasks else None
            if js is not None:
                self.cache[tid] = js
        for ch in changes:
            if ch.kind != "deleted":
                ch.task = self.cache.get(ch.task_id)
        for tid in created:
            if tid in self.cache and tid in tasks:
                changes.insert(0, TaskChange(tid, "created", task=task_to_json(tid, tasks.get(tid))))
        return changes, touched


# ---- schema guard -------------------------------------------------------------------------------------


def find_repairs(doc: Doc[Any], task_ids: Iterable[str], member_ids: set[str]) -> dict[str, dict[str, Any] | None]:
    """Per task id: the field values that make it valid again, or None to remove an entry that is not a map."""
    tasks = tasks_map(doc)
    repairs: dict[str, dict[str, Any] | None] = {}
    for tid in task_ids:
        if tid not in tasks:
            continue
        task = tasks[tid]
        if not isinstance(task, Map):
            repairs[tid] = None
            continue
        fix: dict[str, Any] = {}
        if task.get("id") != tid:
            fix["id"] = tid
        if not isinstance(task.get("title"), str):
            title = task.get("title")
            if isinstance(title, float) and title.is_integer():
                title = int(title)  # Yjs numbers arrive as floats
            fix["title"] = "" if title is None or not isinstance(title, str | int | float) else str(title)
        desc = task.get("description")
        if not isinstance(desc, Text):
            fix["description"] = desc if isinstance(desc, str) else ""
        status = task.get("status")
        if status not in STATUSES:
            fix["status"] = status = "todo"
        assignee = task.get("assignee_id")
        if assignee is not None and (not isinstance(assignee, str) or assignee not in member_ids):
            fix["assignee_id"] = None
        if not valid_due_date(task.get("due_date")):
            fix["due_date"] = None
        for ts in ("created_at", "updated_at"):
            if not isinstance(task.get(ts), str):
                fix[ts] = now_iso()
        created_by = task.get("created_by")
        if created_by is not None and not isinstance(created_by, str):
            fix["created_by"] = None
        completed = task.get("completed_at")
        if status == "done" and not isinstance(completed, str):
            fix["completed_at"] = now_iso()
        elif status != "done" and completed is not None:
            fix["completed_at"] = None
        if fix:
            repairs[tid] = fix
    return repairs


def apply_repairs(doc: Doc[Any], repairs: dict[str, dict[str, Any] | None]) -> int:
    """Apply what ``find_repairs`` found (re-checked: the document may have moved on). Returns fields fixed."""
    tasks = tasks_map(doc)
    count = 0
    for tid, fix in repairs.items():
        if tid not in tasks:
            continue
        if fix is None:
            if not isinstance(tasks[tid], Map):
                del tasks[tid]
                count += 1
            continue
        task = tasks[tid]
        if not isinstance(task, Map):
            continue
        for name, value in fix.items():
            task[name] = Text(value) if name == "description" else value
            count += 1
    return count
