"""The change tracker: turns a transaction's Yjs events into ``TaskChange`` records and tells the schema guard
what the transaction touched.

The events are read inside the transaction (only paths, changed keys and text deltas) and turned into records
right after it, by comparing what changed with a cache of each task's light view, comments, checklist and
mentions: the cache is what makes "who deleted whose comment" answerable after the fact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map, Text
from pycrdt._pycrdt import MapEvent as RawMapEvent
from pycrdt._pycrdt import TextEvent as RawTextEvent

from .schema import (
    ARRAY_FIELDS,
    COMMENT_FIELDS,
    TRACKED_FIELDS,
    TaskChange,
    checklist_items,
    comments_of,
    labels_map,
    mentioned_ids,
    task_to_json,
    tasks_map,
)

log = logging.getLogger("plait.schema")

MENTION_CHARS = frozenset("@[]()")


@dataclass
class Touched:
    """What a transaction touched that the schema guard must check (typing inside a description cannot break
    the schema, so text edits alone are not in it)."""

    tasks: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)  # label definitions added or changed
    labels_deleted: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.labels or self.labels_deleted)


def _plain(value: object) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return None


@dataclass
class _Dirty:
    entries: dict[str, str] = field(default_factory=dict)  # task id -> last entry action ("add"/"delete"/...)
    fields: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    text: dict[str, list[int]] = field(default_factory=dict)  # task id -> [inserted, deleted]
    rescan: set[str] = field(default_factory=set)  # descriptions that may have gained a mention
    comments: set[str] = field(default_factory=set)
    checklist: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    label_defs: dict[str, str] = field(default_factory=dict)  # label id -> action
    touched: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.entries or self.fields or self.text or self.touched or self.label_defs)


@dataclass
class TaskTracker:
    """Collects the task changes of each transaction (see the module docstring)."""

    doc: Doc[Any]
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    _comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _checklists: dict[str, dict[str, tuple[str, bool]]] = field(default_factory=dict)
    _mentions: dict[str, set[str]] = field(default_factory=dict)
    _dirty: _Dirty = field(default_factory=_Dirty)

    def __post_init__(self) -> None:
        self._tasks = tasks = tasks_map(self.doc)
        self._labels = labels_map(self.doc)
        for tid in list(tasks.keys()):
            self._remember(tid, tasks[tid])
        # The Rust-level deep observers, not ``Map.observe_deep``: pycrdt's wrapper builds a Python event object
        # for every event (the target type, a read transaction) that this tracker never reads.
        self._subs = [
            tasks.integrated.observe_deep(self._on_events),
            self._labels.integrated.observe_deep(self._on_label_events),
        ]

    def close(self) -> None:
        for sub in self._subs:
            sub.drop()
        with self.doc.transaction():  # releases the callback in pycrdt >= 0.14 (pycrdt #421 workaround)
            pass

    def _remember(self, tid: str, task: object) -> None:
        js = task_to_json(tid, task, with_description=False)
        if js is None or not isinstance(task, Map):
            return
        self.cache[tid] = js
        self._comments[tid] = comments_of(task)
        self._checklists[tid] = {str(i["id"]): (i["text"], i["done"]) for i in checklist_items(task)}
        desc = task.get("description")
        self._mentions[tid] = mentioned_ids(str(desc)) if isinstance(desc, Text) else set()

    def _forget(self, tid: str) -> dict[str, Any]:
        self._comments.pop(tid, None)
        self._checklists.pop(tid, None)
        self._mentions.pop(tid, None)
        return self.cache.pop(tid, {"id": tid})

    # ---- inside the transaction ----------------------------------------------------------------------

    def _on_events(self, events: Iterable[Any]) -> None:
        try:
            for ev in events:
                self._read(ev)
        except Exception:  # an observer must not raise into yrs; the update itself is applied regardless
            log.exception("task change tracking failed")

    def _read(self, ev: Any) -> None:
        path = ev.path
        kind = type(ev)
        d = self._dirty
        if not path:
            if kind is RawMapEvent:
                for tid, ch in ev.keys.items():
                    d.entries[str(tid)] = str(ch.get("action"))
                    d.touched.add(str(tid))
            return
        tid = str(path[0])
        if len(path) == 1 and kind is RawMapEvent:
            d.touched.add(tid)
            for name, ch in ev.keys.items():
                name = str(name)
                if name in ARRAY_FIELDS:
                    getattr(d, name).add(tid)
                elif name == "description":
                    d.rescan.add(tid)
                else:
                    d.fields.append((tid, name, _plain(ch.get("oldValue")), _plain(ch.get("newValue"))))
            return
        part = path[1]
        if part == "description" and kind is RawTextEvent and len(path) == 2:
            delta: list[dict[str, Any]] = ev.delta
            inserted = [d_["insert"] for d_ in delta if isinstance(d_.get("insert"), str)]
            deleted = sum(int(d_["delete"]) for d_ in delta if "delete" in d_)
            acc = d.text.setdefault(tid, [0, 0])
            acc[0] += sum(len(s) for s in inserted)
            acc[1] += deleted
            if any(not MENTION_CHARS.isdisjoint(s) for s in inserted) or (deleted and self._mentions.get(tid)):
                d.rescan.add(tid)
        elif part in ARRAY_FIELDS:
            d.touched.add(tid)
            getattr(d, str(part)).add(tid)

    def _on_label_events(self, events: Iterable[Any]) -> None:
        try:
            for ev in events:
                kind = type(ev)
                if not ev.path and kind is RawMapEvent:
                    keys: dict[str, dict[str, Any]] = ev.keys
                    for lid, ch in keys.items():
                        self._dirty.label_defs[str(lid)] = str(ch.get("action"))
                elif ev.path:
                    self._dirty.label_defs.setdefault(str(ev.path[0]), "update")
        except Exception:
            log.exception("label change tracking failed")

    # ---- right after it ------------------------------------------------------------------------------

    def collect(self) -> tuple[list[TaskChange], Touched]:
        """The changes since the last call, and what the schema guard must check.

        ``TaskChange.task`` carries the light view of the task (no description, checklist items or comments),
        except for creations."""
        d, self._dirty = self._dirty, _Dirty()
        touched = Touched()
        for lid, action in d.label_defs.items():
            (touched.labels_deleted if action == "delete" else touched.labels).add(lid)
        if not d:
            return [], touched
        tasks = self._tasks  # not tasks_map(): Doc.get opens and commits a transaction each call
        changes: list[TaskChange] = []
        created: list[str] = []
        for tid, action in d.entries.items():
            if action == "delete" or tid not in tasks:
                if tid in self.cache:
                    changes.append(TaskChange(tid, "deleted", task=self._forget(tid)))
            else:
                if tid in self.cache:  # replaced by a new map under the same id
                    changes.append(TaskChange(tid, "deleted", task=self._forget(tid)))
                if isinstance(tasks.get(tid), Map):
                    created.append(tid)
        fresh = set(created)
        for tid, name, old, new in d.fields:
            if tid not in fresh and tid in self.cache and name in TRACKED_FIELDS:
                changes.append(TaskChange(tid, "updated", field=name, old=old, new=new))
        for tid, (ins, dele) in d.text.items():
            if tid not in fresh and tid in self.cache:
                changes.append(
                    TaskChange(tid, "updated", field="description", summary={"inserted": ins, "deleted": dele})
                )
        for tid in created:
            self.cache[tid] = {"id": tid}
            self._comments[tid], self._checklists[tid], self._mentions[tid] = [], {}, set()
            d.comments.add(tid)
            d.rescan.add(tid)
        for tid in d.touched | d.comments | d.checklist | d.labels | d.rescan:
            task = tasks.get(tid) if tid in tasks else None
            if not isinstance(task, Map) or tid not in self.cache:
                continue
            if tid not in fresh:
                touched.tasks.add(tid)
            if tid in d.comments:
                changes.extend(self._comment_changes(tid, task))
            if tid in d.checklist or tid in fresh:
                checklist = self._checklist_change(tid, task)
                if tid not in fresh:
                    changes.extend(checklist)
            if tid in d.rescan:
                changes.extend(self._mention_change(tid, task))
            old_labels = self.cache[tid].get("labels", [])
            js = task_to_json(tid, task, with_description=False)
            if js is not None:
                if tid in d.labels and tid not in fresh and js["labels"] != old_labels:
                    changes.append(TaskChange(tid, "updated", field="labels", old=old_labels, new=js["labels"]))
                self.cache[tid] = js
        touched.tasks |= fresh | {tid for tid in d.entries if tid in tasks}
        for ch in changes:
            if ch.kind != "deleted":
                ch.task = self.cache.get(ch.task_id)
        for tid in reversed(created):
            if tid in tasks:
                changes.insert(0, TaskChange(tid, "created", task=task_to_json(tid, tasks.get(tid))))
        return changes, touched

    def _comment_changes(self, tid: str, task: Map[Any]) -> list[TaskChange]:
        old, new = self._comments.get(tid, []), comments_of(task)
        self._comments[tid] = new
        old_by_id = {c["id"]: (i, c) for i, c in enumerate(old)}
        new_ids = {c["id"] for c in new}
        out = []
        for i, c in enumerate(new):
            before = old_by_id.get(c["id"])
            if before is None:
                out.append(TaskChange(tid, "updated", field="comment", new=c, summary={"index": i}))
            elif any(before[1][k] != c[k] for k in COMMENT_FIELDS):
                out.append(TaskChange(tid, "updated", field="comment", old=before[1], new=c, summary={"index": i}))
        for cid, (i, c) in old_by_id.items():
            if cid not in new_ids:
                out.append(TaskChange(tid, "updated", field="comment", old=c, summary={"index": i}))
        return out

    def _checklist_change(self, tid: str, task: Map[Any]) -> list[TaskChange]:
        old = self._checklists.get(tid, {})
        new = {str(i["id"]): (i["text"], i["done"]) for i in checklist_items(task)}
        self._checklists[tid] = new
        summary = {
            "added": sum(1 for k in new if k not in old),
            "removed": sum(1 for k in old if k not in new),
            "checked": sum(1 for k, v in new.items() if k in old and v[1] and not old[k][1]),
            "unchecked": sum(1 for k, v in new.items() if k in old and not v[1] and old[k][1]),
            "edited": sum(1 for k, v in new.items() if k in old and v[0] != old[k][0]),
        }
        if not any(summary.values()):
            return []

        def progress(items: dict[str, tuple[str, bool]]) -> dict[str, int]:
            return {"done": sum(1 for _, done in items.values() if done), "total": len(items)}

        return [TaskChange(tid, "updated", field="checklist", old=progress(old), new=progress(new), summary=summary)]

    def _mention_change(self, tid: str, task: Map[Any]) -> list[TaskChange]:
        desc = task.get("description")
        now = mentioned_ids(str(desc)) if isinstance(desc, Text) else set()
        added = now - self._mentions.get(tid, set())
        self._mentions[tid] = now
        return [TaskChange(tid, "updated", field="mentions", new=sorted(added))] if added else []
