"""Issue 21 item 4: a webhook receiver cannot make the server hold its response (the body is read up to a few
KB, never decompressed), and a receiver that trickles its answer cannot delay another workspace's deliveries
(a whole-request deadline per attempt, and deliveries of different webhooks run concurrently, bounded)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.node import wait_until
from tests.support.server import ThreadServer
from tests.support.users import Account, create_workspace, register


@dataclass
class RawReceiver:
    """An HTTP endpoint on a raw socket, one thread per connection. ``mode``:

    - ``ok``: answers 200 at once;
    - ``huge``: answers 200 and then a body without length, read until close, ``huge_bytes`` long at most;
    - ``trickle``: sends its status line one byte every ``interval`` seconds, for ``trickle_for`` seconds.
    """

    mode: str = "ok"
    huge_bytes: int = 64 * 1024 * 1024
    interval: float = 0.5
    trickle_for: float = 30.0
    requests: list[tuple[float, bytes]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # body bytes sent per connection (huge)
    aborted: list[bool] = field(default_factory=list)  # the server closed before the body ended
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._sock is not None
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"

    def start(self) -> RawReceiver:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append((time.monotonic(), body))
            try:
                if self.mode == "ok":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                elif self.mode == "huge":
                    self._huge(conn)
                else:
                    self._trickle(conn)
            except OSError:
                pass

    def _huge(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
        chunk = b"x" * 65536
        sent = 0
        conn.settimeout(10)
        try:
            while sent < self.huge_bytes:
                sent += conn.send(chunk)
        except OSError:
            self.sent.append(sent)
            self.aborted.append(True)
            return
        self.sent.append(sent)
        self.aborted.append(False)

    def _trickle(self, conn: socket.socket) -> None:
        line = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        end = time.monotonic() + self.trickle_for
        for i in range(len(line)):
            if time.monotonic() > end or self._stop.is_set():
                return
            conn.sendall(line[i : i + 1])
            time.sleep(self.interval)


@pytest.fixture
def receivers() -> Iterator[Callable[..., RawReceiver]]:
    started: list[RawReceiver] = []

    def make(**kwargs: Any) -> RawReceiver:
        r = RawReceiver(**kwargs).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


def _hook(client: httpx.Client, wid: str, acct: Account, url: str) -> str:
    r = client.post(
        f"/api/workspaces/{wid}/webhooks", json={"url": url, "events": ["task.created"]}, headers=acct.headers
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _deliveries(client: httpx.Client, wid: str, acct: Account, hook_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/workspaces/{wid}/webhooks/{hook_id}/deliveries", headers=acct.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_a_huge_response_body_is_not_read(
    make_server: Callable[..., ThreadServer], receivers: Callable[..., RawReceiver]
) -> None:
    """The receiver answers 200 and then streams 64 MiB; the server reads a few KB and hangs up. Before, it
    read (and held) all of it."""
    receiver = receivers(mode="huge")
    srv = make_server("sqlite", webhook_allow_private=True)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "owner")
        wid = create_workspace(client, owner)
        hook = _hook(client, wid, owner, receiver.url)
        client.post(f"/api/workspaces/{wid}/tasks", json={"title": "t"}, headers=owner.headers)

        def delivered() -> dict[str, Any] | None:
            items = _deliveries(client, wid, owner, hook)
            return items[0] if items and items[0]["status"] == "delivered" else None

        item = wait_until(delivered, 30, message="the delivery never finished")
        assert item["attempts"] == 1 and item["last_status_code"] == 200
        wait_until(lambda: receiver.sent, 10)
        # what the receiver got into the socket before the server closed it: socket buffers, not 64 MiB
        assert receiver.aborted == [True], receiver.sent
        assert receiver.sent[0] < 16 * 1024 * 1024, receiver.sent


@pytest.mark.slow
def test_a_trickling_receiver_does_not_delay_another_workspace(
    make_server: Callable[..., ThreadServer], receivers: Callable[..., RawReceiver]
) -> None:
    """Workspace A's receiver sends one byte every 0.5 s (each read well inside the per-read timeout); workspace
    B's delivery, due while A's is in flight, is sent at once, and A's attempt ends at the deadline."""
    slow = receivers(mode="trickle", interval=0.5, trickle_for=30)
    fast = receivers(mode="ok")
    srv = make_server("sqlite", webhook_allow_private=True, webhook_timeout_seconds=2.0, webhook_retry_base_seconds=60)
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        a, b = register(client, "a"), register(client, "b")
        wa, wb = create_workspace(client, a), create_workspace(client, b)
        hook_a = _hook(client, wa, a, slow.url)
        _hook(client, wb, b, fast.url)
        client.post(f"/api/workspaces/{wa}/tasks", json={"title": "slow"}, headers=a.headers)
        wait_until(lambda: slow.requests, 10, message="A's delivery never started")
        started = time.monotonic()
        client.post(f"/api/workspaces/{wb}/tasks", json={"title": "fast"}, headers=b.headers)
        wait_until(lambda: fast.requests, 8, message="B's delivery waited for A's trickling receiver")
        waited = fast.requests[0][0] - started
        assert waited < 2.0, f"B's delivery waited {waited:.1f} s"

        def attempted() -> dict[str, Any] | None:
            items = _deliveries(client, wa, a, hook_a)
            return items[0] if items and items[0]["attempts"] >= 1 else None

        item = wait_until(attempted, 6, message="A's attempt did not end at the deadline")
        assert time.monotonic() - slow.requests[0][0] < 5.0
        assert item["status"] == "pending" and item["last_status_code"] is None
        assert "deadline" in item["last_error"], item


@pytest.mark.slow
def test_deliveries_run_concurrently_up_to_the_bound(
    make_server: Callable[..., ThreadServer], receivers: Callable[..., RawReceiver]
) -> None:
    """With PLAIT_WEBHOOK_CONCURRENCY=2 and three slow receivers, at most two are in flight at once."""
    slow = [receivers(mode="trickle", interval=0.3, trickle_for=30) for _ in range(3)]
    srv = make_server(
        "sqlite",
        webhook_allow_private=True,
        webhook_timeout_seconds=1.5,
        webhook_concurrency=2,
        webhook_retry_base_seconds=60,
    )
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        owner = register(client, "owner")
        wid = create_workspace(client, owner)
        for r in slow:
            _hook(client, wid, owner, r.url)
        client.post(f"/api/workspaces/{wid}/tasks", json={"title": "t"}, headers=owner.headers)
        wait_until(lambda: sum(len(r.requests) for r in slow) >= 2, 10)
        time.sleep(0.8)
        assert sum(len(r.requests) for r in slow) == 2, "a third attempt started while two were in flight"
        wait_until(lambda: all(r.requests for r in slow), 10, message="the third webhook never got its turn")
        starts = sorted(r.requests[0][0] for r in slow)
        assert starts[2] - starts[0] >= 1.2, starts
