"""The one permission table: which minimum role each action needs. Every route checks through it."""

from __future__ import annotations

from typing import Final

# Highest first; a role may do everything any lower role may do.
ROLE_RANK: Final[dict[str, int]] = {"owner": 4, "admin": 3, "editor": 2, "viewer": 1}

PERMISSIONS: Final[dict[str, str]] = {
    # workspace
    "workspace.read": "viewer",
    "workspace.rename": "admin",
    "workspace.delete": "owner",
    # members and invites
    "members.read": "viewer",
    "members.manage": "admin",
    "invites.manage": "admin",
    # document content (sync issue and later)
    "doc.read": "viewer",
    "doc.write": "editor",
    "task.read": "viewer",
    "task.write": "editor",
    # presence, activity, history, integrations
    "presence.read": "viewer",
    "activity.read": "viewer",
    "versions.read": "viewer",
    "versions.create": "editor",
    "versions.delete": "admin",
    "versions.restore": "admin",
    "webhooks.manage": "admin",
}


def role_at_least(role: str, minimum: str) -> bool:
    """True when ``role`` ranks at or above ``minimum`` (unknown roles rank below everything)."""
    return ROLE_RANK.get(role, 0) >= ROLE_RANK[minimum]


def allowed(role: str, action: str) -> bool:
    """Whether a member with ``role`` may perform ``action``; an unknown action is a programming error."""
    return role_at_least(role, PERMISSIONS[action])
