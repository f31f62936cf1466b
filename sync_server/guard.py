"""The schema guard: repairs what a change left invalid with a change of the server's own, which every client
receives. It never rejects an update (that breaks convergence).

One code path both looks and repairs: :func:`check` runs every rule with ``fix=False`` to find out whether there
is anything to do (no lock, no transaction), and inside the server's transaction with ``fix=True``, where the
rules see the document as it is by then. Comment authorship is the server's truth: the rules read who made the
transaction (``Context.actor_id``) and what the tracker saw it do to each comment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map, Text

from .schema import (
    COLOR,
    DEFAULT_COLOR,
    MAX_LABEL_NAME,
    PRIORITIES,
    SCHEMA_VERSION,
    STATUSES,
    TaskChange,
    find_item,
    labels_map,
    meta_map,
    new_id,
    now_iso,
    rank_at,
    remove_label_everywhere,
    tasks_map,
    valid_due_date,
    valid_rank,
)
from .tracker import Touched

MODERATORS = ("owner", "admin")  # may edit and delete anyone's comment


@dataclass(frozen=True)
class Context:
    members: Mapping[str, str]  # user id -> role
    actor_id: str | None  # the user whose transaction is checked; None: the server (imports, restores)
    changes: Sequence[TaskChange] = ()

    def may_moderate(self, author_id: object) -> bool:
        return self.actor_id is None or self.actor_id == author_id or self.members.get(self.actor_id) in MODERATORS


class _Run:
    """One pass over the touched parts: records what is wrong and, when ``fix``, repairs it at once."""

    def __init__(self, doc: Doc[Any], ctx: Context, fix: bool) -> None:
        self.doc, self.ctx, self.fix = doc, ctx, fix
        self.found: list[str] = []
        self.labels = labels_map(doc)

    def repair(self, what: str) -> bool:
        self.found.append(what)
        return self.fix

    # ---- a task --------------------------------------------------------------------------------------

    def task(self, tid: str) -> None:
        tasks = tasks_map(self.doc)
        if tid not in tasks:
            return
        task = tasks[tid]
        if not isinstance(task, Map):
            if self.repair(f"{tid}: not a map"):
                del tasks[tid]
            return
        self.scalars(tid, task)
        self.label_refs(tid, task)
        self.checklist(tid, task)
        self.comments(tid, task)

    def set(self, target: Map[Any], name: str, value: Any, what: str) -> None:
        if self.repair(what):
            target[name] = value

    def scalars(self, tid: str, task: Map[Any]) -> None:
        if task.get("id") != tid:
            self.set(task, "id", tid, f"{tid}.id")
        title = task.get("title")
        if not isinstance(title, str):
            if isinstance(title, float) and title.is_integer():
                title = int(title)  # Yjs numbers arrive as floats
            fixed = "" if title is None or not isinstance(title, str | int | float) else str(title)
            self.set(task, "title", fixed, f"{tid}.title")
        desc = task.get("description")
        if not isinstance(desc, Text):
            self.set(task, "description", Text(desc if isinstance(desc, str) else ""), f"{tid}.description")
        status = task.get("status")
        if status not in STATUSES:
            self.set(task, "status", "todo", f"{tid}.status")
            status = "todo"
        assignee = task.get("assignee_id")
        if assignee is not None and (not isinstance(assignee, str) or assignee not in self.ctx.members):
            self.set(task, "assignee_id", None, f"{tid}.assignee_id")
        if not valid_due_date(task.get("due_date")):
            self.set(task, "due_date", None, f"{tid}.due_date")
        for ts in ("created_at", "updated_at"):
            if not isinstance(task.get(ts), str):
                self.set(task, ts, now_iso(), f"{tid}.{ts}")
        created_by = task.get("created_by")
        if created_by is not None and not isinstance(created_by, str):
            self.set(task, "created_by", None, f"{tid}.created_by")
        completed = task.get("completed_at")
        if status == "done" and not isinstance(completed, str):
            self.set(task, "completed_at", now_iso(), f"{tid}.completed_at")
        elif status != "done" and completed is not None:
            self.set(task, "completed_at", None, f"{tid}.completed_at")
        if task.get("priority") not in PRIORITIES:
            self.set(task, "priority", "none", f"{tid}.priority")
        if not valid_rank(task.get("rank")) and self.repair(f"{tid}.rank"):
            task["rank"] = rank_at(self.doc, str(status), None, exclude=tid)

    def array(self, tid: str, task: Map[Any], name: str) -> Array[Any] | None:
        """The task's array ``name``; a plain list a client wrote is turned into one with the same entries."""
        value = task.get(name)
        if isinstance(value, Array):
            return value
        if not self.repair(f"{tid}.{name}"):
            return None
        entries = value if isinstance(value, list) else []
        if name != "labels":
            entries = [Map(dict(e)) for e in entries if isinstance(e, dict)]
        task[name] = Array(entries)
        fixed: Array[Any] = task[name]
        return fixed

    def label_refs(self, tid: str, task: Map[Any]) -> None:
        labels = self.array(tid, task, "labels")
        if labels is None:
            return
        seen: set[str] = set()
        bad = []
        for i, lid in enumerate(labels):
            if not isinstance(lid, str) or lid in seen or lid not in self.labels:
                bad.append(i)
            else:
                seen.add(lid)
        if bad and self.repair(f"{tid}.labels: {len(bad)} unknown or repeated"):
            for i in reversed(bad):
                del labels[i]

    def entries(self, tid: str, name: str, array: Array[Any]) -> list[Map[Any]]:
        """The array's maps, after turning plain objects into maps and dropping anything else."""
        for i in reversed(range(len(array))):
            entry = array[i]
            if isinstance(entry, Map):
                continue
            if self.repair(f"{tid}.{name}[{i}]: not a map"):
                del array[i]
                if isinstance(entry, dict):
                    array.insert(i, Map(dict(entry)))
        return [e for e in array if isinstance(e, Map)]

    def item_ids(self, tid: str, name: str, items: list[Map[Any]]) -> None:
        seen: set[str] = set()
        for item in items:
            iid = item.get("id")
            if not isinstance(iid, str) or not iid or iid in seen:
                self.set(item, "id", new_id(), f"{tid}.{name}: id")
            else:
                seen.add(iid)

    def checklist(self, tid: str, task: Map[Any]) -> None:
        array = self.array(tid, task, "checklist")
        if array is None:
            return
        items = self.entries(tid, "checklist", array)
        self.item_ids(tid, "checklist", items)
        for item in items:
            text = item.get("text")
            if not isinstance(text, str):
                self.set(item, "text", "" if text is None else str(text), f"{tid}.checklist: text")
            if not isinstance(item.get("done"), bool):
                self.set(item, "done", bool(item.get("done")), f"{tid}.checklist: done")

    def comments(self, tid: str, task: Map[Any]) -> None:
        array = self.array(tid, task, "comments")
        if array is None:
            return
        items = self.entries(tid, "comments", array)
        self.authorship(tid, array)
        self.item_ids(tid, "comments", items)
        for c in items:
            body = c.get("body")
            if not isinstance(body, str):
                self.set(c, "body", "" if body is None else str(body), f"{tid}.comments: body")
            if not isinstance(c.get("created_at"), str):
                self.set(c, "created_at", now_iso(), f"{tid}.comments: created_at")
            edited = c.get("edited_at")
            if edited is not None and not isinstance(edited, str):
                self.set(c, "edited_at", None, f"{tid}.comments: edited_at")
            author = c.get("author_id")
            if author is not None and not isinstance(author, str):
                self.set(c, "author_id", None, f"{tid}.comments: author_id")

    def authorship(self, tid: str, array: Array[Any]) -> None:
        """What the transaction did to each comment, checked against who did it."""
        ctx = self.ctx
        for ch in ctx.changes:
            if ch.task_id != tid or ch.field != "comment":
                continue
            old, new = ch.old, ch.new
            cid = (new or old or {}).get("id")
            if not isinstance(cid, str):
                continue
            found = find_item(array, cid)
            if old is None:  # created: the author is whoever made the transaction
                if found and ctx.actor_id is not None and found[1].get("author_id") != ctx.actor_id:
                    self.set(found[1], "author_id", ctx.actor_id, f"{tid}.comments[{cid}]: forged author")
            elif new is None:  # deleted
                if not ctx.may_moderate(old.get("author_id")) and found is None:
                    if self.repair(f"{tid}.comments[{cid}]: deleted by someone else"):
                        index = min((ch.summary or {}).get("index", len(array)), len(array))
                        array.insert(
                            index, Map({k: old.get(k) for k in ("id", "author_id", "body", "created_at", "edited_at")})
                        )
            elif found is not None:  # edited
                fixed = ("author_id", "created_at")
                names = (
                    fixed
                    if ctx.may_moderate(old.get("author_id"))
                    else ("author_id", "body", "created_at", "edited_at")
                )
                for name in names:
                    if (
                        ctx.actor_id is not None
                        and found[1].get(name) != old.get(name)
                        and found[1].get(name) == new.get(name)
                    ):
                        self.set(found[1], name, old.get(name), f"{tid}.comments[{cid}].{name}: not the author's")

    # ---- label definitions ---------------------------------------------------------------------------

    def label(self, lid: str) -> None:
        labels = self.labels
        if lid not in labels:
            return
        label = labels[lid]
        if not isinstance(label, Map):
            if self.repair(f"label {lid}: not a map"):
                del labels[lid]
                remove_label_everywhere(self.doc, [lid])
            return
        if label.get("id") != lid:
            self.set(label, "id", lid, f"label {lid}.id")
        name = label.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_LABEL_NAME:
            fixed = (name.strip() if isinstance(name, str) else "")[:MAX_LABEL_NAME] or "Label"
            self.set(label, "name", fixed, f"label {lid}.name")
        color = label.get("color")
        if not isinstance(color, str) or not COLOR.match(color):
            self.set(label, "color", DEFAULT_COLOR, f"label {lid}.color")

    def labels_deleted(self, lids: Iterable[str]) -> None:
        """A deleted label leaves every task (a client may delete the definition alone)."""
        gone = [lid for lid in lids if lid not in self.labels]
        if not gone:
            return
        tasks = tasks_map(self.doc)
        for tid in list(tasks.keys()):
            task = tasks[tid]
            labels = task.get("labels") if isinstance(task, Map) else None
            if isinstance(labels, Array) and any(v in gone for v in labels):
                if self.repair(f"{tid}.labels: deleted label"):
                    remove_label_everywhere(self.doc, gone)
                    return

    def version(self) -> None:
        if meta_map(self.doc).get("schema_version") != SCHEMA_VERSION:
            self.set(meta_map(self.doc), "schema_version", SCHEMA_VERSION, "schema_version")


def check(doc: Doc[Any], touched: Touched, ctx: Context, *, fix: bool) -> list[str]:
    """What is wrong with the touched parts (repaired when ``fix``, inside the caller's transaction)."""
    run = _Run(doc, ctx, fix)
    for lid in sorted(touched.labels):
        run.label(lid)
    run.labels_deleted(touched.labels_deleted)
    for tid in sorted(touched.tasks):
        run.task(tid)
    if touched.tasks:
        run.version()
    return run.found
