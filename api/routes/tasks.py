"""REST tasks over the workspace's Yjs document.

Writes go through ``SyncService.change`` (one transaction attributed to the caller, durable and broadcast
to live clients before the response); reads use ``read_document``, which never loads a room for a workspace
nobody has open. The document schema itself lives in ``sync_server.schema``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from pycrdt import Doc
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from api import quotas
from api.context import AppContext
from api.deps import Ctx, Member, Session, require
from api.domain.errors import not_found
from api.errors import ApiError
from persistence.models import Membership
from sync_server import schema
from sync_server.errors import RoomFailed

router = APIRouter(prefix="/api/workspaces/{wid}/tasks", tags=["tasks"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace or task"},
}
_WRITE_ERRORS: dict[int | str, dict[str, str]] = {
    **_ERRORS,
    422: {"description": "Invalid field, or assignee is not a member"},
}

# The task document's statuses (sync_server/schema.py STATUSES) as a field type: pydantic validates it and
# OpenAPI lists it as an enum. ``Literal[tuple]`` is ``Literal[*tuple]`` at run time; mypy only reads literal
# strings in a Literal, so it sees a str here.
if TYPE_CHECKING:
    Status = str
else:
    Status = Literal[schema.STATUSES]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Description = Annotated[str, Field(max_length=100_000)]


def _check_date(value: str) -> str:
    """Exactly ``YYYY-MM-DD`` (what the document schema stores), a real calendar date."""
    if len(value) != 10 or not schema.valid_due_date(value):
        raise ValueError("must be a date in YYYY-MM-DD format")
    return value


DueDate = Annotated[str, AfterValidator(_check_date)]


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    description: Description = ""
    status: Status = "todo"
    assignee_id: str | None = None
    due_date: DueDate | None = None


class TaskPatch(BaseModel):
    """Only the fields present change; ``assignee_id`` and ``due_date`` may be null (cleared)."""

    model_config = ConfigDict(extra="forbid")
    title: Title | None = None
    description: Description | None = None
    status: Status | None = None
    assignee_id: str | None = None
    due_date: DueDate | None = None

    @field_validator("title", "description", "status")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value


class TaskOut(BaseModel):
    id: str
    title: str
    description: str
    status: str
    assignee_id: str | None
    due_date: str | None
    created_by: str | None
    created_at: str | None
    updated_at: str | None
    completed_at: str | None


async def _check_assignee(session: AsyncSession, wid: str, assignee_id: str | None) -> None:
    if assignee_id is None:
        return
    try:
        uuid.UUID(assignee_id)
    except ValueError:
        raise ApiError(422, "assignee_id is not a member of this workspace") from None
    if await session.get(Membership, (wid, assignee_id)) is None:
        raise ApiError(422, "assignee_id is not a member of this workspace")


async def _change(ctx: AppContext, member: Member, fn: Callable[[Doc[Any]], Any]) -> Any:
    """Run ``fn`` on the live document as the caller; a storage failure is a retryable 503."""
    try:
        return await ctx.sync.change(member.workspace.id, member.user.id, fn)
    except RoomFailed:
        raise ApiError(503, "Storage failure, retry", headers={"Retry-After": "1"}) from None


def _out(task: dict[str, Any] | None) -> TaskOut:
    if task is None:
        raise not_found("Task")
    return TaskOut.model_validate(task)


@router.get("", response_model=list[TaskOut], responses=_ERRORS)
async def list_tasks(
    ctx: Ctx,
    member: Annotated[Member, Depends(require("task.read"))],
    assignee_id: str | None = None,
    status: str | None = None,
    due_before: str | None = None,
) -> list[TaskOut]:
    """Every task (oldest first), optionally only one assignee's, one status, or due strictly before a date."""
    if status is not None and status not in schema.STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(schema.STATUSES)}")
    if due_before is not None:
        try:
            _check_date(due_before)
        except ValueError:
            raise ApiError(422, "due_before must be a date in YYYY-MM-DD format") from None
    doc = await ctx.sync.read_document(member.workspace.id)
    out = []
    for task in schema.list_tasks(doc):
        if assignee_id is not None and task.get("assignee_id") != assignee_id:
            continue
        if status is not None and task.get("status") != status:
            continue
        if due_before is not None:
            due = task.get("due_date")
            if not isinstance(due, str) or due >= due_before:  # YYYY-MM-DD strings order like dates
                continue
        out.append(TaskOut.model_validate(task))
    return out


@router.post("", status_code=201, response_model=TaskOut, responses=_WRITE_ERRORS)
async def create_task(
    body: TaskIn,
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("task.write"))],
) -> TaskOut:
    await _check_assignee(session, member.workspace.id, body.assignee_id)
    await quotas.check_document_size(ctx, member.workspace.id, quotas.body_bytes(body.model_dump()))
    task_id = str(uuid.uuid4())

    def fn(doc: Doc[Any]) -> dict[str, Any] | None:
        quotas.check_task_count(doc, ctx.settings)
        schema.create_task(
            doc,
            task_id=task_id,
            title=body.title,
            description=body.description,
            status=body.status,
            assignee_id=body.assignee_id,
            due_date=body.due_date,
            created_by=member.user.id,
        )
        return schema.get_task(doc, task_id)

    return _out(await _change(ctx, member, fn))


@router.get("/{task_id}", response_model=TaskOut, responses=_ERRORS)
async def get_task(task_id: str, ctx: Ctx, member: Annotated[Member, Depends(require("task.read"))]) -> TaskOut:
    doc = await ctx.sync.read_document(member.workspace.id)
    return _out(schema.get_task(doc, task_id))


@router.patch("/{task_id}", response_model=TaskOut, responses=_WRITE_ERRORS)
async def patch_task(
    task_id: str,
    body: TaskPatch,
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("task.write"))],
) -> TaskOut:
    """A new description is applied as the minimal text edit, so concurrent typing elsewhere survives."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if "assignee_id" in changes:
        await _check_assignee(session, member.workspace.id, changes["assignee_id"])
    await quotas.check_document_size(ctx, member.workspace.id, quotas.body_bytes(changes))

    def fn(doc: Doc[Any]) -> dict[str, Any] | None:
        if schema.get_task(doc, task_id) is None:
            return None
        if changes:
            schema.update_task(doc, task_id, changes)
        return schema.get_task(doc, task_id)

    return _out(await _change(ctx, member, fn))


@router.delete("/{task_id}", status_code=204, responses=_WRITE_ERRORS)
async def delete_task(task_id: str, ctx: Ctx, member: Annotated[Member, Depends(require("task.write"))]) -> Response:
    def fn(doc: Doc[Any]) -> bool:
        return schema.delete_task(doc, task_id)

    if not await _change(ctx, member, fn):
        raise not_found("Task")
    return Response(status_code=204)
