"""Read-only SQL against a test server's database, to check what the API stored (hashes, rows)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh connection (its own event loop, independent of the server's)."""

    async def run() -> list[tuple[Any, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())
