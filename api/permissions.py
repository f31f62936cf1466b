"""The one permission table: which minimum role each action needs. Every route checks through it."""

from __future__ import annotations

from typing import Final, Literal, get_args

# The roles, highest first; a role may do everything any lower role may do. The API's bodies and OpenAPI take
# them from here (api/schemas.py), so a new role is added in this one place.
Role = Literal["owner", "admin", "editor", "viewer"]
InviteRole = Literal["admin", "editor", "viewer"]  # what an invite may grant: every role but owner
ROLES: Final[tuple[str, ...]] = get_args(Role)
ROLE_RANK: Final[dict[str, int]] = {role: len(ROLES) - i for i, role in enumerate(ROLES)}

PERMISSIONS: Final[dict[str, str]] = {
    # workspace
    "workspace.read": "viewer",
    "workspace.rename": "admin",
    "workspace.delete": "owner",
    "workspace.export": "admin",
    # members and invites
    "members.read": "viewer",
    "members.manage": "admin",
    "invites.manage": "admin",
    # tasks
    "task.read": "viewer",
    "task.write": "editor",
    "labels.manage": "editor",
    "comment.write": "editor",
    "comment.moderate": "admin",  # edit or delete anyone's comment
    # presence, activity, history, integrations
    "presence.read": "viewer",
    "activity.read": "viewer",
    "versions.read": "viewer",
    "versions.create": "editor",
    "versions.delete": "admin",
    "versions.restore": "admin",
    "webhooks.manage": "admin",
    "audit.read": "admin",
}


def role_at_least(role: str, minimum: str) -> bool:
    """True when ``role`` ranks at or above ``minimum`` (unknown roles rank below everything)."""
    return ROLE_RANK.get(role, 0) >= ROLE_RANK[minimum]


def allowed(role: str, action: str) -> bool:
    """Whether a member with ``role`` may perform ``action``; an unknown action is a programming error."""
    return role_at_least(role, PERMISSIONS[action])
