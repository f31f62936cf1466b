"""Who is connected to a workspace now, across every node (members only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.deps import Ctx, Member, require

router = APIRouter(prefix="/api/workspaces/{wid}", tags=["presence"])

Reader = Annotated[Member, Depends(require("presence.read"))]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@router.get(
    "/presence",
    summary="Users connected to the workspace now (all nodes)",
    responses={401: {"description": "Not authenticated"}, 404: {"description": "No such workspace"}},
)
async def presence(ctx: Ctx, member: Reader) -> list[dict[str, Any]]:
    entries = await ctx.sync.presence(member.workspace.id)
    return [
        {
            "user_id": e["user_id"],
            "display_name": e["display_name"],
            "connections": e["connections"],
            "since": _iso(e["since"]),
            "last_active": _iso(e["last_active"]),
        }
        for e in entries
    ]
