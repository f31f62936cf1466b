"""Search latency on a workspace of 10,000 tasks, SQLite and PostgreSQL: ``python bench/search.py``.

Builds a real pycrdt document of N tasks (title, description, two comments, three checklist items; words drawn
from a vocabulary of 5,000 so that some words are rare and some common), indexes it with the code a node uses
(``extract.all_rows`` + ``store.replace_workspace``), plus a second workspace of the same size that the
searcher is not a member of, then times the two queries the API runs: ``matching_task_ids`` (the tasks list's
``?q=``, every id) and ``search_for_user`` (``GET /api/search``, one page of 20 with snippets). Prints p50/p95
per query and backend. PostgreSQL at ``PLAIT_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432``); a
fresh database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycrdt import Array, Doc, Map, Text

from api.domain.search import extract, store
from persistence.db import Database
from persistence.migrate import upgrade
from persistence.models import Membership, User, Workspace

RUNS = 30


def vocabulary(n: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(n)]


def words(vocab: list[str], rng: random.Random, k: int) -> str:
    # Zipf-like: a few words are common, most are rare
    return " ".join(vocab[min(int(rng.paretovariate(1.1)) - 1, len(vocab) - 1)] for _ in range(k))


def document(n: int, vocab: list[str], rng: random.Random) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    tasks = doc.get("tasks", type=Map)
    with doc.transaction():
        for i in range(n):
            tid = str(uuid.uuid4())
            tasks[tid] = Map(
                {
                    "id": tid,
                    "title": words(vocab, rng, 5),
                    "description": Text(words(vocab, rng, 60)),
                    "status": rng.choice(["todo", "in_progress", "done"]),
                    "priority": rng.choice(["none", "low", "medium", "high", "urgent"]),
                    "rank": f"a{i:06d}",
                    "updated_at": "2025-01-01T00:00:00.000Z",
                    "comments": Array([Map({"id": f"c{j}", "body": words(vocab, rng, 20)}) for j in range(2)]),
                    "checklist": Array([Map({"id": f"i{j}", "text": words(vocab, rng, 4)}) for j in range(3)]),
                }
            )
    return doc


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, round(q * (len(values) - 1)))]


async def run(url: str, n: int, label: str) -> list[str]:
    rng = random.Random(23)
    vocab = vocabulary(5000, rng)
    db = Database(url)
    lines = []
    try:
        user_id, wid, other = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        async with db.transaction() as s:
            s.add(User(id=user_id, email=f"{user_id}@x", password_hash="x", display_name="bench"))
            s.add_all([Workspace(id=wid, name="bench"), Workspace(id=other, name="other")])
            await s.flush()
            s.add(Membership(workspace_id=wid, user_id=user_id, role="owner"))
        for w in (wid, other):
            doc = document(n, vocab, rng)
            t0 = time.perf_counter()
            rows = extract.all_rows(doc)
            t1 = time.perf_counter()
            async with db.transaction() as s:
                await store.replace_workspace(s, db, w, rows, 1)
            t2 = time.perf_counter()
            if w == wid:
                lines.append(f"{label}: build of {n} tasks: read {t1 - t0:.2f} s, write {t2 - t1:.2f} s")
        body = "\n".join(r["body"] for r in rows[:200])
        rare = next(w for w in reversed(vocab) if w in body)
        queries = {
            "common word": vocab[0],
            "rare word": rare,
            "prefix (2 letters)": vocab[1][:2],
            "two words": f"{vocab[0]} {vocab[2]}",
        }
        for name, q in queries.items():
            ids_ms: list[float] = []
            page_ms: list[float] = []
            hits = 0
            for _ in range(RUNS):
                async with db.session() as s:
                    t0 = time.perf_counter()
                    hits = len(await store.matching_task_ids(s, wid, q))
                    t1 = time.perf_counter()
                    await store.search_for_user(s, user_id, q, 0, 20)
                    t2 = time.perf_counter()
                ids_ms.append((t1 - t0) * 1000)
                page_ms.append((t2 - t1) * 1000)
            lines.append(
                f"{label}: {name:<20} {hits:>5} hits | ids p50 {statistics.median(ids_ms):7.2f} ms"
                f" p95 {pct(ids_ms, 0.95):7.2f} ms | page of 20 p50 {statistics.median(page_ms):7.2f} ms"
                f" p95 {pct(page_ms, 0.95):7.2f} ms"
            )
    finally:
        await db.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    import os

    for backend in args.backends.split(","):
        if backend == "sqlite":
            tmp = tempfile.mkdtemp(prefix="plait-bench-search-")
            url = f"sqlite+aiosqlite:///{tmp}/plait.db"
            upgrade(url)
            for line in asyncio.run(run(url, args.tasks, "sqlite")):
                print(line, flush=True)
    if "postgres" in args.backends.split(","):
        base = os.environ.get("PLAIT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
        name = f"bench_search_{uuid.uuid4().hex[:8]}"
        from tests.support.databases import drop_postgres_database  # the suite's helpers: create and drop

        url = f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
        asyncio.run(_create_pg(base, name))
        try:
            upgrade(url)
            for line in asyncio.run(run(url, args.tasks, "postgres")):
                print(line, flush=True)
        finally:
            drop_postgres_database(url)


async def _create_pg(base: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
