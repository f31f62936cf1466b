"""Version history of a workspace document: list, save (named), read, diff, delete, restore (docs/versions.md)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import quotas
from api.context import AppContext
from api.deps import Ctx, Member, Session, require
from api.domain import versions
from api.domain.errors import not_found
from api.domain.notifications.views import person_json
from api.errors import ApiError
from api.pagination import Limit, keyset_page
from api.schemas import NO_NUL
from persistence.models import DocVersion, User, is_uuid, iso_z
from sync_server.errors import RoomFailed

router = APIRouter(prefix="/api/workspaces/{wid}/versions", tags=["versions"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace or version"},
    422: {"description": "Invalid body, cursor or comparison"},
}

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Label


def version_json(v: DocVersion, creator: User | None) -> dict[str, Any]:
    return {
        "id": v.id,
        "label": v.label,
        "kind": v.kind,
        "created_by": person_json(creator),
        "created_at": iso_z(v.created_at),
        "task_count": v.task_count,
    }


async def _load(session: AsyncSession, member: Member, vid: str) -> tuple[DocVersion, User | None]:
    if not is_uuid(vid):
        raise not_found("Version")
    row = (
        await session.execute(
            select(DocVersion, User)
            .outerjoin(User, User.id == DocVersion.created_by)
            .where(DocVersion.id == vid, DocVersion.workspace_id == member.workspace.id)
        )
    ).first()
    if row is None:
        raise not_found("Version")
    return row[0], row[1]


@router.get("", responses=_ERRORS)
async def list_versions(
    session: Session,
    member: Annotated[Member, Depends(require("versions.read"))],
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{items, next_cursor}``, newest first: who saved each version, when, its label and task count."""
    q = (
        select(DocVersion, User)
        .outerjoin(User, User.id == DocVersion.created_by)
        .where(DocVersion.workspace_id == member.workspace.id)
    )
    return await keyset_page(session, q, DocVersion.seq, cursor, limit, version_json)


_QUOTA: dict[int | str, dict[str, str]] = {
    413: {"description": "Quota exceeded (X-Plait-Quota: versions, user_bytes, ...)"},
    429: {"description": "Quota exceeded (X-Plait-Quota: version_saves): the caller's save is in progress"},
    503: {"description": "Quota exceeded (X-Plait-Quota: version_saves): the server is busy saving; Retry-After"},
}


def _saving(ctx: AppContext, user_id: str) -> AbstractContextManager[None]:
    """A place among the version saves and restores in flight on this node: each copies the whole document
    a few times, so their number bounds the memory they take (429/503 ``version_saves`` beyond)."""
    return ctx.version_saves.slot(
        user_id, ctx.settings.max_version_saves_per_user, ctx.settings.max_version_saves_per_node
    )


@router.post("", status_code=201, responses={**_ERRORS, **_QUOTA})
async def save_named_version(
    body: VersionIn, ctx: Ctx, session: Session, member: Annotated[Member, Depends(require("versions.create"))]
) -> dict[str, Any]:
    """Save the document as it is now under a label (editors and up); kept until deleted.

    413 ``versions`` when the workspace has ``PLAIT_QUOTA_MAX_NAMED_VERSIONS`` named versions, ``user_bytes``
    when the copy would take an owner past ``PLAIT_QUOTA_MAX_USER_BYTES``; 429 ``version_saves`` while the
    caller has ``PLAIT_MAX_VERSION_SAVES_PER_USER`` saves or restores in progress, 503 while the node has
    ``PLAIT_MAX_VERSION_SAVES_PER_NODE``."""
    # The request's session (authentication, membership) goes back to the pool before the document work: held
    # across it, parallel saves held every pooled connection while each waited for a second one.
    await session.close()
    wid = member.workspace.id
    with _saving(ctx, member.user.id):
        size = await quotas.document_bytes(ctx, wid)
        async with ctx.db.session() as s:  # refused early, before copying the document
            await quotas.check_named_versions(s, ctx.settings, wid)
            await quotas.check_owner_bytes(s, ctx.settings, wid, size)

        async def within_quotas(s: AsyncSession) -> None:  # again, exactly, where the version is stored
            await quotas.lock_workspace(s, wid)
            await quotas.check_named_versions(s, ctx.settings, wid)
            await quotas.check_owner_bytes(s, ctx.settings, wid, size)

        v = await versions.save_version(ctx, wid, "named", body.label, member.user.id, check=within_quotas)
    return version_json(v, member.user)


@router.get("/{vid}", responses=_ERRORS)
async def get_version(
    vid: str, session: Session, member: Annotated[Member, Depends(require("versions.read"))]
) -> dict[str, Any]:
    """The version and its tasks as JSON (the REST task shape)."""
    v, creator = await _load(session, member, vid)
    tasks = list(versions.tasks_by_id(versions.doc_from_state(v.state)).values())
    return {**version_json(v, creator), "tasks": tasks}


@router.get("/{vid}/diff", responses=_ERRORS)
async def diff_version(
    vid: str,
    ctx: Ctx,
    session: Session,
    member: Annotated[Member, Depends(require("versions.read"))],
    against: str = "current",
) -> dict[str, Any]:
    """What changed from this version to ``against`` ("current": the live document, or another version's id):
    tasks added, removed, and changed fields ``{from, to}``."""
    v, _ = await _load(session, member, vid)
    old = versions.tasks_by_id(versions.doc_from_state(v.state))
    if against == "current":
        new = versions.tasks_by_id(await ctx.sync.read_document(member.workspace.id))
    else:
        if not is_uuid(against):
            raise ApiError(422, 'against must be "current" or a version id')
        other, _ = await _load(session, member, against)
        new = versions.tasks_by_id(versions.doc_from_state(other.state))
    return {"version_id": v.id, "against": against, **versions.diff_tasks(old, new)}


@router.delete("/{vid}", status_code=204, responses=_ERRORS)
async def delete_version(
    vid: str, session: Session, member: Annotated[Member, Depends(require("versions.delete"))]
) -> Response:
    v, _ = await _load(session, member, vid)
    await session.delete(v)
    await session.commit()
    return Response(status_code=204)


@router.post("/{vid}/restore", responses={**_ERRORS, **_QUOTA})
async def restore(
    vid: str, ctx: Ctx, session: Session, member: Annotated[Member, Depends(require("versions.restore"))]
) -> dict[str, Any]:
    """Bring the document back to this version as a new change by the caller (history is never rewritten).

    ``undo_version_id`` is the state just before; restoring it undoes this restore.
    """
    v, _ = await _load(session, member, vid)
    await session.close()  # not held across the document work (see save_named_version)
    if v.task_count > ctx.settings.quota_max_tasks:
        raise quotas.too_many_tasks(ctx.settings)
    with _saving(ctx, member.user.id):
        await quotas.check_document_size(ctx, member.workspace.id, 0)
        # the pre-restore version is a copy of the document as it is
        size = await quotas.document_bytes(ctx, member.workspace.id)
        async with ctx.db.session() as s:
            await quotas.check_owner_bytes(s, ctx.settings, member.workspace.id, size)
        try:
            undo = await versions.restore_version(ctx, v, member.user.id)
        except RoomFailed:
            raise ApiError(503, "Storage failure, retry", headers={"Retry-After": "1"}) from None
    return {"restored_from": v.id, "undo_version_id": undo.id}
