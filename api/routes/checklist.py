"""A task's checklist: items {id, text, done} in the task's ``checklist`` array; the task's ``progress`` counts
them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pycrdt import Doc
from pydantic import BaseModel, ConfigDict, field_validator

from api import quotas
from api.deps import Ctx, Member, require
from api.doc_writes import change, task_of
from api.domain.errors import not_found
from api.errors import ApiError
from api.routes.tasks import ChecklistItemIn, ChecklistItemOut, ItemText
from sync_server import schema

router = APIRouter(prefix="/api/workspaces/{wid}/tasks/{task_id}/checklist", tags=["checklist"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace, task or item"},
    409: {"description": "The checklist is full"},
}
MAX_ITEMS = 200


class ChecklistPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: ItemText | None = None
    done: bool | None = None

    @field_validator("text", "done")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value


@router.get("", response_model=list[ChecklistItemOut], responses=_ERRORS)
async def list_items(
    task_id: str, ctx: Ctx, member: Annotated[Member, Depends(require("task.read"))]
) -> list[ChecklistItemOut]:
    doc = await ctx.sync.read_document(member.workspace.id)
    task = schema.task_map(doc, task_id)
    if task is None:
        raise not_found("Task")
    return [ChecklistItemOut.model_validate(i) for i in schema.checklist_items(task)]


@router.post("", status_code=201, response_model=ChecklistItemOut, responses=_ERRORS)
async def add_item(
    task_id: str, body: ChecklistItemIn, ctx: Ctx, member: Annotated[Member, Depends(require("task.write"))]
) -> ChecklistItemOut:
    await quotas.check_document_size(ctx, member.workspace.id, quotas.body_bytes({"text": body.text}))

    def fn(doc: Doc[Any]) -> dict[str, Any]:
        task = task_of(doc, task_id)
        items = schema.array_of(task, "checklist")
        if len(items) >= MAX_ITEMS:
            raise ApiError(409, f"a checklist has at most {MAX_ITEMS} items")
        item = schema.checklist_item(body.text, body.done)
        items.append(item)
        schema.touch(task)
        return {"id": items[len(items) - 1].get("id"), "text": body.text, "done": body.done}

    return ChecklistItemOut.model_validate(await change(ctx, member, fn))


@router.patch("/{item_id}", response_model=ChecklistItemOut, responses=_ERRORS)
async def edit_item(
    task_id: str,
    item_id: str,
    body: ChecklistPatch,
    ctx: Ctx,
    member: Annotated[Member, Depends(require("task.write"))],
) -> ChecklistItemOut:
    """Rename or tick an item (only the fields given change)."""

    def fn(doc: Doc[Any]) -> dict[str, Any]:
        task = task_of(doc, task_id)
        found = schema.find_item(task.get("checklist"), item_id)
        if found is None:
            raise not_found("Checklist item")
        item = found[1]
        for name in body.model_fields_set:
            if item.get(name) != getattr(body, name):
                item[name] = getattr(body, name)
        schema.touch(task)
        return {"id": item_id, "text": item.get("text"), "done": item.get("done") is True}

    return ChecklistItemOut.model_validate(await change(ctx, member, fn))


@router.delete("/{item_id}", status_code=204, responses=_ERRORS)
async def delete_item(
    task_id: str, item_id: str, ctx: Ctx, member: Annotated[Member, Depends(require("task.write"))]
) -> Response:
    def fn(doc: Doc[Any]) -> None:
        task = task_of(doc, task_id)
        items = schema.array_of(task, "checklist")
        found = schema.find_item(items, item_id)
        if found is None:
            raise not_found("Checklist item")
        del items[found[0]]
        schema.touch(task)

    await change(ctx, member, fn)
    return Response(status_code=204)
