"""A real Server-Sent Events reader for tests: one background thread parsing ``text/event-stream`` over httpx.

Usage::

    with SseReader(f"{base}/api/notifications/stream?token={tok}") as sse:
        sse.wait_open()
        ...
        event = sse.wait_event(lambda e: e.event == "notification")
    sse.comments  # heartbeat comment lines seen
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseReader:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status_code: int | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=None))
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SseReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as resp:
                self._response = resp
                if self._stop.is_set():  # closed while connecting
                    return
                self.status_code = resp.status_code
                self._opened.set()
                if resp.status_code != 200:
                    return
                current = SseEvent()
                data_lines: list[str] = []
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if data_lines or current.id is not None:
                            current.data = "\n".join(data_lines)
                            with self._lock:
                                self.events.append(current)
                        current, data_lines = SseEvent(), []
                    elif line.startswith(":"):
                        with self._lock:
                            self.comments.append(line[1:].strip())
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "data":
                            data_lines.append(value)
                        elif name == "event":
                            current.event = value
                        elif name == "id":
                            current.id = value
        except BaseException as exc:
            if not self._stop.is_set():
                self.error = exc
        finally:
            self._opened.set()

    def wait_open(self, timeout: float = 10.0) -> int:
        assert self._opened.wait(timeout), "SSE stream did not open"
        assert self.status_code is not None, f"SSE request failed: {self.error!r}"
        return self.status_code

    def snapshot(self) -> list[SseEvent]:
        with self._lock:
            return list(self.events)

    def wait_event(self, pred: Callable[[SseEvent], bool] = lambda e: True, timeout: float = 10.0) -> SseEvent:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.snapshot():
                if pred(e):
                    return e
            time.sleep(0.02)
        raise AssertionError(f"no matching SSE event in {timeout}s; got {self.snapshot()!r} error={self.error!r}")

    def close(self) -> None:
        """Hang up at once: closing the client does not wake a read blocked until the next heartbeat (seconds),
        shutting the socket down does."""
        self._stop.set()
        resp = self._response
        stream = resp.extensions.get("network_stream") if resp is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SseReader:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
