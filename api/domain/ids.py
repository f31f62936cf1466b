"""Row ids are UUIDs: a value that is not one names nothing (checked before it reaches a query, where
PostgreSQL's uuid columns would fail on it)."""

from __future__ import annotations

import uuid


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
