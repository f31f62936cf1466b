"""Label definitions of a workspace (root map ``labels`` of the document); tasks refer to them by id.
Deleting a label takes it off every task in the same change."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pycrdt import Doc, Map
from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

from api.deps import Ctx, Member, require
from api.doc_writes import change
from api.domain.errors import not_found
from api.errors import ApiError
from sync_server import schema

router = APIRouter(prefix="/api/workspaces/{wid}/labels", tags=["labels"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace or label"},
    409: {"description": "A label with that name exists, or the workspace has as many labels as allowed"},
}
MAX_LABELS = 100
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=schema.MAX_LABEL_NAME)]
Color = Annotated[str, StringConstraints(pattern=schema.COLOR.pattern)]


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    color: Color = schema.DEFAULT_COLOR


class LabelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    color: Color | None = None

    @field_validator("name", "color")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value


class LabelOut(BaseModel):
    id: str
    name: str
    color: str


def _check_name(doc: Doc[Any], name: str, label_id: str | None = None) -> None:
    if any(x["name"].lower() == name.lower() and x["id"] != label_id for x in schema.list_labels(doc)):
        raise ApiError(409, f"a label named {name!r} already exists")


@router.get("", response_model=list[LabelOut], responses=_ERRORS)
async def list_labels(ctx: Ctx, member: Annotated[Member, Depends(require("task.read"))]) -> list[LabelOut]:
    """The workspace's labels, by name."""
    doc = await ctx.sync.read_document(member.workspace.id)
    return [LabelOut.model_validate(x) for x in schema.list_labels(doc)]


@router.post("", status_code=201, response_model=LabelOut, responses=_ERRORS)
async def create_label(
    body: LabelIn, ctx: Ctx, member: Annotated[Member, Depends(require("labels.manage"))]
) -> LabelOut:
    label_id = str(uuid.uuid4())

    def fn(doc: Doc[Any]) -> dict[str, Any] | None:
        if len(schema.labels_map(doc)) >= MAX_LABELS:
            raise ApiError(409, f"a workspace has at most {MAX_LABELS} labels")
        _check_name(doc, body.name)
        schema.labels_map(doc)[label_id] = Map({"id": label_id, "name": body.name, "color": body.color})
        return schema.label_json(label_id, schema.labels_map(doc)[label_id])

    return LabelOut.model_validate(await change(ctx, member, fn))


@router.patch("/{label_id}", response_model=LabelOut, responses=_ERRORS)
async def edit_label(
    label_id: str, body: LabelPatch, ctx: Ctx, member: Annotated[Member, Depends(require("labels.manage"))]
) -> LabelOut:
    def fn(doc: Doc[Any]) -> dict[str, Any] | None:
        labels = schema.labels_map(doc)
        label = labels.get(label_id) if label_id in labels else None
        if not isinstance(label, Map):
            raise not_found("Label")
        if body.name is not None:
            _check_name(doc, body.name, label_id)
        for name in body.model_fields_set:
            if label.get(name) != getattr(body, name):
                label[name] = getattr(body, name)
        return schema.label_json(label_id, label)

    return LabelOut.model_validate(await change(ctx, member, fn))


@router.delete("/{label_id}", status_code=204, responses=_ERRORS)
async def delete_label(
    label_id: str, ctx: Ctx, member: Annotated[Member, Depends(require("labels.manage"))]
) -> Response:
    """Deletes the label and takes it off every task (one change)."""

    def fn(doc: Doc[Any]) -> None:
        labels = schema.labels_map(doc)
        if label_id not in labels:
            raise not_found("Label")
        del labels[label_id]
        schema.remove_label_everywhere(doc, [label_id])

    await change(ctx, member, fn)
    return Response(status_code=204)
