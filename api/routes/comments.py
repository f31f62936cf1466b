"""Comments on a task, in the task's ``comments`` array of the document.

The author is the server's truth: a comment is written with the caller as ``author_id``, and only its author or
a workspace admin/owner may edit or delete it. The schema guard enforces the same rule for live clients."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pycrdt import Doc
from pydantic import BaseModel, ConfigDict, StringConstraints

from api import quotas
from api.deps import Ctx, Member, require
from api.doc_writes import change, task_of
from api.domain.errors import not_found
from api.errors import ApiError
from api.permissions import allowed
from api.routes.tasks import CommentOut
from sync_server import schema

router = APIRouter(prefix="/api/workspaces/{wid}/tasks/{task_id}/comments", tags=["comments"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this, or the comment is someone else's"},
    404: {"description": "No such workspace, task or comment"},
}
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Body


def _comment(doc: Doc[Any], task_id: str, comment_id: str, member: Member) -> tuple[int, Any]:
    """The comment's index and map, if the caller may change it."""
    found = schema.find_item(task_of(doc, task_id).get("comments"), comment_id)
    if found is None:
        raise not_found("Comment")
    if found[1].get("author_id") != member.user.id and not allowed(member.role, "comment.moderate"):
        raise ApiError(403, "Only the comment's author or a workspace admin may change it")
    return found


@router.get("", response_model=list[CommentOut], responses=_ERRORS)
async def list_comments(
    task_id: str, ctx: Ctx, member: Annotated[Member, Depends(require("task.read"))]
) -> list[CommentOut]:
    """The task's comments, oldest first. Mentions are ``@[Name](user:ID)``."""
    doc = await ctx.sync.read_document(member.workspace.id)
    task = schema.task_map(doc, task_id)
    if task is None:
        raise not_found("Task")
    return [CommentOut.model_validate(c) for c in schema.comments_of(task)]


@router.post("", status_code=201, response_model=CommentOut, responses=_ERRORS)
async def create_comment(
    task_id: str, body: CommentIn, ctx: Ctx, member: Annotated[Member, Depends(require("comment.write"))]
) -> CommentOut:
    await quotas.check_document_size(ctx, member.workspace.id, quotas.body_bytes({"body": body.body}))

    def fn(doc: Doc[Any]) -> dict[str, Any]:
        comments = schema.array_of(task_of(doc, task_id), "comments")
        comments.append(schema.comment_map(body.body, member.user.id))
        return schema.comment_json(comments[len(comments) - 1])

    return CommentOut.model_validate(await change(ctx, member, fn))


@router.patch("/{comment_id}", response_model=CommentOut, responses=_ERRORS)
async def edit_comment(
    task_id: str,
    comment_id: str,
    body: CommentIn,
    ctx: Ctx,
    member: Annotated[Member, Depends(require("comment.write"))],
) -> CommentOut:
    await quotas.check_document_size(ctx, member.workspace.id, quotas.body_bytes({"body": body.body}))

    def fn(doc: Doc[Any]) -> dict[str, Any]:
        _, comment = _comment(doc, task_id, comment_id, member)
        if comment.get("body") != body.body:
            comment["body"] = body.body
            comment["edited_at"] = schema.now_iso()
        return schema.comment_json(comment)

    return CommentOut.model_validate(await change(ctx, member, fn))


@router.delete("/{comment_id}", status_code=204, responses=_ERRORS)
async def delete_comment(
    task_id: str, comment_id: str, ctx: Ctx, member: Annotated[Member, Depends(require("comment.write"))]
) -> Response:
    def fn(doc: Doc[Any]) -> None:
        index, _ = _comment(doc, task_id, comment_id, member)
        del schema.array_of(task_of(doc, task_id), "comments")[index]

    await change(ctx, member, fn)
    return Response(status_code=204)
