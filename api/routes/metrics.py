"""Prometheus metrics at /metrics: open to loopback scrapers, or to anyone with PLAIT_METRICS_TOKEN."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Ctx
from api.errors import ApiError

router = APIRouter(tags=["operations"])

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (see docs/operations.md)")
async def metrics(request: Request, ctx: Ctx) -> Response:
    token = ctx.settings.metrics_token
    supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token:
        if not hmac.compare_digest(supplied.encode(), token.encode()):
            raise ApiError(401, "metrics token required", {"WWW-Authenticate": "Bearer"})
    elif (request.client.host if request.client else "") not in _LOOPBACK:
        raise ApiError(403, "metrics are served to loopback only unless PLAIT_METRICS_TOKEN is set")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
