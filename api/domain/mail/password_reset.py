"""Password reset by e-mail: a single-use link, valid ``PLAIT_PASSWORD_RESET_TTL_SECONDS``, stored as SHA-256.

Asking (``request``) never tells who has an account: the route answers 202 before anything is looked up, and
this runs in the background, the same for every address (docs/accounts.md). Confirming sets the password and
ends every session of the account (its sockets close with 4401); the account's other reset links die too.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain import sessions
from api.domain.errors import Refused
from api.domain.mail import templates
from api.security import hash_password, hash_token, new_opaque_token
from persistence.models import DeletedAccount, LoginFailure, PasswordResetToken, User, as_utc, utcnow

if TYPE_CHECKING:
    from api.domain.mail.service import MailService
    from api.security import HashLane

log = logging.getLogger("plait.mail")

RESET_PREFIX = "plait_rst_"
INVALID = "Invalid or expired reset token"


def reset_link(base_url: str, token: str) -> str:
    """The web client's page (``?token=`` is redacted from access logs; the page sends no Referer)."""
    return f"{base_url.rstrip('/')}/reset-password?token={token}"


async def request(service: MailService, email: str, base_url: str) -> None:
    """Store a reset link and its e-mail for the account of ``email``, if there is one and it has not had
    ``PLAIT_PASSWORD_RESET_MAX_PER_EMAIL`` links in the window (the cluster-wide cap on mail to one account)."""
    settings = service.settings
    now = utcnow()
    async with service.db.transaction() as s:
        user = await s.scalar(
            select(User).where(
                User.email == email, ~select(DeletedAccount.user_id).where(DeletedAccount.user_id == User.id).exists()
            )
        )
        if user is None:
            return
        if not service.outbox.configured:
            service.outbox.not_sent("password_reset")  # no link is made that could never arrive
            return
        window = now - timedelta(seconds=settings.password_reset_window_seconds)
        recent = await s.scalar(
            select(func.count())
            .select_from(PasswordResetToken)
            .where(PasswordResetToken.user_id == user.id, PasswordResetToken.created_at > window)
        )
        most = settings.password_reset_max_per_email
        if most and int(recent or 0) >= most:
            log.info("password reset for user %s not sent: %d links in the window already", user.id, recent)
            return
        await s.execute(
            delete(PasswordResetToken).where(
                PasswordResetToken.user_id == user.id, PasswordResetToken.expires_at < now - timedelta(days=1)
            )
        )
        token = new_opaque_token(RESET_PREFIX)
        ttl = settings.password_reset_ttl_seconds
        s.add(
            PasswordResetToken(
                user_id=user.id, token_hash=hash_token(token), created_at=now, expires_at=now + timedelta(seconds=ttl)
            )
        )
        subject, body = templates.password_reset(reset_link(base_url, token), max(1, ttl // 60))
        queued = service.outbox.queue(s, "password_reset", user.email, subject, body)
    if queued:
        service.outbox.wake()
        log.info("password reset link for user %s queued", user.id)


async def confirm(session: AsyncSession, lane: HashLane, token: str, new_password: str) -> tuple[str, set[str]]:
    """Set the password of the link's account (committed); returns the account and its ended sessions (the
    caller ends them on the sync layer). An unknown, used or expired link is 400."""
    row = await session.scalar(select(PasswordResetToken).where(PasswordResetToken.token_hash == hash_token(token)))
    if row is None or row.used_at is not None or as_utc(row.expires_at) <= utcnow():
        raise Refused(400, INVALID)
    token_id, user_id = row.id, row.user_id
    await session.commit()  # no transaction held while the hash waits for a thread
    new_hash = await lane.run(hash_password, new_password)
    now = utcnow()
    claimed = await session.execute(
        update(PasswordResetToken)
        .where(
            PasswordResetToken.id == token_id,
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(claimed, "rowcount", 0)) != 1:  # used by a concurrent confirmation
        await session.rollback()
        raise Refused(400, INVALID)
    await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    email = await session.scalar(select(User.email).where(User.id == user_id))
    await session.execute(update(User).where(User.id == user_id).values(password_hash=new_hash))
    # The owner proved control of the mailbox: earlier failed logins no longer slow the account down.
    await session.execute(delete(LoginFailure).where(LoginFailure.email == email))
    ended = await sessions.revoke(session, user_id, reason="password_reset")
    await session.commit()
    log.info("password of user %s reset by e-mail link; %d sessions ended", user_id, len(ended))
    return user_id, ended
