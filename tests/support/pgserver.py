"""A private PostgreSQL cluster for one test: ``initdb`` into a temporary directory, ``pg_ctl`` start/stop/restart.

Tests that stop or crash the database must never touch the machine's shared server (other suites use it at the
same time). PostgreSQL refuses to run as root, so when we are root the cluster belongs to the ``postgres`` user
and every command runs through ``runuser -u postgres --``. Without the binaries (or that user) the test is
skipped locally and fails in CI (CI=true), like every other required service.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from tests.support.databases import IN_CI, _run
from tests.support.server import free_port


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"a private PostgreSQL is required in CI: {reason}")
    pytest.skip(reason)


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian layout), or whatever ``initdb`` is on PATH."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted((p for p in root.iterdir() if (p / "bin" / "initdb").exists()), key=_version_key)
        if versions:
            return versions[-1] / "bin"
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


def _version_key(p: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in p.name.split(".") if x.isdigit())


@dataclass
class PgServer:
    """One PostgreSQL cluster on a free port of 127.0.0.1 with trust authentication."""

    port: int = field(default_factory=free_port)
    bindir: Path | None = None
    root: Path | None = None
    _owner: str | None = None  # run commands as this user (when we are root)

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        assert self.bindir is not None
        exe = str(self.bindir / args[0])
        if self._owner is not None:
            return ["runuser", "-u", self._owner, "--", exe, *args[1:]]
        return [exe, *args[1:]]

    def _check(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(self._cmd(*args), capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout!r} {done.stderr!r}")

    def init(self) -> PgServer:
        """Create the cluster (skips/fails the test when PostgreSQL cannot be run here)."""
        self.bindir = self.bindir or find_bindir()
        if self.bindir is None:
            _unavailable("PostgreSQL binaries (initdb, pg_ctl) not installed")
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                _unavailable("running as root and there is no 'postgres' user to own the cluster")
            if shutil.which("runuser") is None:
                _unavailable("running as root without runuser")
            self._owner = "postgres"
        # Not under pytest's tmp_path: its parents are private to root, and the cluster's owner must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="plait-pg-"))
        if self._owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o700)
        self._check("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self, timeout: float = 60) -> PgServer:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
            " -c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._check(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )
        self.wait_accepting(timeout)
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` closes every session (clients see their connections terminated); ``immediate`` is a crash."""
        self._check("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def wait_accepting(self, timeout: float = 30) -> None:
        async def probe() -> bool:
            try:
                conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                return False
            await conn.close()
            return True

        deadline = time.monotonic() + timeout
        while not _run(probe()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"private PostgreSQL on port {self.port} not accepting: {self.log_tail()}")
            time.sleep(0.1)

    def create_database(self, name: str) -> str:
        async def create() -> None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        _run(create())
        return self.url(name)

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.logfile.read_text(errors="replace")[-n:]
        return ""

    def destroy(self) -> None:
        """Stop (if running) and delete the cluster."""
        if self.root is None:
            return
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
