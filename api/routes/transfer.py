"""Workspace export (JSON or a binary Yjs update) and import (a Plait export, a Yjs update or a Trello board)
into a new workspace. The rules are in ``api.domain.transfer``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import Ctx, CurrentUser, Member, Session, require
from api.domain import transfer
from api.domain.audit import record_action
from api.errors import ApiError
from api.routes.workspaces import workspace_out
from api.schemas import WorkspaceOut

router = APIRouter(prefix="/api/workspaces", tags=["export and import"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace, or not a member"},
}


@router.get(
    "/{wid}/export",
    responses={
        **_ERRORS,
        200: {
            "description": "The workspace as JSON (`format=json`), or its document as one Yjs update (`format=yjs`)",
            "content": {"application/json": {}, "application/octet-stream": {}},
        },
    },
)
async def export_workspace(
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("workspace.export"))],
    format: Literal["json", "yjs"] = "json",
) -> Response:
    """Owners and admins. JSON: the workspace, labels, tasks with every field (comments, checklists), members
    and version metadata, streamed a task at a time. ``yjs``: the document's full state as one update."""
    doc = await ctx.sync.read_document(member.workspace.id)
    stem = f"plait-{member.workspace.id}"
    await record_action(
        session, "workspace.exported", workspace=member.workspace, target=member.workspace, details={"format": format}
    )
    if format == "yjs":
        return Response(
            doc.get_update(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{stem}.yjs"'},
        )
    head = await transfer.export_head(session, member.workspace, doc)
    return StreamingResponse(
        transfer.export_json(head, doc),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{stem}.json"'},
    )


@router.post(
    "/import",
    status_code=201,
    response_model=WorkspaceOut,
    responses={
        401: {"description": "Not authenticated"},
        413: {"description": "Body or workspace too large, or the workspace quota reached"},
        422: {"description": "Not a Plait export, a Yjs update or a Trello board"},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
async def import_workspace(
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
    session: Session,
    name: Annotated[str | None, Query(min_length=1, max_length=transfer.MAX_NAME)] = None,
) -> WorkspaceOut:
    """A new workspace, owned by the caller, from a Plait export (JSON), a binary Yjs update
    (``application/octet-stream``, named with ``?name=``) or a Trello board's JSON export. Ids, times and
    comment authors are kept; assignees who are not members of the new workspace are cleared."""
    limit = ctx.settings.import_max_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"an import may be at most {limit} bytes")
    plan = transfer.read_import(bytes(body), request.headers.get("content-type", ""), name)
    workspace = await transfer.import_workspace(ctx, session, user.id, plan)
    await record_action(
        session,
        "workspace.imported",
        workspace=workspace,
        target=workspace,
        details={"name": workspace.name, "tasks": len(plan.tasks)},
    )
    return workspace_out(workspace, "owner")
