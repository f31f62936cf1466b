"""The workspace document's storage facts: its epoch (clients pass it back as ``?epoch=`` on the sync socket so
a restored store refuses stale history), log head and sizes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.deps import Ctx, Member, require

router = APIRouter(prefix="/api/workspaces/{wid}", tags=["document"])

Reader = Annotated[Member, Depends(require("task.read"))]


@router.get(
    "/document",
    summary="Epoch, log head and storage size of the workspace document",
    responses={401: {"description": "Not authenticated"}, 404: {"description": "No such workspace"}},
)
async def document_info(ctx: Ctx, member: Reader) -> dict[str, Any]:
    info: dict[str, Any] = await ctx.sync.document_info(member.workspace.id)
    return info
