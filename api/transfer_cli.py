"""``plait export`` and ``plait import``: the same code as the REST calls, run by a node that starts for the
command (it joins the cluster through Redis like any node, so live clients see an import at once). Both are recorded in
the audit log with the command line as the actor."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select

from api.composition import running_node
from api.domain import transfer
from api.domain.audit import record_action
from persistence.models import User, Workspace
from persistence.settings import Settings, StartupError


async def run_export(settings: Settings, workspace_id: str, fmt: str, write: Callable[[bytes], object]) -> None:
    async with running_node(settings, settings.resolved_secret_key(), settings.resolved_database_url()) as ctx:
        async with ctx.db.session() as session:
            workspace = await session.get(Workspace, workspace_id)
            if workspace is None:
                raise StartupError(f"no workspace {workspace_id}")
            doc = await ctx.sync.read_document(workspace_id)
            await record_action(
                session, "workspace.exported", workspace=workspace, target=workspace, details={"format": fmt}
            )
            if fmt == "yjs":
                write(doc.get_update())
                return
            async for chunk in transfer.export_json(await transfer.export_head(session, workspace, doc), doc):
                write(chunk)


async def run_import(settings: Settings, body: bytes, content_type: str, owner_email: str, name: str | None) -> str:
    plan = transfer.read_import(body, content_type, name)
    async with running_node(settings, settings.resolved_secret_key(), settings.resolved_database_url()) as ctx:
        async with ctx.db.session() as session:
            owner = await session.scalar(select(User).where(func.lower(User.email) == owner_email.lower()))
            if owner is None:
                raise StartupError(f"no account with the email {owner_email}")
            workspace = await transfer.import_workspace(ctx, session, owner.id, plan)
            details = {"name": workspace.name, "tasks": len(plan.tasks), "owner": owner.email}
            await record_action(session, "workspace.imported", workspace=workspace, target=workspace, details=details)
            return workspace.id
