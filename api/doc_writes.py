"""What every REST route that writes the workspace document shares: running the change as the caller, and the
checks that need the database (an assignee must be a member) or the document (a task must exist)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from pycrdt import Doc, Map
from sqlalchemy.ext.asyncio import AsyncSession

from api.context import AppContext
from api.deps import Member
from api.domain.errors import not_found
from api.errors import ApiError
from persistence.models import Membership
from sync_server import schema
from sync_server.errors import RoomFailed

T = TypeVar("T")


async def change(ctx: AppContext, member: Member, fn: Callable[[Doc[Any]], T]) -> T:
    """Run ``fn`` on the live document as the caller; a storage failure is a retryable 503. ``fn`` refuses
    (raises) before it changes anything, so a refusal writes nothing."""
    try:
        return await ctx.sync.change(member.workspace.id, member.user.id, fn)
    except RoomFailed:
        raise ApiError(503, "Storage failure, retry", headers={"Retry-After": "1"}) from None


def task_of(doc: Doc[Any], task_id: str) -> Map[Any]:
    task = schema.task_map(doc, task_id)
    if task is None:
        raise not_found("Task")
    return task


async def check_assignee(session: AsyncSession, wid: str, assignee_id: str | None) -> None:
    if assignee_id is None:
        return
    try:
        uuid.UUID(assignee_id)
    except ValueError:
        raise ApiError(422, "assignee_id is not a member of this workspace") from None
    if await session.get(Membership, (wid, assignee_id)) is None:
        raise ApiError(422, "assignee_id is not a member of this workspace")


def check_labels(doc: Doc[Any], ids: list[str]) -> None:
    """Inside the change: every label id must be defined in the workspace."""
    labels = schema.labels_map(doc)
    unknown = [lid for lid in ids if lid not in labels]
    if unknown:
        raise ApiError(422, f"unknown label id: {unknown[0]}")
