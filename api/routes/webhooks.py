"""Workspace webhooks (owners and admins): create (the signing secret is shown once), list, delete, and each
webhook's delivery log (docs/webhooks.md)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import quotas
from api.deps import Ctx, Member, Session, require
from api.domain.audit import record_action
from api.domain.errors import not_found
from api.domain.webhooks.events import EVENTS, WebhookEvent
from api.domain.webhooks.ssrf import UnsafeUrl, resolve_allowed
from api.errors import ApiError
from api.pagination import Limit, keyset_page
from persistence.models import Webhook, WebhookDelivery, is_uuid, iso_z, new_id, utcnow

router = APIRouter(prefix="/api/workspaces/{wid}/webhooks", tags=["webhooks"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Role does not allow this"},
    404: {"description": "No such workspace or webhook"},
    422: {"description": "Invalid body or URL (scheme, unresolvable host, non-public address)"},
}

Manager = Annotated[Member, Depends(require("webhooks.manage"))]
Event = WebhookEvent
MAX_WEBHOOKS_PER_WORKSPACE = 20


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
    events: Annotated[list[Event], Field(min_length=1, max_length=len(EVENTS))]


def _ts(value: Any) -> str | None:
    return None if value is None else iso_z(value)


def webhook_json(h: Webhook) -> dict[str, Any]:
    return {
        "id": h.id,
        "url": h.url,
        "events": list(h.events or []),
        "active": h.active,
        "failure_count": h.failure_count,
        "disabled_at": _ts(h.disabled_at),
        "created_by": h.created_by,
        "created_at": _ts(h.created_at),
    }


def delivery_json(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event": d.event,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": _ts(d.next_attempt_at) if d.status == "pending" else None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": _ts(d.created_at),
        "delivered_at": _ts(d.delivered_at),
        "payload": d.payload,
    }


async def _load(session: AsyncSession, member: Member, hook_id: str) -> Webhook:
    hook = await session.get(Webhook, hook_id) if is_uuid(hook_id) else None
    if hook is None or hook.workspace_id != member.workspace.id:
        raise not_found("Webhook")
    return hook


@router.post("", status_code=201, responses=_ERRORS)
async def create_webhook(body: WebhookIn, ctx: Ctx, session: Session, member: Manager) -> dict[str, Any]:
    """Register an endpoint for the given events. The response carries ``secret`` — the only time it is shown;
    every delivery is signed with it (``X-Plait-Signature``)."""
    try:
        await resolve_allowed(body.url, ctx.settings.webhook_allow_private)
    except UnsafeUrl as exc:
        raise ApiError(422, f"Webhook URL refused: {exc}") from None
    await quotas.lock_workspace(session, member.workspace.id)  # parallel creations count one after the other
    count = len((await session.scalars(select(Webhook.id).where(Webhook.workspace_id == member.workspace.id))).all())
    if count >= MAX_WEBHOOKS_PER_WORKSPACE:
        raise ApiError(409, f"A workspace has at most {MAX_WEBHOOKS_PER_WORKSPACE} webhooks")
    hook = Webhook(
        id=new_id(),
        workspace_id=member.workspace.id,
        url=body.url,
        events=list(dict.fromkeys(body.events)),
        secret="whsec_" + secrets.token_urlsafe(32),
        active=True,
        failure_count=0,
        created_by=member.user.id,
        created_at=utcnow(),
    )
    session.add(hook)
    await session.commit()
    ctx.webhooks.invalidate(member.workspace.id)
    await record_action(
        session,
        "webhook.created",
        workspace=member.workspace,
        target=hook,
        details={"url": hook.url, "events": hook.events},
    )
    return {**webhook_json(hook), "secret": hook.secret}


@router.get("", responses=_ERRORS)
async def list_webhooks(session: Session, member: Manager) -> list[dict[str, Any]]:
    """The workspace's webhooks, oldest first (secrets are never shown again)."""
    hooks = await session.scalars(
        select(Webhook).where(Webhook.workspace_id == member.workspace.id).order_by(Webhook.created_at, Webhook.id)
    )
    return [webhook_json(h) for h in hooks]


@router.delete("/{hook_id}", status_code=204, responses=_ERRORS)
async def delete_webhook(hook_id: str, ctx: Ctx, session: Session, member: Manager) -> Response:
    """Remove the webhook and its delivery log; pending deliveries are dropped."""
    hook = await _load(session, member, hook_id)
    await session.delete(hook)
    await session.commit()
    ctx.webhooks.invalidate(member.workspace.id)
    await record_action(
        session,
        "webhook.deleted",
        workspace=member.workspace,
        target=("webhook", hook_id),
        details={"url": hook.url},
    )
    return Response(status_code=204)


@router.get("/{hook_id}/deliveries", responses=_ERRORS)
async def list_deliveries(
    hook_id: str,
    session: Session,
    member: Manager,
    status: Literal["pending", "delivered", "failed"] | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{items, next_cursor}``: the webhook's deliveries, newest first, with attempts and the last error."""
    await _load(session, member, hook_id)
    q = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
    if status is not None:
        q = q.where(WebhookDelivery.status == status)
    return await keyset_page(session, q, WebhookDelivery.seq, cursor, limit, delivery_json)
