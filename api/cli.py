"""The ``plait`` command: ``serve``, ``migrate``, ``check``, ``reset-epoch``, ``reindex``, ``export``, ``import``,
``admin``, ``--version``."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from pydantic import ValidationError

# Imported before logging is configured: alembic logs at INFO while its modules load.
from api.startup import all_checks, check_dependencies, check_settings
from persistence.settings import Settings, StartupError, get_settings

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BLOCK_BYTES = 128 * 1024
# Once the application has shut down (commits done, logs folded), what is left takes well under a second.
EXIT_STALLED_SECONDS = 5.0


def _glibc(name: str) -> Callable[..., int] | None:
    """A glibc function through ctypes, or None where there is none (not Linux, or another C library)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    return function


def return_large_blocks_to_the_os() -> bool:
    """Fix glibc's mmap threshold, so blocks of 128 KiB and more are mapped and unmapped on their own.

    By default glibc raises the threshold each time such a block is freed (up to 32 MiB): a server whose large,
    short-lived buffers grow with its documents (snapshot encodings, sync step 2) then takes them from the heap,
    where the holes they leave fragment it. That was about a third of the soak's RSS growth. Skipped when
    ``MALLOC_MMAP_THRESHOLD_`` is set (the operator's choice) or the C library is not glibc."""
    mallopt = None if "MALLOC_MMAP_THRESHOLD_" in os.environ else _glibc("mallopt")
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))


def trim_the_heap_periodically(interval: float) -> threading.Thread | None:
    """Every ``interval`` seconds, give the heap's free pages back to the OS (glibc's ``malloc_trim``).

    glibc by itself only returns free memory at the top of a heap. A burst, such as hundreds of sockets joining
    at once (each admission's transient buffers) or a large document encoded, leaves holes below memory still in
    use, and they stay resident for the life of the process. The call runs in a thread of its own (ctypes
    releases the GIL) and took 0.16 ms (p50), 3.9 ms at most, under s2 and s4's load. Returns None when switched
    off (``interval`` 0) or not on glibc."""
    trim = _glibc("malloc_trim") if interval > 0 else None
    if trim is None:
        return None

    def run() -> None:
        while True:
            time.sleep(interval)
            trim(0)

    thread = threading.Thread(target=run, name="plait-malloc-trim", daemon=True)
    thread.start()
    return thread


def plait_version() -> str:
    try:
        return version("plait")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def refuse(problem: str) -> NoReturn:
    """A wrong deployment: one line on stderr, exit status 1, no traceback."""
    print(f"plait: error: {problem}", file=sys.stderr)
    raise SystemExit(1)


def load_settings(command: str) -> Settings:
    """The settings; invalid ones (``PLAIT_PORT=abc``) are one line: ``plait check``'s settings line, or the
    error of any other command."""
    try:
        return get_settings()
    except ValidationError as exc:
        errors = "; ".join(
            f"PLAIT_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        if command == "check":
            print(f"settings: invalid: {errors}")
            raise SystemExit(1) from None
        refuse(f"invalid settings: {errors}")


def check(settings: Settings) -> int:
    """``plait check``: one line per check, exit status 0 when every one passes, 1 otherwise."""
    checks = asyncio.run(all_checks(settings))
    for c in checks:
        print(c.line, flush=True)
    return 0 if all(c.ok for c in checks) else 1


def admin_command(settings: Settings, command: str, email: str | None) -> int:
    """``plait admin grant|revoke EMAIL`` and ``plait admin list``: the only way to make an instance admin (no
    account becomes one by registering first). Recorded in the audit log; takes effect at the next request."""
    from api.domain import admin
    from persistence.db import Database

    async def run() -> int:
        db = Database(settings.resolved_database_url())
        try:
            if command == "list":
                for address in await admin.admins(db):
                    print(address)
                return 0
            assert email is not None
            user = await admin.set_admin(db, email, command == "grant")
        finally:
            await db.dispose()
        if user is None:
            print(f"plait: error: no account with the email {email}", file=sys.stderr)
            return 1
        print(f"{user.email} is {'now' if command == 'grant' else 'no longer'} an instance administrator")
        return 0

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="plait", description="Plait collaborative task server")
    parser.add_argument("--version", action="version", version=f"plait {plait_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (applies migrations first for SQLite)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser(
        "check",
        help="check the settings, the database's revision and Redis, one line each; exit status 0 when all pass "
        "(run it before switching traffic to a node)",
    )
    reset = sub.add_parser(
        "reset-epoch",
        help="after restoring the database from a backup: make clients with newer local history reload "
        "instead of merging it back as duplicates (see docs/operations.md)",
    )
    reset.add_argument("--workspace", help="one workspace id (default: every workspace)")
    reindex = sub.add_parser(
        "reindex",
        help="rebuild the search and due-date index of the tasks from the stored documents (safe while serving)",
    )
    reindex.add_argument("--workspace", help="one workspace id (default: every workspace)")
    export = sub.add_parser("export", help="write a workspace to stdout or a file (as GET .../export does)")
    export.add_argument("workspace", help="workspace id")
    export.add_argument("--format", choices=("json", "yjs"), default="json")
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    imp = sub.add_parser("import", help="create a workspace from a Plait export, a Yjs update or a Trello board")
    imp.add_argument("file", help="the file to import (.yjs: a binary Yjs update; else JSON)")
    imp.add_argument("--owner", required=True, help="email of the account that will own the new workspace")
    imp.add_argument("--name", help="the new workspace's name (default: the export's)")
    admin = sub.add_parser("admin", help="instance administrators: grant, revoke, list (see docs/admin.md)")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    admin_sub.add_parser("grant", help="make the account with this email an instance administrator").add_argument(
        "email"
    )
    admin_sub.add_parser("revoke", help="take instance administration from this account").add_argument("email")
    admin_sub.add_parser("list", help="the instance administrators' emails, one a line")
    args = parser.parse_args(argv)
    settings = load_settings(args.command)
    if args.command == "check":
        raise SystemExit(check(settings))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "reset-epoch":
        from persistence.db import Database
        from persistence.doclog import open_document_log

        async def _reset() -> int:
            db = Database(settings.resolved_database_url())
            store = open_document_log(db)
            try:
                return await store.reset_epoch(args.workspace)
            finally:
                await store.close()
                await db.dispose()

        n = asyncio.run(_reset())
        logging.getLogger("plait").info("new epoch for %d document(s); restart the servers", n)
        return
    if args.command == "reindex":
        from api.domain.search.indexer import reindex as rebuild_index
        from persistence.db import Database
        from persistence.doclog import open_document_log

        async def _reindex() -> tuple[int, int]:
            db = Database(settings.resolved_database_url())
            store = open_document_log(db)
            try:
                return await rebuild_index(db, store, args.workspace)
            finally:
                await store.close()
                await db.dispose()

        spaces, tasks = asyncio.run(_reindex())
        logging.getLogger("plait").info("indexed %d task(s) of %d workspace(s)", tasks, spaces)
        return
    if args.command in ("export", "import"):
        from api.domain.errors import Refused
        from api.transfer_cli import run_export, run_import

        try:
            if args.command == "export":
                with open(args.output, "wb") if args.output else os.fdopen(os.dup(1), "wb") as out:
                    asyncio.run(run_export(settings, args.workspace, args.format, out.write))
            else:
                with open(args.file, "rb") as f:
                    body = f.read()
                kind = "application/octet-stream" if args.file.endswith(".yjs") else "application/json"
                wid = asyncio.run(run_import(settings, body, kind, args.owner, args.name))
                logging.getLogger("plait").info("imported into workspace %s", wid)
        except StartupError as exc:
            refuse(str(exc))
        except Refused as exc:
            refuse(f"refused: {exc.detail}")
        return
    if args.command == "admin":
        raise SystemExit(admin_command(settings, args.admin_command, getattr(args, "email", None)))
    if args.command == "migrate":
        from persistence.migrate import upgrade

        upgrade(settings.resolved_database_url())
        logging.getLogger("plait").info("database is at the latest migration")
        return
    import uvicorn

    from api.app import create_app

    # Before uvicorn starts: a wrong deployment is one line and exit status 1, not a lifespan traceback.
    try:
        check_settings(settings)
        settings.resolved_secret_key()
        asyncio.run(check_dependencies(settings))
    except StartupError as exc:
        refuse(str(exc))
    # The cyclic GC's default thresholds (700 allocations) mean a young collection every few updates and a
    # full one (all connections, rooms and their tasks: tens of ms at 1,000 sockets) every few seconds, which
    # was the p99 fan-out latency of s6. Objects of a sync server are long-lived and rarely cyclic: collect
    # far less often, and keep the import-time heap out of every collection.
    gc.set_threshold(50_000, 20, 100)
    gc.collect()  # not the checks' garbage (their event loop)
    gc.freeze()
    return_large_blocks_to_the_os()
    trim_the_heap_periodically(settings.malloc_trim_seconds)
    uvicorn.run(
        create_app(settings, startup_checks=False, exit_stalled_after=EXIT_STALLED_SECONDS),
        host=args.host or settings.host,
        port=args.port or settings.port,
        timeout_graceful_shutdown=5,
        log_config=None,
        **settings.uvicorn_options(),
    )
