"""Personal access tokens for scripts and integrations: created (shown once), listed, deleted.

Stored as SHA-256 (api/security.py); resolved with sessions (api/domain/sessions.py). Deleting a token closes
the sync sockets opened with it (its id is the "session" they are closed by)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.errors import Refused, not_found
from api.security import PAT_PREFIX, hash_token, new_opaque_token
from persistence.models import PersonalAccessToken, is_uuid, iso_z, utcnow


def token_json(pat: PersonalAccessToken) -> dict[str, Any]:
    """A token as the API shows it: never the token itself, which only its creation returns."""
    return {
        "id": pat.id,
        "name": pat.name,
        "scopes": list(pat.scopes),
        "created_at": iso_z(pat.created_at),
        "expires_at": iso_z(pat.expires_at) if pat.expires_at else None,
        "last_used_at": iso_z(pat.last_used_at) if pat.last_used_at else None,
    }


async def create(
    session: AsyncSession, user_id: str, name: str, scopes: list[str], expires_in_days: int | None, most: int
) -> tuple[PersonalAccessToken, str]:
    """A new token (committed) and its secret, which is not stored and cannot be shown again."""
    held = await session.scalar(
        select(func.count()).select_from(PersonalAccessToken).where(PersonalAccessToken.user_id == user_id)
    )
    if int(held or 0) >= most:
        raise Refused(409, f"An account may hold at most {most} access tokens; delete one first")
    secret = new_opaque_token(PAT_PREFIX)
    now = utcnow()
    pat = PersonalAccessToken(
        user_id=user_id,
        name=name,
        scopes=sorted(set(scopes), key=("read", "write", "admin").index),
        token_hash=hash_token(secret),
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(pat)
    await session.commit()
    return pat, secret


async def listed(session: AsyncSession, user_id: str) -> list[PersonalAccessToken]:
    rows = await session.scalars(
        select(PersonalAccessToken)
        .where(PersonalAccessToken.user_id == user_id)
        .order_by(PersonalAccessToken.created_at, PersonalAccessToken.id)
    )
    return list(rows.all())


async def remove(session: AsyncSession, user_id: str, token_id: str) -> None:
    """Delete one of the account's tokens (committed); someone else's or an unknown one is 404."""
    if not is_uuid(token_id):
        raise not_found("Token")
    result = await session.execute(
        delete(PersonalAccessToken).where(PersonalAccessToken.id == token_id, PersonalAccessToken.user_id == user_id)
    )
    if int(getattr(result, "rowcount", 0)) != 1:
        raise not_found("Token")
    await session.commit()
