"""What checking a token's session costs each socket join and REST request (one command).

    .venv/bin/python bench/session_check.py

Every access token names its session, and every use checks that the session lives (one indexed query joining
``auth_sessions`` and ``users``, docs/accounts.md). This times ``Authenticator.credential`` — what ``/sync``
runs once per socket join — 2,000 times over 50 live sessions of an account among 2,000, on a fresh SQLite
file and a fresh PostgreSQL database (127.0.0.1:5432), and prints p50/p95/p99.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.domain.sessions import Authenticator, open_session  # noqa: E402
from persistence.models import User  # noqa: E402
from persistence.settings import Settings  # noqa: E402
from tests.support.databases import migrated_database  # noqa: E402

KEY = "k" * 40
CALLS = 2000


async def measure(kind: str) -> list[float]:
    with tempfile.TemporaryDirectory() as d:
        async with migrated_database(kind, Path(d)) as db:
            async with db.transaction() as s:
                s.add_all(User(email=f"u{i}@example.org", display_name="u", password_hash="x") for i in range(2000))
            async with db.session() as s:
                uid = (await s.scalars(select(User.id).limit(1))).one()
                settings = Settings(secret_key=KEY)
                pairs = [await open_session(s, settings, KEY, uid, "bench") for _ in range(50)]
            auth = Authenticator(db, KEY)
            for p in pairs:  # connections opened, statements prepared
                await auth.credential(p.access_token)
            times = []
            for i in range(CALLS):
                t = time.perf_counter()
                assert await auth.credential(pairs[i % len(pairs)].access_token) is not None
                times.append((time.perf_counter() - t) * 1000)
            return sorted(times)


def main() -> None:
    print("| database | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|")
    for kind in ("sqlite", "postgres"):
        t = asyncio.run(measure(kind))
        print(f"| {kind} | {t[CALLS // 2]:.2f} | {t[CALLS * 95 // 100]:.2f} | {t[CALLS * 99 // 100]:.2f} |")


if __name__ == "__main__":
    main()
