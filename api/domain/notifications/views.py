"""The JSON shapes of a notification and an activity row, as the routes return them."""

from __future__ import annotations

from typing import Any

from persistence.models import Activity, Notification, User, iso_z


def person_json(user: User | None) -> dict[str, str] | None:
    """An account as the API shows it inside another object (an actor, a creator): id and display name."""
    return {"id": user.id, "display_name": user.display_name} if user is not None else None


def notification_json(n: Notification, actor: User | None) -> dict[str, Any]:
    return {
        "id": n.id,
        "type": n.type,
        "workspace_id": n.workspace_id,
        "task_id": n.task_id,
        "actor": person_json(actor),
        "data": n.data or {},
        "created_at": iso_z(n.created_at),
        "read_at": iso_z(n.read_at) if n.read_at is not None else None,
    }


def activity_json(a: Activity, actor: User | None) -> dict[str, Any]:
    return {
        "id": a.id,
        "workspace_id": a.workspace_id,
        "task_id": a.task_id,
        "kind": a.kind,
        "field": a.field,
        "old_value": a.old_value,
        "new_value": a.new_value,
        "summary": a.summary,
        "actor": person_json(actor),
        "created_at": iso_z(a.created_at),
    }
