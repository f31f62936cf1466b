"""Workspace export and import: a workspace out as JSON (every task field, labels, comments, checklists,
members, version metadata) or as one binary Yjs update, and a new workspace in from either, or from a Trello
board's JSON export.

An import always creates a new workspace owned by the importer, written through the live document like any
other change (so the schema guard checks it). It keeps task, label, comment and checklist ids, times and
authors; an assignee who is not a member of the new workspace is cleared by the guard (invite them, then
reassign). Comments are written in a second, server-authored change: the guard attributes a comment to the
user whose change created it, and imported comments keep their original authors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pycrdt import Array, Doc, Map, Text
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import quotas
from api.domain.errors import Refused
from api.domain.node import Node
from persistence.models import Document, DocVersion, Membership, User, Workspace
from sync_server import schema

FORMAT = "plait.workspace"
FORMAT_VERSION = 1
MAX_NAME = 200
_TRELLO_COLORS = {
    "green": "#61bd4f",
    "yellow": "#f2d600",
    "orange": "#ff9f1a",
    "red": "#eb5a46",
    "purple": "#c377e0",
    "blue": "#0079bf",
    "sky": "#00c2e0",
    "lime": "#51e898",
    "pink": "#ff78cb",
    "black": "#344563",
}


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- export ----------------------------------------------------------------------------------------------


async def export_head(session: AsyncSession, workspace: Workspace, doc: Doc[Any]) -> dict[str, Any]:
    """Everything but the tasks: the workspace, its labels, members and the metadata of its versions."""
    members = await session.execute(
        select(User.id, User.display_name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace.id)
        .order_by(Membership.joined_at, User.id)
    )
    versions = await session.execute(
        select(DocVersion.id, DocVersion.label, DocVersion.kind, DocVersion.created_at, DocVersion.created_by)
        .where(DocVersion.workspace_id == workspace.id)
        .order_by(DocVersion.seq)
    )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": schema.now_iso(),
        "schema_version": schema.SCHEMA_VERSION,
        "workspace": {"id": workspace.id, "name": workspace.name, "created_at": iso(workspace.created_at)},
        "labels": schema.list_labels(doc),
        "members": [{"user_id": u, "display_name": n, "role": r} for u, n, r in members],
        "versions": [
            {"id": i, "label": label, "kind": k, "created_at": iso(c), "created_by": b}
            for i, label, k, c, b in versions
        ],
    }


async def export_json(head: dict[str, Any], doc: Doc[Any]) -> AsyncIterator[bytes]:
    """The export as JSON, a task at a time (a large workspace streams instead of being built in memory)."""
    yield json.dumps(head)[:-1].encode() + b', "tasks": ['
    for i, task in enumerate(schema.list_tasks(doc)):
        yield (b"," if i else b"") + json.dumps(task).encode()
    yield b"]}"


# ---- reading what is imported ------------------------------------------------------------------------------


@dataclass
class Plan:
    """A workspace to create: its name, label definitions and tasks in the REST shape."""

    name: str
    labels: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


def _str(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def plan_from_export(data: dict[str, Any], name: str | None) -> Plan:
    found = data.get("workspace")
    workspace: dict[str, Any] = found if isinstance(found, dict) else {}
    labels = [x for x in data.get("labels") or [] if isinstance(x, dict) and isinstance(x.get("id"), str)]
    tasks = [t for t in data.get("tasks") or [] if isinstance(t, dict) and isinstance(t.get("id"), str)]
    return Plan(name or _str(workspace.get("name"), MAX_NAME) or "Imported workspace", labels, tasks)


def plan_from_yjs(update: bytes, name: str | None) -> Plan:
    doc: Doc[Any] = Doc()
    try:
        doc.apply_update(update)
    except Exception as exc:
        raise Refused(422, f"not a Yjs update: {exc}") from None
    return Plan(name or "Imported workspace", schema.list_labels(doc), schema.list_tasks(doc))


def _trello_status(list_name: str, index: int, count: int) -> str:
    lowered = list_name.lower()
    if any(word in lowered for word in ("done", "complete", "finished", "closed")):
        return "done"
    if any(word in lowered for word in ("doing", "progress", "review", "active")):
        return "in_progress"
    return "done" if count > 2 and index == count - 1 and "backlog" not in lowered else "todo"


def plan_from_trello(data: dict[str, Any], name: str | None) -> Plan:
    """A Trello board export: lists become statuses (by name: "Done" → done, "Doing"/"In progress" → in
    progress, else to do), cards tasks (archived ones skipped), labels, checklists and comment actions
    (as the server's, the Trello author named in the text)."""
    lists = [x for x in data.get("lists") or [] if isinstance(x, dict) and not x.get("closed")]
    status_of = {x.get("id"): _trello_status(_str(x.get("name"), 200), i, len(lists)) for i, x in enumerate(lists)}
    labels = [
        {
            "id": x["id"],
            "name": _str(x.get("name"), schema.MAX_LABEL_NAME) or str(x.get("color") or "Label"),
            "color": _TRELLO_COLORS.get(str(x.get("color")), schema.DEFAULT_COLOR),
        }
        for x in data.get("labels") or []
        if isinstance(x, dict) and isinstance(x.get("id"), str)
    ]
    checklists: dict[str, list[dict[str, Any]]] = {}
    for cl in data.get("checklists") or []:
        if isinstance(cl, dict):
            items = sorted(
                (i for i in cl.get("checkItems") or [] if isinstance(i, dict)), key=lambda i: i.get("pos") or 0
            )
            checklists.setdefault(str(cl.get("idCard")), []).extend(
                {"id": i.get("id"), "text": _str(i.get("name"), 500), "done": i.get("state") == "complete"}
                for i in items
            )
    comments: dict[str, list[dict[str, Any]]] = {}
    for action in reversed([a for a in data.get("actions") or [] if isinstance(a, dict)]):
        if action.get("type") != "commentCard":
            continue
        body = _str((action.get("data") or {}).get("text"), 10_000)
        card = ((action.get("data") or {}).get("card") or {}).get("id")
        who = _str((action.get("memberCreator") or {}).get("fullName"), 200) or "someone"
        comments.setdefault(str(card), []).append(
            {
                "id": action.get("id"),
                "author_id": None,
                "body": f"{body}\n\n— {who} (Trello)",
                "created_at": action.get("date"),
            }
        )
    tasks = []
    cards = sorted(
        (
            c
            for c in data.get("cards") or []
            if isinstance(c, dict) and not c.get("closed") and c.get("idList") in status_of
        ),
        key=lambda c: c.get("pos") or 0,
    )
    for card in cards:
        due = card.get("due")
        tasks.append(
            {
                "id": str(card.get("id")),
                "title": _str(card.get("name"), 500) or "Untitled",
                "description": _str(card.get("desc"), 100_000),
                "status": status_of[card.get("idList")],
                "due_date": due[:10] if isinstance(due, str) and schema.valid_due_date(due[:10]) else None,
                "labels": [lid for lid in card.get("idLabels") or [] if isinstance(lid, str)],
                "checklist": checklists.get(str(card.get("id")), []),
                "comments": comments.get(str(card.get("id")), []),
                "created_at": card.get("dateLastActivity"),
            }
        )
    return Plan(name or _str(data.get("name"), MAX_NAME) or "Imported from Trello", labels, tasks)


def read_import(body: bytes, content_type: str, name: str | None) -> Plan:
    """What an import request carries: a binary Yjs update, a Plait export or a Trello board."""
    if content_type.startswith("application/octet-stream"):
        return plan_from_yjs(body, name)
    try:
        data = json.loads(body)
    except ValueError:
        raise Refused(422, "the body is neither JSON nor a Yjs update (send application/octet-stream)") from None
    if not isinstance(data, dict):
        raise Refused(422, "the body must be a JSON object")
    if data.get("format") == FORMAT:
        return plan_from_export(data, name)
    if isinstance(data.get("cards"), list) and isinstance(data.get("lists"), list):
        return plan_from_trello(data, name)
    raise Refused(422, f'unknown import format: expected a Plait export ("format": "{FORMAT}") or a Trello board')


# ---- writing the new workspace ----------------------------------------------------------------------------


def _item_map(item: dict[str, Any], fields: Iterable[str]) -> Map[Any]:
    values = {k: item.get(k) for k in fields}
    values["id"] = values.get("id") if isinstance(values.get("id"), str) else schema.new_id()
    return Map(values)


def write_tasks(doc: Doc[Any], plan: Plan, importer: str) -> int:
    """Labels and tasks (without comments), as the importer."""
    labels = schema.labels_map(doc)
    for x in plan.labels:
        labels[x["id"]] = Map({"id": x["id"], "name": x.get("name"), "color": x.get("color")})
    tasks = schema.tasks_map(doc)
    now = schema.now_iso()
    for t in plan.tasks:
        values = {name: t.get(name) for name in schema.SCALAR_FIELDS}
        values.update(id=t["id"], description=Text(_str(t.get("description"), 100_000)))
        values["created_by"] = values.get("created_by") or importer
        for ts in ("created_at", "updated_at"):
            values[ts] = values.get(ts) if isinstance(values.get(ts), str) else now
        values["labels"] = Array([lid for lid in t.get("labels") or [] if isinstance(lid, str)])
        values["checklist"] = Array(
            [_item_map(i, ("id", "text", "done")) for i in t.get("checklist") or [] if isinstance(i, dict)]
        )
        values["comments"] = Array([])
        tasks[t["id"]] = Map(values)
    return len(plan.tasks)


def write_comments(doc: Doc[Any], plan: Plan) -> int:
    """The comments, as the server: they keep their authors."""
    count = 0
    for t in plan.tasks:
        task = schema.task_map(doc, t["id"])
        wanted = [c for c in t.get("comments") or [] if isinstance(c, dict)]
        if task is None or not wanted:
            continue
        comments = schema.array_of(task, "comments")
        comments.extend([_item_map(c, ("id", *schema.COMMENT_FIELDS)) for c in wanted])
        count += len(wanted)
    return count


async def import_workspace(node: Node, session: AsyncSession, user_id: str, plan: Plan) -> Workspace:
    """A new workspace owned by ``user_id`` holding ``plan``; refused (nothing created) past the quotas."""
    if len(plan.tasks) > node.settings.quota_max_tasks:
        raise Refused(413, f"a workspace may hold at most {node.settings.quota_max_tasks} tasks")
    await quotas.lock_owner(session, user_id)
    await quotas.check_new_workspace(session, node.settings, user_id)
    workspace = Workspace(name=plan.name.strip()[:MAX_NAME] or "Imported workspace", created_by=user_id)
    session.add(workspace)
    await session.flush()
    session.add_all(
        [Membership(workspace_id=workspace.id, user_id=user_id, role="owner"), Document(workspace_id=workspace.id)]
    )
    await session.commit()
    await node.sync.change(workspace.id, user_id, lambda doc: write_tasks(doc, plan, user_id))
    await node.sync.change(workspace.id, None, lambda doc: write_comments(doc, plan))
    return workspace
