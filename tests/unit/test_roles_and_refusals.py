"""One source for roles and statuses, and domain refusals answered like the API's own errors."""

from __future__ import annotations

from typing import get_args

import httpx
from fastapi import FastAPI

from api.domain.errors import Refused
from api.errors import ApiError, install_error_handlers
from api.permissions import PERMISSIONS, ROLE_RANK, ROLES, InviteRole
from api.routes.tasks import TaskIn
from sync_server import schema


def test_roles_rank_highest_first_and_invites_grant_every_role_but_owner() -> None:
    assert ROLES == ("owner", "admin", "editor", "viewer")
    assert ROLE_RANK == {"owner": 4, "admin": 3, "editor": 2, "viewer": 1}
    assert set(get_args(InviteRole)) == set(ROLES) - {"owner"}
    assert set(PERMISSIONS.values()) <= set(ROLES)


def test_rest_status_is_the_documents_statuses() -> None:
    enum = TaskIn.model_json_schema()["properties"]["status"]["enum"]
    assert tuple(enum) == schema.STATUSES


async def test_a_domain_refusal_answers_like_an_api_error() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/domain")
    async def domain() -> None:
        raise Refused(409, "The last owner cannot be removed")

    @app.get("/api")
    async def api() -> None:
        raise ApiError(409, "The last owner cannot be removed", headers={"X-Plait-Quota": "members"})

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        by_domain, by_api = await client.get("/domain"), await client.get("/api")
    assert by_domain.status_code == by_api.status_code == 409
    assert by_domain.json() == by_api.json() == {"detail": "The last owner cannot be removed"}
    assert by_api.headers["x-plait-quota"] == "members"
