"""A user's own notifications: list (newest first), mark read, preferences, and the live SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import StrictBool
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from api.deps import Ctx, CurrentUser, Session, unauthorized
from api.domain.errors import not_found
from api.domain.mail.digest import digest_enabled, set_digest
from api.domain.notifications.derive import NOTIFICATION_TYPES
from api.domain.notifications.hub import StreamCounts
from api.domain.notifications.views import notification_json
from api.errors import ApiError
from api.pagination import Limit, keyset_page, parse_cursor
from api.schemas import _In
from persistence.db import Database
from persistence.models import Notification, NotificationPreference, User, is_uuid, utcnow
from sync_server.admission import bearer_from_header

log = logging.getLogger("plait.notifications")
router = APIRouter(prefix="/api/notifications", tags=["notifications"])

# Module constants (tests shorten them by patching the module).
HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 5.0
STREAM_BATCH = 100

_ERRORS: dict[int | str, dict[str, str]] = {401: {"description": "Not authenticated"}}


@router.get("", responses=_ERRORS)
async def list_notifications(
    user: CurrentUser,
    session: Session,
    unread: bool = False,
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{items, next_cursor}``, newest first; ``next_cursor`` is null on the last page."""
    q = (
        select(Notification, User)
        .outerjoin(User, User.id == Notification.actor_id)
        .where(Notification.user_id == user.id)
    )
    if unread:
        q = q.where(Notification.read_at.is_(None))
    return await keyset_page(session, q, Notification.seq, cursor, limit, notification_json)


@router.post("/read-all", responses=_ERRORS)
async def read_all(user: CurrentUser, session: Session) -> dict[str, int]:
    result = await session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    await session.commit()
    return {"updated": int(result.rowcount)}  # type: ignore[attr-defined]


@router.post("/{notification_id}/read", responses={**_ERRORS, 404: {"description": "No such notification"}})
async def read_one(notification_id: str, user: CurrentUser, session: Session) -> dict[str, Any]:
    """Idempotent; another user's notification is a 404, exactly like an unknown one."""
    if not is_uuid(notification_id):
        raise not_found("Notification")
    n = await session.scalar(
        select(Notification).where(Notification.id == notification_id, Notification.user_id == user.id)
    )
    if n is None:
        raise not_found("Notification")
    if n.read_at is None:
        n.read_at = utcnow()
        await session.commit()
    actor = await session.get(User, n.actor_id) if n.actor_id else None
    return notification_json(n, actor)


async def _preferences(session: AsyncSession, user_id: str) -> dict[str, bool]:
    prefs = dict.fromkeys(NOTIFICATION_TYPES, True)
    rows = await session.execute(
        select(NotificationPreference.type, NotificationPreference.enabled).where(
            NotificationPreference.user_id == user_id
        )
    )
    for type_, enabled in rows:
        if type_ in prefs:
            prefs[type_] = bool(enabled)
    return prefs


@router.get("/preferences", responses=_ERRORS)
async def get_preferences(user: CurrentUser, session: Session) -> dict[str, bool]:
    """``{type: enabled}`` for every notification type (in-app); defaults on."""
    return await _preferences(session, user.id)


@router.put("/preferences", responses={**_ERRORS, 422: {"description": "Unknown type or non-boolean value"}})
async def put_preferences(body: dict[str, Any], user: CurrentUser, session: Session) -> dict[str, bool]:
    """Set some or all types on/off (``{"task_assigned": false}``); types not given keep their value."""
    for type_, enabled in body.items():
        if type_ not in NOTIFICATION_TYPES:
            raise ApiError(422, f"Unknown notification type: {type_}")
        if not isinstance(enabled, bool):
            raise ApiError(422, f"Value for {type_} must be true or false")
    for type_, enabled in body.items():
        pref = await session.get(NotificationPreference, (user.id, type_))
        if pref is None:
            session.add(NotificationPreference(user_id=user.id, type=type_, enabled=enabled))
        else:
            pref.enabled = enabled
    await session.commit()
    return await _preferences(session, user.id)


class EmailPreferencesIn(_In):
    digest: StrictBool  # true or false, like the other preferences (not "yes")


class EmailPreferencesOut(EmailPreferencesIn):
    interval_seconds: float  # at most one digest per this long (PLAIT_MAIL_DIGEST_INTERVAL_SECONDS)
    available: bool  # an SMTP server is configured: without one no e-mail is sent


def _email_out(ctx: Ctx, digest: bool) -> EmailPreferencesOut:
    return EmailPreferencesOut(
        digest=digest,
        interval_seconds=ctx.settings.mail_digest_interval_seconds,
        available=ctx.mail.outbox.configured,
    )


@router.get("/preferences/email", response_model=EmailPreferencesOut, responses=_ERRORS)
async def get_email_preferences(user: CurrentUser, ctx: Ctx, session: Session) -> EmailPreferencesOut:
    """The e-mail channel: ``digest``, a periodic e-mail of unread notifications (opt-in, off by default)."""
    return _email_out(ctx, await digest_enabled(session, user.id))


@router.put("/preferences/email", response_model=EmailPreferencesOut, responses=_ERRORS)
async def put_email_preferences(
    body: EmailPreferencesIn, user: CurrentUser, ctx: Ctx, session: Session
) -> EmailPreferencesOut:
    """Switch the digest e-mail on or off. It starts from now: notifications before it was switched on are not
    mailed; at most one digest per ``interval_seconds``, only when there are unread notifications."""
    await set_digest(session, user.id, body.digest)
    await session.commit()
    return _email_out(ctx, body.digest)


async def _latest_seq(db: Database, user_id: str) -> int:
    async with db.session() as s:
        value = await s.scalar(
            select(func.coalesce(func.max(Notification.seq), 0)).where(Notification.user_id == user_id)
        )
    return int(value or 0)


STREAM_RETRY_AFTER_SECONDS = 30


class _CountedStream(EventSourceResponse):
    """Gives its stream's place back however the response ends (a generator never started has no finally)."""

    counts: StreamCounts | None = None
    user_id = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.counts is not None:
                self.counts.give_back(self.user_id)
                self.counts = None


def _bearer(request: Request) -> str | None:
    return bearer_from_header(request.headers.get("authorization")) or request.query_params.get("token") or None


@router.get(
    "/stream",
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def stream(request: Request, ctx: Ctx) -> EventSourceResponse:
    """Server-Sent Events, one ``notification`` event per new notification (``id`` = its sequence number), and
    a ``members`` event (``{"workspace_id"}``, no id) when a member list the user sees changed.

    Auth by ``Authorization: Bearer`` or ``?token=`` (EventSource cannot set headers). A reconnecting
    client sends ``Last-Event-ID`` (or ``?last_event_id=``) and gets everything after it; without it the
    stream starts at "now". Pushes on this node wake the stream at once; a periodic database poll catches
    anything written elsewhere. Heartbeat comments keep proxies from closing an idle stream.
    """
    token = _bearer(request)
    credential = await ctx.authenticate_token(token) if token else None
    if credential is None:
        raise unauthorized("Invalid or expired token" if token else "Not authenticated")
    user_id, session_id = credential.user_id, credential.session_id or ""
    raw_last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    last = parse_cursor(raw_last)
    heartbeat, poll = HEARTBEAT_SECONDS, POLL_SECONDS
    hub = ctx.hub
    counts = hub.streams
    refused = counts.take(user_id, ctx.settings.max_sse_streams_per_user, ctx.settings.max_sse_streams_per_node)
    if refused is not None:
        detail = "Too many notification streams " + ("for this account" if refused == "account" else "on this server")
        raise ApiError(429, detail, headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)})

    async def events() -> AsyncIterator[ServerSentEvent]:
        wake = hub.subscribe(user_id)  # before reading the start point: nothing slips between the two
        watched = ctx.sessions.watch(session_id, wake)  # the session ends (logout, revocation): the stream ends
        try:
            cursor = last if last is not None else await _latest_seq(ctx.db, user_id)
            yield ServerSentEvent(comment="connected")
            while not watched.ended:
                wake.clear()
                async with ctx.db.session() as s:
                    rows = (
                        await s.execute(
                            select(Notification, User)
                            .outerjoin(User, User.id == Notification.actor_id)
                            .where(Notification.user_id == user_id, Notification.seq > cursor)
                            .order_by(Notification.seq)
                            .limit(STREAM_BATCH)
                        )
                    ).all()
                for n, actor in rows:
                    cursor = n.seq
                    data = json.dumps(notification_json(n, actor))
                    yield ServerSentEvent(data=data, event="notification", id=str(n.seq))
                for workspace_id in wake.take_member_lists():  # no id: Last-Event-ID stays a notification's
                    yield ServerSentEvent(data=json.dumps({"workspace_id": workspace_id}), event="members")
                if len(rows) == STREAM_BATCH:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=poll)
        finally:
            hub.unsubscribe(user_id, wake)
            ctx.sessions.unwatch(session_id, watched)

    response = _CountedStream(
        events(),
        ping=max(0.05, heartbeat),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.counts, response.user_id = counts, user_id
    return response
