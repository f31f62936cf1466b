"""The text of Plait's e-mails (plain text: no remote content, nothing for a mail client to load)."""

from __future__ import annotations

from typing import Any

TYPE_TEXT = {
    "task_assigned": "assigned you a task",
    "task_unassigned": "unassigned you from a task",
    "task_completed": "completed a task",
    "task_due_date_changed": "changed the due date of a task",
    "member_joined": "joined a workspace",
    "mentioned": "mentioned you",
    "commented": "commented on a task",
    "due_soon": "a task of yours is due soon",
}
DIGEST_MAX_ITEMS = 50


def password_reset(link: str, minutes: int) -> tuple[str, str]:
    body = (
        "Someone (hopefully you) asked to reset the password of your Plait account.\n\n"
        f"Choose a new password here (the link works once, for {minutes} minutes):\n\n{link}\n\n"
        "Resetting the password signs you out everywhere. If you did not ask for this, ignore this e-mail:\n"
        "your password stays as it is.\n"
    )
    return "Reset your Plait password", body


def invite(inviter: str, workspace: str, role: str, link: str, expires: str) -> tuple[str, str]:
    body = (
        f"{inviter} invited you to the workspace \u201c{workspace}\u201d on Plait, as {role}.\n\n"
        f"Join it here (sign in or create an account first):\n\n{link}\n\n"
        f"The invitation expires {expires}.\n"
    )
    return f"{inviter} invited you to \u201c{workspace}\u201d on Plait", body


def digest(items: list[dict[str, Any]], more: int, base_url: str) -> tuple[str, str]:
    """``items``: {actor, type, title, workspace} of the unread notifications, oldest first."""
    total = len(items) + more
    lines = [f"You have {total} unread notification{'s' if total != 1 else ''} in Plait:", ""]
    for item in items:
        what = TYPE_TEXT.get(str(item["type"]), str(item["type"]))
        who = f"{item['actor']} " if item.get("actor") and item["type"] != "due_soon" else ""
        title = f": \u201c{item['title']}\u201d" if item.get("title") else ""
        where = f" (in {item['workspace']})" if item.get("workspace") else ""
        lines.append(f"- {who}{what}{title}{where}")
    if more:
        lines.append(f"- and {more} more")
    lines += [
        "",
        f"Open Plait: {base_url}/",
        f"You get this digest because you switched it on; switch it off at {base_url}/settings/notifications",
    ]
    subject = f"{total} unread notification{'s' if total != 1 else ''} in Plait"
    return subject, "\n".join(lines) + "\n"
