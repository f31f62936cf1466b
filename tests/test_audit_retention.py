"""The audit log's retention (``PLAIT_AUDIT_RETENTION_DAYS``): one node of the cluster drops entries older than the
configured age, in batches; newer entries stay. Both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from persistence.db import Database
from persistence.models import AuditEntry, utcnow
from tests.support.admins import grant_admin
from tests.support.node import wait_until
from tests.support.server import ThreadServer
from tests.support.users import Account, create_workspace, register


def _age(url: str, workspace_ids: list[str], days: int) -> None:
    """Move these workspaces' entries ``days`` into the past (what months of running would have done)."""

    async def run() -> None:
        db = Database(url)
        try:
            async with db.transaction() as s:
                await s.execute(
                    update(AuditEntry)
                    .where(AuditEntry.workspace_id.in_(workspace_ids))
                    .values(created_at=utcnow() - timedelta(days=days))
                )
        finally:
            await db.dispose()

    asyncio.run(run())


def _logged(http: httpx.Client, root: Account) -> list[dict[str, Any]]:
    r = http.get("/api/admin/audit", params={"action": "workspace.created", "limit": 200}, headers=root.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_entries_older_than_the_retention_go_and_newer_ones_stay(
    backend: str, make_server: Callable[..., ThreadServer]
) -> None:
    srv = make_server(backend, audit_retention_days=30, audit_prune_seconds=0.2, audit_prune_batch=2)
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        root = register(http, "root")
        grant_admin(srv.settings, root.email)
        old = [create_workspace(http, root, f"old{i}") for i in range(5)]  # five entries: three batches of two
        kept = [create_workspace(http, root, f"kept{i}") for i in range(2)]
        borderline = create_workspace(http, root, "29 days")
        _age(srv.settings.database_url, old, 31)
        _age(srv.settings.database_url, [borderline], 29)
        wait_until(lambda: not {e["workspace_id"] for e in _logged(http, root)} & set(old), timeout=20)
        left = {e["workspace_id"] for e in _logged(http, root)}
        assert set(kept) | {borderline} <= left
        assert root.id in {(e["target"] or {}).get("id") for e in _logged_all(http, root)}  # admin.granted: young


def _logged_all(http: httpx.Client, root: Account) -> list[dict[str, Any]]:
    r = http.get("/api/admin/audit", params={"limit": 200}, headers=root.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])
