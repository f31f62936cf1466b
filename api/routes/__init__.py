"""Route registration: one module per resource."""

from __future__ import annotations

from fastapi import FastAPI

from api.routes import (
    activity,
    admin,
    audit,
    auth,
    checklist,
    comments,
    docs,
    document,
    health,
    invites,
    labels,
    me,
    members,
    metrics,
    notifications,
    password_reset,
    presence,
    search,
    tasks,
    transfer,
    versions,
    web,
    webhooks,
    workspaces,
)
from persistence.settings import Settings


def register_routes(app: FastAPI, settings: Settings) -> None:
    docs.mount_docs(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(auth.router)
    app.include_router(password_reset.router)
    app.include_router(me.router)
    app.include_router(transfer.router)  # before workspaces: /import is not a workspace id
    app.include_router(workspaces.router)
    app.include_router(members.router)
    app.include_router(invites.router)
    app.include_router(tasks.router)
    app.include_router(labels.router)
    app.include_router(checklist.router)
    app.include_router(comments.router)
    app.include_router(activity.router)
    app.include_router(presence.router)
    app.include_router(document.router)
    app.include_router(notifications.router)
    app.include_router(versions.router)
    app.include_router(webhooks.router)
    app.include_router(search.router)
    app.include_router(admin.router)
    app.include_router(audit.router)

    # /sync/{workspace_id} is served by PlaitApp itself, ahead of the middleware stack (api/app.py).

    web.mount_web(app, settings.web_dist)
