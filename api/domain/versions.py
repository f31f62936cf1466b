"""Version history: named, automatic and pre-restore snapshots of a workspace document, diffs, and restore.

A version is the document's whole state (one Yjs update) in ``doc_versions``, a table the update log and its
compaction never touch. Restoring never rewrites CRDT history: it is one *forward* change, attributed to the
restorer, that deletes, re-creates and edits tasks until the document's tasks equal the version's — so live
and offline clients converge on it like on any other edit, and activity/notifications/webhooks derive from it
as usual. The state just before a restore is saved as a "pre-restore" version; restoring that one undoes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pycrdt import Array, Doc, Map, Text
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from api.domain.node import Node
from persistence.doclog import UnknownDocument, doc_from_chunks
from persistence.models import Activity, DocVersion, Workspace, as_utc, new_id, utcnow
from sync_server import schema

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from sync_server.events import Committed
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.versions")

KINDS = ("named", "auto", "pre-restore")


# Fields compared by diffs and restored (``updated_at`` is bookkeeping: a restore sets it to now).
DIFF_FIELDS = (
    "title",
    "description",
    "status",
    "assignee_id",
    "due_date",
    "completed_at",
    "created_by",
    "created_at",
    "rank",
    "priority",
    "labels",
    "checklist",
    "comments",
)


def doc_from_state(state: bytes) -> Doc[Any]:
    return doc_from_chunks([state])


def tasks_by_id(doc: Doc[Any]) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in schema.list_tasks(doc)}


def diff_tasks(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What changed from ``old`` to ``new``: tasks added, removed, and per-field ``{from, to}``."""
    changed = []
    for tid, before in old.items():
        after = new.get(tid)
        if after is None:
            continue
        fields = {
            name: {"from": before.get(name), "to": after.get(name)}
            for name in DIFF_FIELDS
            if before.get(name) != after.get(name)
        }
        if fields:
            changed.append({"task_id": tid, "title": after.get("title"), "fields": fields})
    return {
        "added": [t for tid, t in new.items() if tid not in old],
        "removed": [t for tid, t in old.items() if tid not in new],
        "changed": changed,
    }


_READ = {"labels": schema.label_ids, "checklist": schema.checklist_items, "comments": schema.comments_of}


def _restore_array(task: Map[Any], name: str, wanted: list[Any]) -> bool:
    """Make a task's array hold ``wanted`` (as REST shows it: ids, or dicts for maps); False if it does."""
    if _READ[name](task) == wanted:
        return False
    array = schema.array_of(task, name)
    del array[0 : len(array)]
    array.extend([Map(dict(v)) if isinstance(v, dict) else v for v in wanted])
    return True


def restore_comments(doc: Doc[Any], target: dict[str, dict[str, Any]]) -> int:
    """The comments half of a restore, run as the server: comments come back under their own authors, which
    the schema guard allows only the server to write (anyone else's creation is attributed to its creator)."""
    touched = 0
    for tid, t in target.items():
        task = schema.task_map(doc, tid)
        if task is not None and _restore_array(task, "comments", t.get("comments") or []):
            touched += 1
    return touched


def restore_labels(doc: Doc[Any], target: list[dict[str, Any]]) -> None:
    """Make the label definitions equal ``target`` (definitions added since the version are removed)."""
    labels = schema.labels_map(doc)
    wanted = {x["id"]: x for x in target}
    for lid in list(labels.keys()):
        if lid not in wanted:
            del labels[lid]
    for lid, x in wanted.items():
        if schema.label_json(lid, labels.get(lid) if lid in labels else None) != x:
            labels[lid] = Map(dict(x))


def restore_tasks(
    doc: Doc[Any], target: dict[str, dict[str, Any]], now: str | None = None, labels: list[dict[str, Any]] | None = None
) -> int:
    """Make the document's tasks (and, given ``labels``, its label definitions) equal the version's with
    ordinary edits (one transaction: the caller's).

    Tasks not in the version are deleted, missing ones re-created under their old id, differing fields set
    (a description through the minimal text diff, so concurrent typing elsewhere in it survives; labels,
    checklist replaced when they differ; comments by :func:`restore_comments`). Returns how many tasks were
    touched.
    """
    now = now or schema.now_iso()
    if labels is not None:
        restore_labels(doc, labels)
    tasks = schema.tasks_map(doc)
    touched = 0
    for tid in list(tasks.keys()):
        if tid not in target or not isinstance(tasks[tid], Map):
            del tasks[tid]
            touched += 1
    for tid, t in target.items():
        current = tasks.get(tid) if tid in tasks else None
        if not isinstance(current, Map):
            values: dict[str, Any] = {name: t.get(name) for name in schema.SCALAR_FIELDS}
            values.update(id=tid, updated_at=now, description=Text(t.get("description") or ""))
            values.update({name: Array([]) for name in schema.ARRAY_FIELDS})
            tasks[tid] = current = Map(values)
            for name in ("labels", "checklist"):
                _restore_array(current, name, t.get(name) or [])
            touched += 1
            continue
        differs = False
        for name in schema.SCALAR_FIELDS:
            if name != "updated_at" and current.get(name) != t.get(name):
                current[name] = t.get(name)
                differs = True
        for name in ("labels", "checklist"):
            differs = _restore_array(current, name, t.get(name) or []) or differs
        desc, wanted = current.get("description"), t.get("description") or ""
        if not isinstance(desc, Text):
            current["description"] = Text(wanted)
            differs = True
        elif str(desc) != wanted:
            schema.apply_text_diff(desc, wanted)
            differs = True
        if differs:
            current["updated_at"] = now
            touched += 1
    return touched


async def save_version(
    ctx: Node,
    workspace_id: str,
    kind: str,
    label: str | None,
    user_id: str | None,
    check: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> DocVersion:
    """Store the document's current state as a version (and prune old automatic ones). ``check`` runs first in
    the transaction that stores it (quotas: raising refuses the save, nothing is stored)."""
    doc = await ctx.sync.read_document(workspace_id)
    state = doc.get_update()
    count = len(schema.list_tasks(doc))
    head = await ctx.sync.log_head(workspace_id)
    version = DocVersion(
        id=new_id(),
        workspace_id=workspace_id,
        label=label,
        kind=kind,
        state=state,
        task_count=count,
        doc_seq=head,
        created_by=user_id,
        created_at=utcnow(),
    )
    try:
        async with ctx.db.transaction() as s:
            if check is not None:
                await check(s)
            s.add(version)
            await s.flush()
            if kind == "auto":
                await _prune_auto(s, workspace_id, ctx.settings.version_retention_count)
    except IntegrityError as exc:  # the workspace was deleted since its document was read
        async with ctx.db.session() as s:
            if await s.get(Workspace, workspace_id) is None:
                raise UnknownDocument(workspace_id) from exc
        raise
    return version


async def _prune_auto(session: Any, workspace_id: str, keep: int) -> None:
    """Retention: only the newest ``keep`` automatic versions stay (named and pre-restore ones are kept)."""
    newest = (
        await session.scalars(
            select(DocVersion.seq)
            .where(DocVersion.workspace_id == workspace_id, DocVersion.kind == "auto")
            .order_by(DocVersion.seq.desc())
            .limit(max(keep, 0))
        )
    ).all()
    cond = [DocVersion.workspace_id == workspace_id, DocVersion.kind == "auto"]
    if newest:
        cond.append(DocVersion.seq < min(newest))
    await session.execute(delete(DocVersion).where(*cond))


async def restore_version(ctx: Node, version: DocVersion, user_id: str) -> DocVersion:
    """Save the current state as "pre-restore", then bring the document back to ``version`` as a forward
    change by ``user_id``. Returns the pre-restore version (restoring it is the undo).

    Edits that land between the pre-restore snapshot and the restore itself are in neither; the window is
    one database round trip.
    """
    wid = version.workspace_id
    old_doc = doc_from_state(version.state)
    target, labels = tasks_by_id(old_doc), schema.list_labels(old_doc)
    undo = await save_version(ctx, wid, "pre-restore", f"Before restoring {version.label or version.id}", user_id)
    now = schema.now_iso()
    await ctx.sync.change(wid, user_id, lambda doc: restore_tasks(doc, target, now, labels))
    await ctx.sync.change(wid, None, lambda doc: restore_comments(doc, target))
    head = await ctx.sync.log_head(wid)
    key = f"restore:{undo.id}"
    async with ctx.db.transaction() as s:
        s.add(
            Activity(
                id=new_id(),
                workspace_id=wid,
                task_id="",
                kind="restored",
                field=None,
                old_value={"version_id": undo.id},
                new_value={"version_id": version.id, "label": version.label, "kind": version.kind},
                summary=None,
                actor_id=user_id,
                doc_seq=head,
                dedup_key=key,
                created_at=utcnow(),
            )
        )
    return undo


class VersionService:
    """Automatic versions: at most one per ``version_auto_interval_seconds`` per workspace while it changes.

    The durable-update listener only marks the workspace dirty; a worker takes the snapshot once the interval
    since the last automatic version has passed, so the last state of a burst of edits is always captured.
    """

    def __init__(self, ctx: Node) -> None:
        self.ctx = ctx
        self.interval = ctx.settings.version_auto_interval_seconds
        self._dirty: set[str] = set()
        self._last: dict[str, float] = {}  # workspace -> wall time of its newest automatic version
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.saved = 0

    def start(self, sup: Supervisor) -> None:
        self._task = sup.spawn("versions", self._run())

    async def stop(self) -> None:
        """Stop the worker (a workspace still dirty gets its automatic version at the next change)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    def on_durable(self, commits: Sequence[Committed]) -> None:
        # Only a workspace that was not dirty yet needs the worker: waking it per commit costs a task switch
        # for nothing while someone types.
        if self.interval > 0 and commits and commits[0].workspace_id not in self._dirty:
            self._dirty.add(commits[0].workspace_id)
            self._wake.set()

    async def _last_auto(self, wid: str) -> float:
        """When the interval starts: the newest automatic version, else the workspace's creation (a version at
        the first change would hold a nearly empty document, and many fresh rooms would each encode one)."""
        if wid not in self._last:
            async with self.ctx.db.session() as s:
                newest: datetime | None = await s.scalar(
                    select(func.max(DocVersion.created_at)).where(
                        DocVersion.workspace_id == wid, DocVersion.kind == "auto"
                    )
                )
                if newest is None:
                    newest = await s.scalar(select(Workspace.created_at).where(Workspace.id == wid))
            self._last[wid] = as_utc(newest).timestamp() if newest is not None else 0.0
        return self._last[wid]

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            timeout: float | None = None
            for wid in list(self._dirty):
                try:
                    due = await self._last_auto(wid) + self.interval - time.time()
                    if due > 0:
                        timeout = due if timeout is None else min(timeout, due)
                        continue
                    self._dirty.discard(wid)
                    await save_version(self.ctx, wid, "auto", None, None)
                    self._last[wid] = time.time()
                    self.saved += 1
                except asyncio.CancelledError:
                    raise
                except UnknownDocument:
                    self._dirty.discard(wid)
                    log.info("automatic version of %s skipped: the workspace was deleted", wid)
                except Exception:
                    self._dirty.discard(wid)  # the next change marks it again
                    log.exception("automatic version of %s failed", wid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
