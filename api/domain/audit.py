"""The audit log: who did what to what, when, from which address (docs/admin.md#audit-log).

Routes record an action with one call, ``record_action(session, "member.role_changed", ...)``, after the action
itself is committed. Who acted and from where is bound once per request by the authentication dependency
(``bind_actor``, from ``api/deps.py``): the address is the client's as uvicorn reports it, which is the
right-most untrusted ``X-Forwarded-For`` entry when the peer is a trusted proxy (``PLAIT_FORWARDED_ALLOW_IPS``),
the same address the login throttle counts. Entries are only ever appended: no route changes or deletes one.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import AuditEntry, Base, Workspace, iso_z, utcnow

log = logging.getLogger("plait.audit")

ADDRESS_CHARS = 64  # the column's width
MAX_DETAIL_CHARS = 200  # a string in ``details`` is cut to this (names, URLs): the log records, it does not archive

# The actions Plait records (docs/admin.md lists them); a test checks every route records its own.
ACTIONS = frozenset(
    {
        "workspace.created",
        "workspace.renamed",
        "workspace.deleted",
        "workspace.exported",
        "workspace.imported",
        "member.joined",
        "member.role_changed",
        "member.removed",
        "member.left",
        "invite.created",
        "invite.revoked",
        "webhook.created",
        "webhook.deleted",
        "token.created",
        "token.deleted",
        "admin.granted",
        "admin.revoked",
        "admin.user_disabled",
        "admin.user_enabled",
    }
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts in the current request: the account, and the client address the request came from."""

    user_id: str | None
    email: str | None
    address: str | None


COMMAND_LINE = Actor(None, None, None)  # ``plait admin ...``: an operator on the server itself
_actor: ContextVar[Actor | None] = ContextVar("plait_audit_actor", default=None)


def bind_actor(user_id: str, email: str, address: str | None) -> None:
    """Remember who the current request speaks for (each request runs in a task of its own, so this never
    reaches another request)."""
    _actor.set(Actor(user_id, email, (address or "")[:ADDRESS_CHARS] or None))


def current_actor() -> Actor | None:
    return _actor.get()


# What an entry calls the rows it can be about (``target``): the type name and the primary key.
TARGET_TYPES = {"User": "user", "Workspace": "workspace", "Invite": "invite", "Webhook": "webhook"}


def _identity(row: Base) -> str:
    """A stored row's id from its identity key: no query, even when a rollback expired the row's attributes."""
    key = inspect(row).identity
    assert key is not None, "a row that was never stored"
    return str(key[0])


def _target(target: tuple[str, str | None] | Base | None) -> tuple[str | None, str | None]:
    if target is None:
        return None, None
    if isinstance(target, tuple):
        return target
    return TARGET_TYPES[type(target).__name__], _identity(target)


def _clip(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v[:MAX_DETAIL_CHARS] if isinstance(v, str) else v for k, v in details.items()}


async def record_action(
    session: AsyncSession,
    action: str,
    *,
    workspace: Workspace | str | None = None,
    target: tuple[str, str | None] | Base | None = None,
    details: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> None:
    """Append one entry and commit it (call it after the action's own commit). ``workspace`` is an id or the
    route's ``Workspace``; ``target`` is (type, id) or a row (``TARGET_TYPES``). A row's id is read from its identity:
    a rollback in the action may have expired it, and reading an expired attribute would query. ``actor``
    defaults to the request's (``bind_actor``)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to api.domain.audit.ACTIONS")
    who = actor or current_actor() or COMMAND_LINE
    kind, target_id = _target(target)
    workspace_id = workspace if workspace is None or isinstance(workspace, str) else _identity(workspace)
    session.add(
        AuditEntry(
            created_at=utcnow(),
            actor_id=who.user_id,
            actor_email=who.email,
            action=action,
            workspace_id=workspace_id,
            target_type=kind,
            target_id=target_id,
            details=_clip(details or {}),
            address=who.address,
        )
    )
    await session.commit()


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "action": entry.action,
        "created_at": iso_z(entry.created_at),
        "actor": None
        if entry.actor_id is None and entry.actor_email is None
        else {
            "id": entry.actor_id,
            "email": entry.actor_email,
        },
        "workspace_id": entry.workspace_id,
        "target": None if entry.target_type is None else {"type": entry.target_type, "id": entry.target_id},
        "details": entry.details or {},
        "address": entry.address,
    }


def query(
    *,
    workspace_id: str | None = None,
    action: str | None = None,
    actor_id: str | None = None,
    target_id: str | None = None,
) -> Select[AuditEntry]:
    """The entries to page through (``api.pagination.keyset_page`` on ``AuditEntry.seq``), filtered."""
    q = select(AuditEntry)
    if target_id is not None:
        q = q.where(AuditEntry.target_id == target_id)
    if workspace_id is not None:
        q = q.where(AuditEntry.workspace_id == workspace_id)
    if action is not None:
        q = q.where(AuditEntry.action == action)
    if actor_id is not None:
        q = q.where(AuditEntry.actor_id == actor_id)
    return q
