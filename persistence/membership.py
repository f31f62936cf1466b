"""Membership lookups shared by the REST layer and the sync endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from persistence.db import Database
from persistence.models import Membership, User


@dataclass(frozen=True)
class Member:
    user_id: str
    display_name: str
    role: str


async def find_member(db: Database, workspace_id: str, user_id: str) -> Member | None:
    """The caller's membership, or None (unknown workspace and non-member look the same)."""
    async with db.session() as s:
        row = (
            await s.execute(
                select(User.display_name, Membership.role)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
            )
        ).one_or_none()
    return None if row is None else Member(user_id, row[0], row[1])


async def user_exists(db: Database, user_id: str) -> bool:
    async with db.session() as s:
        return await s.get(User, user_id) is not None


async def member_roles(db: Database, workspace_id: str) -> dict[str, str]:
    """User id -> role of every member."""
    async with db.session() as s:
        rows = await s.execute(
            select(Membership.user_id, Membership.role).where(Membership.workspace_id == workspace_id)
        )
    return {r[0]: r[1] for r in rows}
