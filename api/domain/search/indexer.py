"""The task index, kept from committed changes like activity is: never by loading every room.

:meth:`SearchIndex.on_durable` only marks (workspace, task) pairs dirty. Once per window
(``PLAIT_SEARCH_INDEX_DEBOUNCE_MS``, 1 s: typing sends an update per keystroke) the worker re-reads just
those tasks from the document — the live room's when it is loaded on this node, else the document rebuilt
once from the log — and writes their rows, a transaction per 5 workspaces (on SQLite on the update log's own
thread, between two group commits: ``persistence/task_index_writes.py``). Each write carries a log
position its document state included, and a row is never replaced by one read from an older state: two
nodes indexing the same task in either order leave the newer row.

A workspace is *built* (every task indexed from its stored document) the first time it is searched, or by
``plait reindex``; the due-date scheduler builds the ones nobody searched yet, a few per scan. A process
that starts checks, once per workspace it is asked about, that the index is not behind the log (changes a
crashed node held in its window), and rebuilds it if so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.search import extract, store
from persistence import task_index_writes
from persistence.db import Database
from persistence.doclog import DocumentLog, UnknownDocument
from persistence.models import Membership, TaskIndexState, Workspace

if TYPE_CHECKING:
    from sync_server.events import Committed
    from sync_server.service import SyncService
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.search")
DRAIN_SECONDS = 5.0  # at shutdown: how long writing the last window may take
WORKSPACES_PER_STEP = 2  # workspaces read before the loop is given back
WORKSPACES_PER_WRITE = 5  # workspaces written per transaction: a short hold of SQLite's write lock


@dataclass(frozen=True)
class _Rows:
    """What one workspace's dirty tasks are now: rows to write and ids of tasks gone, read at ``doc_seq``."""

    workspace_id: str
    doc_seq: int
    rows: list[dict[str, Any]]
    gone: list[str]


class SearchIndex:
    """Maintains the task index and answers which workspaces must be (re)built before a query."""

    def __init__(self, db: Database, sync: SyncService | None, docs: DocumentLog, *, debounce: float = 1.0) -> None:
        self.db = db
        self.sync = sync
        self.docs = docs
        self.debounce = debounce
        self._dirty: dict[str, tuple[int, set[str]]] = {}  # workspace -> (highest seq seen, task ids)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._checked: set[str] = set()  # workspaces this process saw built and not behind the log
        self._building: dict[str, asyncio.Task[int]] = {}
        self.indexed = 0  # task rows written or deleted (tests, diagnostics)
        self.builds = 0
        self.failures = 0

    # ---- the worker ------------------------------------------------------------------------------------

    def start(self, sup: Supervisor) -> None:
        self._task = sup.spawn("search-index", self._run())

    async def stop(self) -> None:
        """Write what the current window holds (at most 5 s), then stop."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.wait([self._task])
        try:
            await asyncio.wait_for(self.flush(), timeout=DRAIN_SECONDS)
        except TimeoutError:
            log.warning("indexing the last changes took more than %.0f s: left to the next start", DRAIN_SECONDS)

    @property
    def pending(self) -> frozenset[str]:
        """Workspaces with changes waiting for the current window (tests wait for a window to pass)."""
        return frozenset(self._dirty)

    def on_durable(self, commits: Sequence[Committed]) -> None:
        """SyncService listener: synchronous and cheap (a set per workspace)."""
        for c in commits:
            ids = {tid for ch in c.changes if isinstance(tid := getattr(ch, "task_id", None), str)}
            if not ids:
                continue
            seq, dirty = self._dirty.get(c.workspace_id, (0, set()))
            dirty |= ids
            self._dirty[c.workspace_id] = (max(seq, c.seq), dirty)
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.debounce)  # a window from the first change: typing is indexed within it
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Index every dirty task now: read all of them, then write them in one transaction per
        ``WORKSPACES_PER_WRITE`` workspaces (a transaction per workspace was a commit, an fsync on SQLite, per
        workspace typing: with 500 of them, 500 a second beside the group commit). A batch that fails is written
        again one workspace at a time, so one bad workspace does not hold the others back."""
        dirty, self._dirty = self._dirty, {}
        batch: list[_Rows] = []
        for i, (wid, (seq, task_ids)) in enumerate(dirty.items()):
            try:
                rows = await self._read(wid, task_ids, seq)
            except asyncio.CancelledError:
                raise
            except Exception:
                await self._failed(wid)
                continue
            if rows is not None:
                batch.append(rows)
            if i % WORKSPACES_PER_STEP == WORKSPACES_PER_STEP - 1:
                await asyncio.sleep(0)  # reading is CPU work on the loop: let sockets in between
        for start in range(0, len(batch), WORKSPACES_PER_WRITE):
            chunk = batch[start : start + WORKSPACES_PER_WRITE]
            try:
                await self._write(chunk)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.info("a batch of %d workspaces' index rows failed; writing them one by one", len(chunk))
            for rows in chunk:
                try:
                    await self._write_one(rows)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    await self._failed(rows.workspace_id)

    async def _failed(self, workspace_id: str) -> None:
        """Inside the ``except``: a workspace deleted meanwhile is no error; otherwise its index is marked
        unbuilt, so the next search rebuilds it from the document."""
        try:
            async with self.db.transaction() as s:
                if await s.get(Workspace, workspace_id) is None:
                    return
                await s.execute(delete(TaskIndexState).where(TaskIndexState.workspace_id == workspace_id))
        except Exception:
            log.warning("could not mark the task index of %s for a rebuild", workspace_id)
        self.failures += 1
        self._checked.discard(workspace_id)
        log.exception("indexing tasks of %s failed; it is rebuilt at its next search", workspace_id)

    async def index_tasks(self, workspace_id: str, task_ids: Iterable[str], doc_seq: int) -> None:
        """Re-read these tasks from the document (live if loaded here) and write their rows."""
        rows = await self._read(workspace_id, task_ids, doc_seq)
        if rows is not None:
            await self._write_one(rows)

    async def _read(self, workspace_id: str, task_ids: Iterable[str], doc_seq: int) -> _Rows | None:
        assert self.sync is not None, "a running node's index"
        try:
            doc = await self.sync.read_document(workspace_id)
        except UnknownDocument:
            return None  # deleted: its rows went with it
        with doc.transaction():  # one read transaction: pycrdt opens one per access otherwise
            rows, gone = extract.rows_for(doc, sorted(task_ids))
        return _Rows(workspace_id, doc_seq, rows, gone)

    async def _write(self, batch: Sequence[_Rows]) -> None:
        if self.docs.writes_in_log_order:  # SQLite: between two group commits, not beside them
            work = [(r.workspace_id, r.doc_seq, r.rows, r.gone) for r in batch]
            await self.docs.write_among_appends(
                task_index_writes.sqlite_statements(work), task_index_writes.JSON_PARAMS
            )
            self.indexed += sum(len(r.rows) + len(r.gone) for r in batch)
            return
        async with self.db.transaction() as s:  # a few statements whatever the batch's size
            await store.upsert_many(s, self.db, [(r.workspace_id, r.doc_seq, r.rows) for r in batch])
            for r in batch:
                await store.delete_rows(s, r.workspace_id, r.gone, r.doc_seq)  # (only where tasks were deleted)
            await store.mark_many(s, self.db, [(r.workspace_id, r.doc_seq) for r in batch])
        self.indexed += sum(len(r.rows) + len(r.gone) for r in batch)

    async def _write_one(self, rows: _Rows) -> None:
        try:
            await self._write([rows])
        except IntegrityError:
            async with self.db.session() as s:
                if await s.get(Workspace, rows.workspace_id) is None:
                    return  # deleted between the read and the write
            raise

    # ---- builds ----------------------------------------------------------------------------------------

    async def build(self, workspace_id: str) -> int:
        """Index every task of the stored document (not the live room: its log position is exact). Returns
        the number of tasks; 0 for a workspace that no longer exists."""
        try:
            stored = await self.docs.load(workspace_id)
        except UnknownDocument:
            stored = None  # nothing was ever written: no tasks
        if stored is None:
            try:
                async with self.db.transaction() as s:
                    await store.replace_workspace(s, self.db, workspace_id, [], 0)
            except IntegrityError:
                return 0  # the workspace does not exist (any more)
            self._checked.add(workspace_id)
            return 0
        seq = max([stored.snapshot_seq, *(s for s, _ in stored.updates)])
        doc = stored.to_doc()
        rows = extract.all_rows(doc)
        try:
            async with self.db.transaction() as s:
                await store.replace_workspace(s, self.db, workspace_id, rows, seq)
        except IntegrityError:
            async with self.db.session() as s:
                if await s.get(Workspace, workspace_id) is None:
                    return 0
            raise
        self.builds += 1
        self._checked.add(workspace_id)
        return len(rows)

    async def _build_once(self, workspace_id: str) -> None:
        """Concurrent requests for the same workspace share one build."""
        task = self._building.get(workspace_id)
        if task is None:
            task = asyncio.ensure_future(self.build(workspace_id))
            self._building[workspace_id] = task
            task.add_done_callback(lambda _: self._building.pop(workspace_id, None))
        await asyncio.shield(task)

    async def ensure_indexed(self, session: AsyncSession, workspace_ids: Sequence[str]) -> None:
        """Build the workspaces never indexed, and those this process has not checked yet whose index is behind
        their log (a node stopped before writing its last window). Checked once per workspace per process."""
        todo = [w for w in workspace_ids if w not in self._checked]
        if not todo:
            return
        done = await store.indexed_seq(session, todo)
        heads = await self.docs.heads(todo)
        for wid in todo:
            head = heads.get(wid, 0)
            pending = self._dirty.get(wid)
            if wid not in done or (done[wid] < head and pending is None):
                await self._build_once(wid)
            self._checked.add(wid)

    async def matching_task_ids(self, session: AsyncSession, workspace_id: str, q: str) -> list[str]:
        """What the tasks list calls for ``?q=``: the ids of the workspace's matching tasks, best first."""
        await self.ensure_indexed(session, [workspace_id])
        return await store.matching_task_ids(session, workspace_id, q)

    async def search(
        self, session: AsyncSession, user_id: str, q: str, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        """``GET /api/search``: hits in every workspace of the caller (built first where never indexed)."""
        mine = await session.scalars(select(Membership.workspace_id).where(Membership.user_id == user_id))
        await self.ensure_indexed(session, list(mine))
        return await store.search_for_user(session, user_id, q, offset, limit)


async def reindex(db: Database, docs: DocumentLog, workspace_id: str | None = None) -> tuple[int, int]:
    """``plait reindex``: rebuild the task index of one workspace or of all, one document at a time (safe
    while nodes run: a row is never replaced by one read from an older state). Returns (workspaces, tasks)."""
    index = SearchIndex(db, None, docs)
    if workspace_id is not None:
        ids = [workspace_id]
    else:
        async with db.session() as s:
            ids = list(await s.scalars(select(Workspace.id).order_by(Workspace.created_at)))
    tasks = 0
    for wid in ids:
        tasks += await index.build(wid)
    return len(ids), tasks
