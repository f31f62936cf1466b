"""Drive real Yjs clients (npm ``yjs`` + ``y-websocket`` under Node) from synchronous pytest code.

Each :class:`NodeClient` is one ``node tests/node/client.mjs`` process holding one ``Y.Doc``, one
awareness and one ``WebsocketProvider``. We talk to it over stdin/stdout with newline-delimited JSON:
request ``{"id": n, "cmd": "...", "args": {...}}``, reply ``{"id": n, "ok": true, "result": ...}`` or
``{"id": n, "ok": false, "error": "..."}``; the process first prints ``{"ready": true, "clientId": N}``.
Commands (arguments and replies are documented at the top of ``tests/node/client.mjs``; the methods
below mirror them): connect, disconnect, reconnect, destroy, waitSynced, waitClose, waitFor, status,
state, createTask, setField, deleteField, deleteTask, insertText, deleteText, setText, textInsert,
textDelete, mapSet, mapDelete, arrayPush, batch, setLocalState, setLocalStateField, getStates,
encodeStateAsUpdate, encodeStateVector, applyUpdate, sendRaw, ping, exit. Server close codes are kept
per connect in ``status()["closes"]`` (``wait_close(i)``); an HTTP refusal before the upgrade shows as
close 1006 plus ``status()["errors"][i]["status"]``.

The npm packages are installed on first use (``npm ci --prefix tests/node``) under a file lock, so
parallel pytest processes do not race. Outside CI a missing node/npm skips the test; with ``CI=true``
it fails, because a silently skipped real-client suite proves nothing.
"""

from __future__ import annotations

import base64
import collections
import fcntl
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
CLIENT_JS = NODE_DIR / "client.mjs"
_MARKER = NODE_DIR / "node_modules" / ".package-lock.json"

T = TypeVar("T")


class NodeClientError(RuntimeError):
    """A command failed or timed out; the message carries the Node process's recent stderr."""


def node_available() -> bool:
    """Node >= 18 and npm are on PATH."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return False
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return int(out.strip().lstrip("v").split(".")[0]) >= 18


def ensure_node_modules() -> None:
    """Run ``npm ci`` once if ``tests/node/node_modules`` is missing or older than the lock file."""
    lock_json = NODE_DIR / "package-lock.json"

    def fresh() -> bool:
        return _MARKER.exists() and _MARKER.stat().st_mtime >= lock_json.stat().st_mtime

    if fresh():
        return
    with open(NODE_DIR / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent installer finishes first; then we re-check
        if fresh():
            return
        proc = subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"npm ci failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def require_node() -> None:
    """Skip (locally) or fail (CI=true) when Node is missing; install the npm packages if needed."""
    if not node_available():
        msg = "node >= 18 and npm are required for the real Yjs client tests"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    ensure_node_modules()


def wait_until(fn: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> T:
    """Poll ``fn`` until it returns a truthy value (returned); AssertionError with the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or fn!r}; last value: {value!r}")
        time.sleep(interval)


def start_clients(n: int, *, timeout: float = 15.0, prefix: str = "c") -> list[NodeClient]:
    """Start ``n`` Node clients in parallel (each process takes ~0.3 s to boot); close them yourself."""
    require_node()
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(NodeClient, timeout=timeout, name=f"{prefix}{i}") for i in range(n)]
    clients, errors = [], []
    for f in futures:
        try:
            clients.append(f.result())
        except Exception as exc:
            errors.append(exc)
    if errors:
        for c in clients:
            c.close()
        raise errors[0]
    return clients


class NodeClient:
    """One real Yjs client in a Node subprocess; synchronous methods, one per command of client.mjs."""

    def __init__(self, *, timeout: float = 15.0, name: str = "") -> None:
        require_node()
        self.name = name
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._ready: queue.Queue[dict[str, Any]] = queue.Queue()
        self.proc = subprocess.Popen(
            ["node", str(CLIENT_JS)],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            hello = self._ready.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise NodeClientError(f"node client did not start in {timeout}s\n{self.stderr}") from None
        self.client_id: int = int(hello["clientId"])

    # -- plumbing -------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                self._stderr.append(f"[stdout] {line.rstrip()}")
                continue
            if msg.get("ready"):
                self._ready.put(msg)
                continue
            with self._lock:
                box = self._pending.get(msg.get("id"))
            if box is not None:
                box.put(msg)
        with self._lock:  # process ended: wake every waiter
            for box in self._pending.values():
                box.put({"ok": False, "error": "node process exited", "exited": True})

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())

    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr)

    def call(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Send one command and wait for its reply; NodeClientError (with stderr) on failure."""
        return self._send(cmd, args, self.timeout if timeout is None else timeout)

    def _send(self, cmd: str, args: dict[str, Any], limit: float) -> Any:
        req_id = next(self._ids)
        box: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._pending[req_id] = box
        try:
            if self.proc.poll() is not None:
                raise NodeClientError(f"[{self.name}] node exited ({self.proc.returncode})\n{self.stderr}")
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"id": req_id, "cmd": cmd, "args": args}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise NodeClientError(f"[{self.name}] cannot write to node: {exc}\n{self.stderr}") from exc
            try:
                reply = box.get(timeout=limit)
            except queue.Empty:
                raise NodeClientError(f"[{self.name}] {cmd} got no reply in {limit}s\n{self.stderr}") from None
        finally:
            with self._lock:
                self._pending.pop(req_id, None)
        if not reply.get("ok"):
            raise NodeClientError(f"[{self.name}] {cmd} failed: {reply.get('error')}\n--- stderr ---\n{self.stderr}")
        return reply.get("result")

    def _wait(self, cmd: str, timeout: float, **args: Any) -> Any:
        # the Node side enforces `timeout`; give the reply a little slack on top
        return self._send(cmd, {**args, "timeout": timeout}, timeout + 5)

    # -- connection -----------------------------------------------------------------------------
    def connect(
        self,
        url: str,
        room: str,
        token: str | None = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        resync_interval: int | None = None,
        max_backoff_time: int | None = None,
        reconnect: bool = True,
    ) -> dict[str, Any]:
        """Open ``url/room?token=...`` (``url`` like ``ws://127.0.0.1:PORT/sync``)."""
        args: dict[str, Any] = {"url": url, "room": room, "token": token, "reconnect": reconnect}
        if params is not None:
            args["params"] = params
        if headers is not None:
            args["headers"] = headers
        if resync_interval is not None:
            args["resyncInterval"] = resync_interval
        if max_backoff_time is not None:
            args["maxBackoffTime"] = max_backoff_time
        result: dict[str, Any] = self.call("connect", **args)
        return result

    def disconnect(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("disconnect")
        return result

    def reconnect(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("reconnect")
        return result

    def destroy(self) -> None:
        self.call("destroy")

    def wait_synced(self, timeout: float = 10.0) -> dict[str, Any]:
        result: dict[str, Any] = self._wait("waitSynced", timeout)
        return result

    def wait_close(self, index: int = 0, timeout: float = 10.0) -> dict[str, Any]:
        """The ``index``-th server close since ``connect``: ``{code, reason, wasClean, at}``."""
        result: dict[str, Any] = self._wait("waitClose", timeout, index=index)
        return result

    def wait_for(self, expr: str, timeout: float = 10.0) -> Any:
        """Wait in Node until the JS expression is truthy (scope: doc, Y, provider, awareness, state, status)."""
        return self._wait("waitFor", timeout, expr=expr)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("status")
        return result

    # -- document -------------------------------------------------------------------------------
    def state(
        self, texts: list[str] | None = None, maps: list[str] | None = None, arrays: list[str] | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.call("state", texts=texts or [], maps=maps or [], arrays=arrays or [])
        return result

    def tasks(self) -> dict[str, Any]:
        result: dict[str, Any] = self.state()["tasks"]
        return result

    def text(self, name: str) -> str:
        return str(self.state(texts=[name])["texts"][name])

    def map(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.state(maps=[name])["maps"][name]
        return result

    def create_task(self, title: str, **fields: Any) -> str:
        """Insert a task Y.Map (schema of docs/document-schema.md) in one transaction; returns its id."""
        return str(self.call("createTask", title=title, **fields)["id"])

    def set_field(self, task_id: str, field: str, value: Any) -> None:
        self.call("setField", task_id=task_id, field=field, value=value)

    def delete_field(self, task_id: str, field: str) -> None:
        self.call("deleteField", task_id=task_id, field=field)

    def delete_task(self, task_id: str) -> None:
        self.call("deleteTask", task_id=task_id)

    def insert_text(self, task_id: str, index: int, text: str) -> None:
        self.call("insertText", task_id=task_id, index=index, text=text)

    def delete_text(self, task_id: str, index: int, length: int) -> None:
        self.call("deleteText", task_id=task_id, index=index, length=length)

    def set_text(self, task_id: str, text: str) -> None:
        self.call("setText", task_id=task_id, text=text)

    def text_insert(self, name: str, index: int, text: str) -> None:
        self.call("textInsert", name=name, index=index, text=text)

    def text_delete(self, name: str, index: int, length: int) -> None:
        self.call("textDelete", name=name, index=index, length=length)

    def map_set(self, name: str, key: str, value: Any) -> None:
        self.call("mapSet", name=name, key=key, value=value)

    def map_delete(self, name: str, key: str) -> None:
        self.call("mapDelete", name=name, key=key)

    def array_push(self, name: str, values: list[Any]) -> None:
        self.call("arrayPush", name=name, values=values)

    def batch(self, ops: list[dict[str, Any]]) -> list[Any]:
        """Several document commands (``{"cmd": "setField", ...}``) in one Yjs transaction."""
        result: list[Any] = self.call("batch", ops=ops)
        return result

    def encode_state_as_update(self) -> bytes:
        return base64.b64decode(self.call("encodeStateAsUpdate"))

    def encode_state_vector(self) -> bytes:
        return base64.b64decode(self.call("encodeStateVector"))

    def apply_update(self, update: bytes) -> None:
        self.call("applyUpdate", update_b64=base64.b64encode(update).decode())

    def send_raw(self, data: bytes | str) -> None:
        """Write one frame as given (binary for bytes, text for str) on the provider's websocket."""
        if isinstance(data, str):
            self.call("sendRaw", text=data)
        else:
            self.call("sendRaw", bytes_b64=base64.b64encode(data).decode())

    # -- awareness ------------------------------------------------------------------------------
    def set_local_state(self, state: dict[str, Any] | None) -> None:
        self.call("setLocalState", state=state)

    def set_local_state_field(self, field: str, value: Any) -> None:
        self.call("setLocalStateField", field=field, value=value)

    def get_states(self) -> dict[int, Any]:
        return {int(k): v for k, v in self.call("getStates").items()}

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Ask the process to exit; kill it if it does not within 5 s."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": 0, "cmd": "exit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for thread in self._threads:  # readers end at EOF; closing under them would race
            thread.join(2)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
