"""REST tasks over the workspace's Yjs document.

Writes go through ``SyncService.change`` (see ``api.doc_writes``: one transaction attributed to the caller,
durable and broadcast to live clients before the response); reads use ``read_document``, which never loads a
room for a workspace nobody has open. The document schema itself lives in ``sync_server.schema``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pycrdt import Doc
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api import quotas
from api.deps import Ctx, Member, Session, require
from api.doc_writes import change, check_assignee, check_labels, task_of
from api.domain.errors import not_found
from api.errors import ApiError
from sync_server import schema

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
    Priority = str
else:
    Status = Literal[schema.STATUSES]
    Priority = Literal[schema.PRIORITIES]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Description = Annotated[str, Field(max_length=100_000)]


def _check_date(value: str) -> str:
    """Exactly ``YYYY-MM-DD`` (what the document schema stores), a real calendar date."""
    if len(value) != 10 or not schema.valid_due_date(value):
        raise ValueError("must be a date in YYYY-MM-DD format")
    return value


DueDate = Annotated[str, AfterValidator(_check_date)]


ItemText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class ChecklistItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: ItemText
    done: bool = False


LabelIds = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(max_length=50)]


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    description: Description = ""
    status: Status = "todo"
    assignee_id: str | None = None
    due_date: DueDate | None = None
    priority: Priority = "none"
    labels: LabelIds = []
    checklist: Annotated[list[ChecklistItemIn], Field(max_length=200)] = []


class TaskPatch(BaseModel):
    """Only the fields present change; ``assignee_id`` and ``due_date`` may be null (cleared). ``labels`` is
    the task's whole label set (applied as the minimal array edit)."""

    model_config = ConfigDict(extra="forbid")
    title: Title | None = None
    description: Description | None = None
    status: Status | None = None
    assignee_id: str | None = None
    due_date: DueDate | None = None
    priority: Priority | None = None
    labels: LabelIds | None = None

    @field_validator("title", "description", "status", "priority", "labels")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value


class MoveIn(BaseModel):
    """Where to put the task: in ``status``'s column (default: its own) at ``position`` (0-based), or just
    before or after another task of that column; none of them: at the end."""

    model_config = ConfigDict(extra="forbid")
    status: Status | None = None
    position: Annotated[int, Field(ge=0)] | None = None
    before_id: str | None = None
    after_id: str | None = None


class ChecklistItemOut(BaseModel):
    id: str | None
    text: str
    done: bool


class CommentOut(BaseModel):
    id: str | None
    author_id: str | None
    body: str
    created_at: str | None
    edited_at: str | None


class Progress(BaseModel):
    done: int
    total: int


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
    rank: str | None
    priority: str
    labels: list[str]
    checklist: list[ChecklistItemOut]
    progress: Progress
    comments: list[CommentOut]
    comment_count: int


def _out(task: dict[str, Any] | None) -> TaskOut:
    if task is None:
        raise not_found("Task")
    return TaskOut.model_validate(task)


def _date_param(name: str, value: str | None) -> str | None:
    if value is not None and (len(value) != 10 or not schema.valid_due_date(value)):
        raise ApiError(422, f"{name} must be a date in YYYY-MM-DD format")
    return value


_COLUMN = {s: i for i, s in enumerate(schema.STATUSES)}
_PRIORITY_RANK = {p: i for i, p in enumerate(schema.PRIORITIES)}
_SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "created_at": lambda t: (t.get("created_at") or "", t["id"]),
    "rank": lambda t: (
        schema.STATUSES.index(t["status"]) if t["status"] in schema.STATUSES else 9,
        schema.order_key(t),
    ),
    "due_date": lambda t: (t.get("due_date") is None, t.get("due_date") or "", t.get("created_at") or "", t["id"]),
    "priority": lambda t: (-_PRIORITY_RANK.get(t["priority"], 0), t.get("created_at") or "", t["id"]),
    "updated_at": lambda t: (t.get("updated_at") or "", t["id"]),
}
Sort = Literal["created_at", "rank", "due_date", "priority", "updated_at"]


@router.get("", response_model=list[TaskOut], responses=_ERRORS)
async def list_tasks(
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("task.read"))],
    assignee_id: str | None = None,
    status: str | None = None,
    due_before: str | None = None,
    due_after: str | None = None,
    label: str | None = None,
    priority: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    sort: Sort | None = None,
) -> list[TaskOut]:
    """Every task, optionally filtered (one assignee, status, label or priority; due strictly before or after a
    date; ``q``: words in the title, description, comments or checklist, through the full-text index). Sorted
    by creation (oldest first, the default), board order (``rank``: by column, then rank), due date (soonest
    first, undated last), priority (urgent first) or last update (most recent first); with ``q`` and no
    ``sort``, best match first."""
    if status is not None and status not in schema.STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(schema.STATUSES)}")
    if priority is not None and priority not in schema.PRIORITIES:
        raise ApiError(422, f"priority must be one of {', '.join(schema.PRIORITIES)}")
    _date_param("due_before", due_before)
    _date_param("due_after", due_after)
    matches: dict[str, int] | None = None
    if q is not None:
        ids = await ctx.search.matching_task_ids(session, member.workspace.id, q)
        matches = {tid: i for i, tid in enumerate(ids)}
    doc = await ctx.sync.read_document(member.workspace.id)
    out = []
    for task in schema.list_tasks(doc):
        if matches is not None and task["id"] not in matches:
            continue
        due = task.get("due_date")
        if (
            (assignee_id is not None and task.get("assignee_id") != assignee_id)
            or (status is not None and task.get("status") != status)
            or (priority is not None and task["priority"] != priority)
            or (label is not None and label not in task["labels"])
            or (due_before is not None and (not isinstance(due, str) or due >= due_before))
            or (due_after is not None and (not isinstance(due, str) or due <= due_after))
        ):
            continue
        out.append(task)
    if sort is not None:
        out.sort(key=_SORTS[sort], reverse=sort == "updated_at")
    elif matches is not None:
        out.sort(key=lambda t: matches[t["id"]])
    return [TaskOut.model_validate(t) for t in out]


@router.post("", status_code=201, response_model=TaskOut, responses=_WRITE_ERRORS)
async def create_task(
    body: TaskIn,
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("task.write"))],
) -> TaskOut:
    """A new task at the end of its status's column."""
    await check_assignee(session, member.workspace.id, body.assignee_id)
    await quotas.check_document_size(ctx, member.workspace.id, quotas.body_bytes(body.model_dump()))
    task_id = str(uuid.uuid4())

    def fn(doc: Doc[Any]) -> dict[str, Any] | None:
        quotas.check_task_count(doc, ctx.settings)
        check_labels(doc, body.labels)
        schema.create_task(
            doc,
            task_id=task_id,
            title=body.title,
            description=body.description,
            status=body.status,
            assignee_id=body.assignee_id,
            due_date=body.due_date,
            priority=body.priority,
            labels=body.labels,
            checklist=[item.model_dump() for item in body.checklist],
            created_by=member.user.id,
        )
        return schema.get_task(doc, task_id)

    return _out(await change(ctx, member, fn))


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
        await check_assignee(session, member.workspace.id, changes["assignee_id"])
    await quotas.check_document_size(ctx, member.workspace.id, quotas.body_bytes(changes))

    def fn(doc: Doc[Any]) -> dict[str, Any] | None:
        if schema.get_task(doc, task_id) is None:
            return None
        if "labels" in changes:
            check_labels(doc, changes["labels"])
        if changes:
            schema.update_task(doc, task_id, changes)
        return schema.get_task(doc, task_id)

    return _out(await change(ctx, member, fn))


@router.post("/{task_id}/move", response_model=TaskOut, responses=_WRITE_ERRORS)
async def move_task(
    task_id: str, body: MoveIn, ctx: Ctx, member: Annotated[Member, Depends(require("task.write"))]
) -> TaskOut:
    """Move a task within its column or to another one: writes a new ``rank`` (and ``status``). Concurrent
    moves converge: the rank is one field, and equal ranks are ordered by task id."""
    given = [name for name in ("position", "before_id", "after_id") if getattr(body, name) is not None]
    if len(given) > 1:
        raise ApiError(422, "give at most one of position, before_id and after_id")

    def fn(doc: Doc[Any]) -> dict[str, Any] | None:
        task = task_of(doc, task_id)
        status = body.status or str(task.get("status"))
        neighbour = body.before_id or body.after_id
        if neighbour is not None:
            other = schema.task_map(doc, neighbour)
            if other is None or neighbour == task_id:
                raise ApiError(422, "before_id/after_id is not another task of this workspace")
            if body.status is not None and other.get("status") != body.status:
                raise ApiError(422, "before_id/after_id is in another column than status")
            status = str(other.get("status"))
            rank = schema.rank_next_to(doc, neighbour, after=body.after_id is not None, exclude=task_id)
            if rank is None:
                rank = schema.rank_at(doc, status, None, exclude=task_id)
        else:
            rank = schema.rank_at(doc, status, body.position, exclude=task_id)
        schema.move_task(doc, task_id, status, rank)
        return schema.get_task(doc, task_id)

    return _out(await change(ctx, member, fn))


@router.delete("/{task_id}", status_code=204, responses=_WRITE_ERRORS)
async def delete_task(task_id: str, ctx: Ctx, member: Annotated[Member, Depends(require("task.write"))]) -> Response:
    def fn(doc: Doc[Any]) -> bool:
        return schema.delete_task(doc, task_id)

    if not await change(ctx, member, fn):
        raise not_found("Task")
    return Response(status_code=204)
