"""Fixtures: a real Plait server per database backend, and HTTP clients against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.server import ThreadServer, test_settings

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """One server per backend for the session; tests isolate themselves by creating their own users."""
    tmp = tmp_path_factory.mktemp(f"server-{backend}")
    url = fresh_database(backend, tmp)
    srv = ThreadServer(test_settings(url, tmp)).start()
    try:
        yield srv
    finally:
        srv.stop()
        if backend == "postgres":
            drop_postgres_database(url)


@pytest.fixture
def client(server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def tmp_data(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ThreadServer]]:
    """Start extra servers with custom settings on a fresh database of the given backend."""
    started: list[tuple[ThreadServer, str, str]] = []

    def factory(backend: str = "sqlite", **overrides: Any) -> ThreadServer:
        tmp = tmp_path / f"srv{len(started)}"
        tmp.mkdir()
        url = overrides.pop("database_url", None) or fresh_database(backend, tmp)
        srv = ThreadServer(test_settings(url, tmp, **overrides)).start()
        started.append((srv, backend, url))
        return srv

    yield factory
    dropped: set[str] = set()
    for srv, kind, url in started:
        srv.stop()
        if kind == "postgres" and url not in dropped:
            dropped.add(url)
            drop_postgres_database(url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread for the rest of
    the session, which would break every later test that calls asyncio.run()."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid.replace("\\", "/"))
