"""Run the real Plait app under uvicorn, in a thread (in-process, measured by coverage) or a subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from persistence.settings import Settings

if TYPE_CHECKING:
    from api.context import AppContext

# plait serve's log format (api/cli.py): "<asctime> <LEVEL> <logger>: <message>"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \S+ [A-Z]+ ")
ERROR_LINE = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ")
SECRET = "test-secret-key-that-is-long-enough-for-hs256-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": SECRET,
        "migrate_on_start": True,
        "sqlite_synchronous": "NORMAL",
        # argon2 at its minimum cost: hashing dominates the suite's time otherwise (production keeps the default)
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 8,
        "password_hash_parallelism": 1,
        # the suite registers hundreds of accounts from loopback; tests of the limit set their own
        "register_max_per_address": 0,
        # session-scoped servers and accounts outlive the 15-minute default in a slow full run
        "access_token_ttl_seconds": 3600,
        # search tests wait for the index: a short window (production's 3 s spares the group commit)
        "search_index_debounce_ms": 300,
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]


def wait_ready(base_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server at {base_url} not ready after {timeout}s")


@dataclass
class ThreadServer:
    """The app served by uvicorn in a background thread of the test process."""

    settings: Settings
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def ctx(self) -> AppContext:
        """The running app's context (its services), for tests that look inside a node."""
        assert self._server is not None, "start() first"
        ctx: AppContext = self._server.config.app.state.ctx  # type: ignore[union-attr]
        return ctx

    def start(self) -> ThreadServer:
        from api.app import create_app

        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=2,
            **self.settings.uvicorn_options(),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_ready(self.base_url)
        return self

    def stop(self) -> None:
        """Graceful shutdown; a server still running 15 s later is a hang, and fails the test."""
        if self._server is not None:
            self._server.should_exit = True
        thread, self._thread = self._thread, None  # stop once: a failed stop is not waited for again
        if thread is not None:
            thread.join(timeout=15)
            assert not thread.is_alive(), f"the server on port {self.port} did not shut down within 15 s"


@dataclass
class ProcessServer:
    """``plait serve`` in its own process, for crash (kill -9) and restart tests."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    allow_errors: tuple[str, ...] = ()  # regular expressions for error lines the test provokes on purpose
    _log_from: int = 0
    _own_log: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> ProcessServer:
        self.launch()
        wait_ready(self.base_url)
        return self

    def launch(self) -> ProcessServer:
        """Start the process without waiting for it to be ready (``start_all`` boots several at once)."""
        cheap_hashing = {
            "PLAIT_PASSWORD_HASH_TIME_COST": "1",
            "PLAIT_PASSWORD_HASH_MEMORY_KIB": "8",
            "PLAIT_PASSWORD_HASH_PARALLELISM": "1",
            "PLAIT_REGISTER_MAX_PER_ADDRESS": "0",
        }
        env = {**os.environ, **cheap_hashing, **self.env, "PLAIT_PORT": str(self.port), "PLAIT_HOST": "127.0.0.1"}
        if self.log_path is None:  # the log is always kept: stop() reads it
            fd, name = tempfile.mkstemp(prefix="plait-serve-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = Path(name), True
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def log(self) -> str:
        """What this process wrote to its log (a log shared by restarts: from this start on)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_from)
            return f.read().decode(errors="replace")

    def check_log(self) -> None:
        """No traceback and no ERROR line in the log, except those ``allow_errors`` expects."""
        self._check(self.log())

    def _check(self, text: str) -> None:
        allowed = [re.compile(p) for p in self.allow_errors]
        bad: list[str] = []
        excused = False  # the log entry this line continues was an allowed error (its traceback is too)
        for line in text.splitlines():
            if LOG_LINE.match(line):
                excused = any(p.search(line) for p in allowed)
                if ERROR_LINE.match(line) and not excused:
                    bad.append(line)
            elif line.startswith("Traceback") and not excused:
                bad.append(line)
        assert not bad, f"plait serve on port {self.port} logged errors:\n" + "\n".join(bad) + f"\n---\n{text[-4000:]}"

    def check_new_log(self) -> None:
        """``check_log`` for what was logged since the last check: a process shared by several tests charges
        each test only with its own errors."""
        if self.log_path is None or not self.log_path.exists():
            return
        with open(self.log_path, "rb") as f:
            f.seek(self._log_from)
            raw = f.read()
        self._check(raw.decode(errors="replace"))
        self._log_from += len(raw)

    def kill(self) -> None:
        """kill -9: no shutdown handler runs (what it logged until then is still checked)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.check_log()

    def stop(self) -> None:
        """SIGTERM and a clean exit: a process still running 15 s later is killed and fails the test, as does
        an error in its log. uvicorn re-raises the SIGTERM it handled once shut down, so a clean exit is -15
        (or 0) after "Application shutdown complete"."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:  # killed, or it exited on its own: what it logged is still checked
            self.check_log()
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # the node logs where each of its tasks waits
            time.sleep(1)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(
                f"plait serve on port {self.port} did not exit within 15 s of SIGTERM:\n{self.log()[-12000:]}"
            ) from None
        assert code in (0, -signal.SIGTERM), f"plait serve exited with {code}:\n{self.log()[-4000:]}"
        assert "Application shutdown complete" in self.log(), self.log()[-4000:]
        self.check_log()
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def start_all(*servers: ProcessServer) -> None:
    """Boot several ``plait serve`` processes side by side (each spends about a second importing) and wait until
    every one is ready."""
    for srv in servers:
        srv.launch()
    for srv in servers:
        wait_ready(srv.base_url)


def node_env(database_url: str, redis_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The settings the nodes of a test cluster share: a database migrated beforehand, a Redis namespace of
    their own; ``settings`` add or override ``PLAIT_*`` values."""
    return {
        "PLAIT_DATABASE_URL": database_url,
        "PLAIT_REDIS_URL": redis_url,
        "PLAIT_REDIS_NAMESPACE": f"t{uuid.uuid4().hex[:8]}",
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_MIGRATE_ON_START": "false",
        "PLAIT_ENV": "test",
        "PLAIT_DATA_DIR": str(data_dir),
        **settings,
    }


@contextmanager
def node_pair(env: dict[str, str], log_dir: Path) -> Iterator[tuple[ProcessServer, ProcessServer]]:
    """Nodes "node-a" and "node-b" on ``env``, booted side by side, stopped afterwards."""
    a = ProcessServer({**env, "PLAIT_NODE_ID": "node-a"}, log_path=log_dir / "a.log")
    b = ProcessServer({**env, "PLAIT_NODE_ID": "node-b"}, log_path=log_dir / "b.log")
    try:
        start_all(a, b)
        yield a, b
    finally:
        try:
            a.stop()
        finally:  # a stop that raises (errors in its log) must not leave the other node running
            b.stop()
