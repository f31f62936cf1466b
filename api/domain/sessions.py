"""Sessions that can end: short-lived access tokens of a session, rotating refresh tokens, revocation.

A login opens a session (``auth_sessions``) and gives an access token (a JWT naming the session: ``sid``) and a
refresh token. Every use of an access token checks that its session lives, so a revoked session stops working
at once on every node, and its open sync sockets and notification streams are closed (``SyncService.end_sessions``).
Each refresh token works once: refreshing marks it used and gives a new pair. A used refresh token presented
again means two parties hold the session's tokens (a stolen copy, or a client replaying an old one), so the
whole session (the "family") is revoked: the thief's pair and the owner's both stop working.

Personal access tokens (api/domain/tokens.py) are resolved here too: a token names who it speaks for, with
which scopes, and which "session" id its sockets are closed by (the token's id).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.security import (
    PAT_PREFIX,
    REFRESH_PREFIX,
    create_access_token,
    decode_access_token,
    hash_token,
    new_opaque_token,
)
from persistence.db import Database
from persistence.models import AuthSession, PersonalAccessToken, RefreshToken, User, as_utc, utcnow
from persistence.settings import Settings
from sync_server.admission import Credential

if TYPE_CHECKING:
    from sync_server.service import SyncService

log = logging.getLogger("plait.auth")

SCOPES = ("read", "write", "admin")  # each includes the ones before it
ALL_SCOPES = frozenset(SCOPES)
LAST_USED_RESOLUTION = timedelta(seconds=60)  # a token's last_used_at is written at most this often


def effective_scopes(granted: list[str] | tuple[str, ...]) -> frozenset[str]:
    """Scopes are ranked: ``write`` includes ``read``, ``admin`` includes both."""
    top = max((SCOPES.index(s) for s in granted if s in SCOPES), default=-1)
    return frozenset(SCOPES[: top + 1])


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request or socket speaks for, and through what."""

    user: User
    session_id: str  # the auth session, or the personal access token's id (what revocation closes by)
    token_id: str | None = None  # set for a personal access token
    scopes: frozenset[str] = ALL_SCOPES

    @property
    def is_token(self) -> bool:
        return self.token_id is not None

    def credential(self) -> Credential:
        return Credential(self.user.id, self.session_id, read_only="write" not in self.scopes)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str


async def resolve(session: AsyncSession, token: str, key: str) -> Caller | None:
    """The caller behind an access token or a personal access token, or None (unknown, expired, revoked, or its
    account is gone or disabled). A token's ``last_used_at`` is written (and committed) at most once a minute."""
    now = utcnow()
    if token.startswith(PAT_PREFIX):
        row = (
            await session.execute(
                select(PersonalAccessToken, User)
                .join(User, User.id == PersonalAccessToken.user_id)
                .where(PersonalAccessToken.token_hash == hash_token(token), User.disabled_at.is_(None))
            )
        ).first()
        if row is None:
            return None
        pat, user = row
        if pat.expires_at is not None and as_utc(pat.expires_at) <= now:
            return None
        if pat.last_used_at is None or now - as_utc(pat.last_used_at) >= LAST_USED_RESOLUTION:
            await session.execute(
                update(PersonalAccessToken).where(PersonalAccessToken.id == pat.id).values(last_used_at=now)
            )
            await session.commit()
        return Caller(user, pat.id, pat.id, effective_scopes(pat.scopes))
    claims = decode_access_token(token, key)
    if claims is None:
        return None
    user_id, session_id = claims
    member = await session.scalar(
        select(User)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(
            AuthSession.id == session_id,
            User.id == user_id,
            User.disabled_at.is_(None),
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
    )
    return None if member is None else Caller(member, session_id)


async def live_ids(session: AsyncSession, ids: set[str]) -> set[str]:
    """Which of these session or personal access token ids still admit their holder: not revoked, deleted or
    expired, and the account not disabled."""
    now = utcnow()
    live: set[str] = set()
    listed = sorted(ids)
    for i in range(0, len(listed), 500):
        chunk = listed[i : i + 500]
        live.update(
            await session.scalars(
                select(AuthSession.id)
                .join(User, User.id == AuthSession.user_id)
                .where(
                    AuthSession.id.in_(chunk),
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > now,
                    User.disabled_at.is_(None),
                )
            )
        )
        pats = await session.execute(
            select(PersonalAccessToken.id, PersonalAccessToken.expires_at)
            .join(User, User.id == PersonalAccessToken.user_id)
            .where(PersonalAccessToken.id.in_(chunk), User.disabled_at.is_(None))
        )
        live.update(pid for pid, expires in pats if expires is None or as_utc(expires) > now)
    return live


def _pair(settings: Settings, key: str, user_id: str, session_id: str) -> tuple[TokenPair, RefreshToken]:
    refresh = new_opaque_token(REFRESH_PREFIX)
    ttl = settings.access_token_ttl_seconds
    access = create_access_token(user_id, key, ttl, session_id)
    row = RefreshToken(token_hash=hash_token(refresh), session_id=session_id, created_at=utcnow())
    return TokenPair(access, refresh, ttl, session_id), row


async def open_session(
    session: AsyncSession, settings: Settings, key: str, user_id: str, user_agent: str | None
) -> TokenPair:
    """A new session for a successful login (committed); the account's long-expired sessions are pruned."""
    now = utcnow()
    await session.execute(
        delete(AuthSession).where(AuthSession.user_id == user_id, AuthSession.expires_at < now - timedelta(days=1))
    )
    auth = AuthSession(
        user_id=user_id,
        created_at=now,
        refreshed_at=now,
        expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
        user_agent=(user_agent or "")[:200] or None,
    )
    session.add(auth)
    await session.flush()
    pair, row = _pair(settings, key, user_id, auth.id)
    session.add(row)
    await session.commit()
    return pair


class RefreshReused(Exception):
    """A used refresh token came back: its session was revoked (``session_id``)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id


async def rotate(session: AsyncSession, settings: Settings, key: str, refresh_token: str) -> TokenPair | None:
    """A new pair for a current refresh token (which is used up), None for an unknown one or a dead session;
    raises ``RefreshReused`` (after revoking and committing) for a token that was already used."""
    now = utcnow()
    row = (
        await session.execute(
            select(RefreshToken, AuthSession)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == hash_token(refresh_token))
        )
    ).first()
    if row is None:
        return None
    token, auth = row
    if auth.revoked_at is not None or as_utc(auth.expires_at) <= now:
        return None
    was_used = token.used_at is not None  # read before the update: it synchronizes the loaded row
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token.token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    claimed = int(getattr(result, "rowcount", 0))
    if was_used or claimed != 1:
        await revoke(session, auth.user_id, {auth.id}, reason="refresh_reuse")
        await session.commit()
        log.warning("refresh token reused: session %s of user %s revoked", auth.id, auth.user_id)
        raise RefreshReused(auth.id)
    ttl = timedelta(seconds=settings.refresh_token_ttl_seconds)
    # Used tokens are remembered (to detect their reuse) for as long as they could have been valid.
    await session.execute(
        delete(RefreshToken).where(RefreshToken.session_id == auth.id, RefreshToken.used_at < now - ttl)
    )
    await session.execute(
        update(AuthSession).where(AuthSession.id == auth.id).values(refreshed_at=now, expires_at=now + ttl)
    )
    pair, new_row = _pair(settings, key, auth.user_id, auth.id)
    session.add(new_row)
    await session.commit()
    return pair


async def revoke(
    session: AsyncSession,
    user_id: str,
    session_ids: set[str] | None = None,
    *,
    reason: str,
    keep: str | None = None,
) -> set[str]:
    """Revoke the account's live sessions (those in ``session_ids``, or all of them but ``keep``); returns
    their ids. The caller commits, then ends them on the sync layer (``SessionWatch.ended``)."""
    where = [AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)]
    if session_ids is not None:
        where.append(AuthSession.id.in_(session_ids))
    if keep is not None:
        where.append(AuthSession.id != keep)
    ids = set((await session.scalars(select(AuthSession.id).where(*where))).all())
    if ids:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id.in_(ids), AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
    return ids


class Authenticator:
    """Tokens to credentials for the sync endpoint and the notification stream (their own database session)."""

    def __init__(self, db: Database, key: str) -> None:
        self._db = db
        self._key = key

    async def caller(self, token: str) -> Caller | None:
        async with self._db.session() as session:
            return await resolve(session, token, self._key)

    async def credential(self, token: str) -> Credential | None:
        caller = await self.caller(token)
        return None if caller is None else caller.credential()


@dataclass(eq=False)
class Watched:
    """A notification stream of one session: ``ended`` is set, and ``wake`` fired, when the session ends."""

    wake: asyncio.Event
    ended: bool = False


@dataclass
class SessionWatch:
    """Ends sessions on the sync layer (sockets closed 4401 on every node) and wakes the notification streams
    of ended sessions on this node (the sync service tells every node's watch)."""

    sync: SyncService
    _streams: dict[str, set[Watched]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sync.on_sessions_ended(self._ended_here)

    def watch(self, session_id: str, wake: asyncio.Event) -> Watched:
        watched = Watched(wake)
        self._streams.setdefault(session_id, set()).add(watched)
        return watched

    def unwatch(self, session_id: str, watched: Watched) -> None:
        streams = self._streams.get(session_id)
        if streams is not None:
            streams.discard(watched)
            if not streams:
                del self._streams[session_id]

    def ended(self, session_ids: set[str]) -> None:
        """Sessions (or tokens) were revoked and committed: close what they hold open, on every node."""
        self.sync.end_sessions(session_ids)

    def watched_ids(self) -> set[str]:
        """The sessions whose notification streams are open on this node."""
        return set(self._streams)

    def _ended_here(self, session_ids: set[str]) -> None:
        for sid in session_ids:
            for watched in self._streams.get(sid, ()):
                watched.ended = True
                watched.wake.set()


async def live_sessions(session: AsyncSession, user_id: str) -> list[AuthSession]:
    """The account's sessions that still work (not revoked, not expired), newest sign-in first."""
    return list(
        (
            await session.scalars(
                select(AuthSession)
                .where(
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > utcnow(),
                )
                .order_by(AuthSession.created_at.desc(), AuthSession.id.desc())
            )
        ).all()
    )
