"""REST quotas (docs/quotas.md): per workspace task count, members, document size and named versions; per user
owned workspaces and stored bytes (413); and the write rate (429).

Every refusal names its quota in the JSON ``detail`` and in an ``X-Plait-Quota`` header, so clients can tell
them apart; nothing is changed by a refused request, and reads and deletions always stay possible.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pycrdt import Doc
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError
from api.security import PAT_PREFIX, decode_access_token, hash_token
from persistence.models import DocSnapshot, DocUpdate, DocVersion, Membership, User, Workspace
from persistence.settings import Settings
from sync_server import schema
from sync_server.admission import bearer_from_header

if TYPE_CHECKING:
    from api.domain.node import Node

QUOTA_HEADER = "X-Plait-Quota"


def quota_error(quota: str, detail: str, status: int = 413, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(status, f"Quota exceeded ({quota}): {detail}", headers={QUOTA_HEADER: quota, **(headers or {})})


def too_many_tasks(settings: Settings) -> ApiError:
    limit = settings.quota_max_tasks
    return quota_error("tasks", f"a workspace holds at most {limit} tasks; delete some first")


def check_task_count(doc: Doc[Any], settings: Settings, adding: int = 1) -> None:
    """Call inside the change function, before changing anything (so a refusal writes nothing)."""
    if len(schema.tasks_map(doc)) + adding > settings.quota_max_tasks:
        raise too_many_tasks(settings)


def body_bytes(values: dict[str, Any]) -> int:
    """A rough upper bound of what a REST write adds to the document (field values plus map overhead)."""
    return 64 + sum(len(str(v).encode()) + 32 for v in values.values() if v is not None)


async def document_bytes(ctx: Node, workspace_id: str) -> int:
    """The stored size of the document (snapshot + log), the same measure the sync socket's quota uses."""
    return await ctx.sync.document_size(workspace_id)


async def check_document_size(ctx: Node, workspace_id: str, incoming: int) -> None:
    """413 when the document plus ``incoming`` bytes would pass ``quota_max_document_bytes``, or its owners'
    stored bytes ``quota_max_user_bytes``."""
    limit = ctx.settings.quota_max_document_bytes
    if await document_bytes(ctx, workspace_id) + incoming > limit:
        raise quota_error("document_bytes", f"the workspace document may hold at most {limit} bytes")
    async with ctx.db.session() as session:
        await check_owner_bytes(session, ctx.settings, workspace_id, incoming)


def _stored_bytes(user_id: Any) -> Any:
    """SQL: what the workspaces ``user_id`` (a value or a column) owns store: document snapshots (their raw
    size, as the document quota counts them), the update log not yet folded into them, and every version."""
    owned = select(Membership.workspace_id).where(Membership.user_id == user_id, Membership.role == "owner")
    snapshots = select(
        func.coalesce(func.sum(func.coalesce(DocSnapshot.raw_bytes, func.length(DocSnapshot.data))), 0)
    ).where(DocSnapshot.workspace_id.in_(owned))
    log = select(func.coalesce(func.sum(func.length(DocUpdate.data)), 0)).where(DocUpdate.workspace_id.in_(owned))
    versions = select(func.coalesce(func.sum(func.length(DocVersion.state)), 0)).where(
        DocVersion.workspace_id.in_(owned)
    )
    return snapshots.scalar_subquery() + log.scalar_subquery() + versions.scalar_subquery()


async def user_bytes(session: AsyncSession, user_id: str) -> int:
    return int(await session.scalar(select(_stored_bytes(user_id))) or 0)


def _too_many_user_bytes(settings: Settings) -> ApiError:
    limit = settings.quota_max_user_bytes
    return quota_error(
        "user_bytes",
        f"the workspaces of one owner may store at most {limit} bytes (documents and versions); "
        "delete versions or workspaces first",
    )


async def check_owner_bytes(session: AsyncSession, settings: Settings, workspace_id: str, incoming: int) -> None:
    """413 when a write of ``incoming`` bytes to the workspace would take one of its owners past
    ``quota_max_user_bytes`` (the owners' storage is what grows, whoever writes)."""
    owners = await session.scalars(
        select(Membership.user_id).where(Membership.workspace_id == workspace_id, Membership.role == "owner")
    )
    # One query per owner (a workspace has few): a correlated form summed every owner's storage on the node.
    fullest = max([await user_bytes(session, uid) for uid in owners], default=0)
    if int(fullest or 0) + incoming > settings.quota_max_user_bytes:
        raise _too_many_user_bytes(settings)


# ---- count quotas under concurrency ---------------------------------------------------------------------
# A count quota is checked and its row inserted in one transaction that first locks the row the count belongs
# to (the owner's user row, the workspace's row): concurrent requests for the same owner take turns, each
# counting what the previous one committed, on every node. PostgreSQL: SELECT ... FOR NO KEY UPDATE (it does
# not conflict with the key-share locks that inserting child rows takes). SQLite: a no-op UPDATE of the row
# as the transaction's first write, which takes the database's write lock (waiting with the busy timeout)
# before the count is read; a later write could not, as the transaction would read an older snapshot.


async def _lock_row(session: AsyncSession, model: type[User] | type[Workspace], row_id: str) -> None:
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(model)
            .where(model.id == row_id)
            .values(created_at=model.created_at)
            .execution_options(synchronize_session=False)
        )
    else:
        await session.execute(select(model.id).where(model.id == row_id).with_for_update(key_share=True))


async def lock_owner(session: AsyncSession, user_id: str) -> None:
    """Before counting what ``user_id`` owns, in the transaction that will add to it (see above)."""
    await _lock_row(session, User, user_id)


async def lock_workspace(session: AsyncSession, workspace_id: str) -> None:
    """Before counting what the workspace holds, in the transaction that will add to it (see above)."""
    await _lock_row(session, Workspace, workspace_id)


async def check_new_workspace(session: AsyncSession, settings: Settings, user_id: str) -> None:
    """Before ``user_id`` creates a workspace: 413 ``workspaces`` when they own ``quota_max_workspaces_per_user``
    already, ``user_bytes`` when what they own stores ``quota_max_user_bytes`` already. Call after
    :func:`lock_owner`, in the transaction that creates the workspace."""
    limit = settings.quota_max_workspaces_per_user
    owned = await session.scalar(
        select(func.count()).select_from(Membership).where(Membership.user_id == user_id, Membership.role == "owner")
    )
    if int(owned or 0) >= limit:
        raise quota_error("workspaces", f"a user owns at most {limit} workspaces; delete one first")
    if await user_bytes(session, user_id) >= settings.quota_max_user_bytes:
        raise _too_many_user_bytes(settings)


async def check_named_versions(session: AsyncSession, settings: Settings, workspace_id: str) -> None:
    """413 ``versions`` when the workspace already has ``quota_max_named_versions`` named versions (exact after
    :func:`lock_workspace` in the transaction that stores the version)."""
    limit = settings.quota_max_named_versions
    count = await session.scalar(
        select(func.count())
        .select_from(DocVersion)
        .where(DocVersion.workspace_id == workspace_id, DocVersion.kind == "named")
    )
    if int(count or 0) >= limit:
        raise quota_error("versions", f"a workspace keeps at most {limit} named versions; delete some first")


async def check_member_count(session: AsyncSession, settings: Settings, workspace_id: str) -> None:
    """413 when the workspace already has ``quota_max_members`` members (checked before one joins, after
    :func:`lock_workspace` in the transaction that adds the member)."""
    count = await session.scalar(
        select(func.count()).select_from(Membership).where(Membership.workspace_id == workspace_id)
    )
    if int(count or 0) >= settings.quota_max_members:
        raise quota_error("members", f"a workspace has at most {settings.quota_max_members} members")


class InFlight:
    """Work of one kind in flight on this node, per account and in all; past either cap the request is refused
    at once with ``Retry-After`` (429 for the account's cap, 503 for the node's) and the quota's name."""

    def __init__(self, quota: str, what: str) -> None:
        self.quota = quota
        self.what = what
        self.total = 0
        self.per_user: dict[str, int] = {}

    @contextmanager
    def slot(self, user_id: str, per_user: int, per_node: int) -> Iterator[None]:
        """Hold one place while the block runs (0: no cap)."""
        retry = {"Retry-After": "1"}
        if per_user and self.per_user.get(user_id, 0) >= per_user:
            detail = f"an account may have {per_user} {self.what} in progress at a time; retry when it is done"
            raise quota_error(self.quota, detail, status=429, headers=retry)
        if per_node and self.total >= per_node:
            raise quota_error(self.quota, f"the server is busy with {per_node} {self.what}; retry", 503, retry)
        self.total += 1
        self.per_user[user_id] = self.per_user.get(user_id, 0) + 1
        try:
            yield
        finally:
            self.total -= 1
            left = self.per_user.pop(user_id, 1) - 1
            if left:
                self.per_user[user_id] = left


_WORKSPACE_PATH = re.compile(r"^/api/workspaces/([^/]+)(?:/|$)")
_CREATE_PATHS = frozenset({"/api/workspaces", "/api/workspaces/"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RestWriteRateLimit:
    """ASGI middleware: at most ``quota_rest_writes_per_minute`` writes (POST/PUT/PATCH/DELETE) per user per
    workspace in any sliding ``quota_rest_window_seconds`` window; more get 429 with ``Retry-After``. Creating
    workspaces (``POST /api/workspaces``) is counted the same way, per user.

    Counted per node, in memory (behind a load balancer each node allows the limit). Requests without a valid
    token pass through untouched: the route answers 401 itself.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limit = settings.quota_rest_writes_per_minute
        self.window = settings.quota_rest_window_seconds
        self._hits: dict[tuple[str, str], deque[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _WRITES and self.limit > 0:
            match = _WORKSPACE_PATH.match(scope["path"])
            creating = scope["method"] == "POST" and scope["path"] in _CREATE_PATHS
            if match is not None or creating:
                retry = self._admit(scope, match.group(1) if match is not None else "")
                if retry is not None:
                    error = quota_error(
                        "rest_writes",
                        f"at most {self.limit} writes per {self.window:g} s per user and workspace"
                        if match is not None
                        else f"at most {self.limit} workspaces created per {self.window:g} s per user",
                        status=429,
                        headers={"Retry-After": str(retry)},
                    )
                    response = JSONResponse({"detail": error.detail}, status_code=429, headers=error.headers)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _admit(self, scope: Scope, workspace_id: str) -> int | None:
        """None if admitted (and counted), else the seconds until a write is allowed again."""
        user_id = self._user(scope)
        if user_id is None:
            return None
        now = time.monotonic()
        hits = self._hits.setdefault((user_id, workspace_id), deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1, math.ceil(self.window - (now - hits[0])))
        hits.append(now)
        if len(self._hits) > 50_000:
            self._hits = {k: v for k, v in self._hits.items() if v and now - v[-1] < self.window}
        return None

    @staticmethod
    def _user(scope: Scope) -> str | None:
        ctx = getattr(scope["app"].state, "ctx", None) if "app" in scope else None
        if ctx is None:
            return None
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = bearer_from_header(value.decode("latin-1"))
                if token is not None:
                    claims = decode_access_token(token, ctx.secret_key)
                    if claims is not None:
                        return claims[0]
                    # a personal access token: counted per token (its owner is known only to the database)
                    return "pat:" + hash_token(token) if token.startswith(PAT_PREFIX) else None
        return None
