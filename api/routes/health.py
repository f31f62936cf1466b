"""Liveness and readiness probes for load balancers."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import Ctx
from sync_server import metrics

router = APIRouter(tags=["health"])
PROBE_TIMEOUT = 5.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(ctx: Ctx) -> JSONResponse:
    """Ready when every dependency answers (the database, and Redis when PLAIT_REDIS_URL is set) and every
    background loop of the node still runs. 503 otherwise, naming the failing check (``"error: ..."``); a
    crashed loop appears as ``"loop <name>"``."""
    checks: dict[str, str] = {}
    try:
        async with ctx.db.session() as s:
            await asyncio.wait_for(s.execute(text("SELECT 1")), PROBE_TIMEOUT)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    if ctx.sync.clustered:
        try:
            reachable = await asyncio.wait_for(ctx.sync.cluster_reachable(), PROBE_TIMEOUT)
            checks["redis"] = "ok" if reachable else "error: not reachable"
        except TimeoutError:
            checks["redis"] = "error: no answer"
    for name, failure in ctx.supervisor.failures.items():
        checks[f"loop {name}"] = f"error: {failure}"
    ready = all(v == "ok" for v in checks.values())
    metrics.READINESS_CHECKS.labels("ok" if ready else "unavailable").inc()
    for name in (n for n, v in checks.items() if v != "ok"):
        metrics.READINESS_FAILURES.labels(name).inc()
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
