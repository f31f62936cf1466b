"""Fixtures: a real Plait server per database backend, and HTTP clients against it."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import Cluster, two_nodes
from tests.support.databases import MigratedTemplates, drop_postgres_database, fresh_database
from tests.support.server import ThreadServer, test_settings

BACKENDS = ["sqlite", "postgres"]


class _ErrorRecords(logging.Handler):
    """Every ``plait.*`` record at ERROR or above, from any thread (in-process servers run in their own)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        with self._guard:
            taken, self.records = self.records, []
        return taken


_ERRORS = _ErrorRecords()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_errors(*patterns): plait ERROR log records whose message matches one of these regular expressions"
        " are expected (the test provokes them); any other fails the test",
    )
    config.addinivalue_line("markers", "node_env(**settings): extra PLAIT_* environment for a test's nodes")
    config.addinivalue_line(
        "markers",
        "own_cluster: the test gets two nodes of its own instead of the shared ones (it kills a node or stops Redis)",
    )
    logging.getLogger("plait").addHandler(_ERRORS)


def _describe(record: logging.LogRecord) -> str:
    text = f"{record.levelname} {record.name}: {record.getMessage()}"
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


@pytest.fixture(autouse=True)
def no_error_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which a server (or anything else) logged an unexpected ``plait.*`` ERROR: background
    work catches and logs its errors, so without this a broken worker never turns a test red. Torn down after
    the test's own fixtures, so errors while its servers stop count too."""
    _ERRORS.take()  # what earlier tests' leftovers logged between tests belongs to no test
    yield
    marker = request.node.get_closest_marker("allow_errors")
    allowed = [re.compile(p) for p in (marker.args if marker else ())]
    unexpected = [r for r in _ERRORS.take() if not any(p.search(r.getMessage()) for p in allowed)]
    if unexpected:
        lines = [_describe(r) for r in unexpected]
        pytest.fail(
            "unexpected error log records (mark the test allow_errors if it provokes them):\n" + "\n".join(lines),
            pytrace=False,
        )


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


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two nodes, PostgreSQL and Redis started once for every cross-node test that leaves them as it found them
    (tests isolate themselves by their own users and workspaces): starting a pair costs seconds each time."""
    with two_nodes(tmp_path_factory.mktemp("shared-cluster")) as c:
        yield c


@pytest.fixture
def client(server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def tmp_data(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.drop()


@pytest.fixture
def make_server(tmp_path: Path, migrated_templates: MigratedTemplates) -> Iterator[Callable[..., ThreadServer]]:
    """Start extra servers with custom settings on a fresh database of the given backend (a copy of one at the
    latest migration: what the server would otherwise migrate on start)."""
    started: list[tuple[ThreadServer, str, str]] = []

    def factory(backend: str = "sqlite", **overrides: Any) -> ThreadServer:
        tmp = tmp_path / f"srv{len(started)}"
        tmp.mkdir()
        url = overrides.pop("database_url", None) or migrated_templates.copy(backend, tmp)
        srv = ThreadServer(test_settings(url, tmp, **overrides)).start()
        started.append((srv, backend, url))
        return srv

    yield factory
    for srv, _, _ in started:
        srv.stop()
    # only once every server is stopped: servers may share a database (nodes of one cluster), and one still
    # running would fail its shutdown compaction on a dropped database
    for url in {url for _, kind, url in started if kind == "postgres"}:
        drop_postgres_database(url)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread for the rest of
    the session, which would break every later test that calls asyncio.run(). A test run on the PostgreSQL
    backend (a ``postgres`` parameter) gets the ``postgres`` marker, so the fast tier can leave it out; a
    ``db_agnostic`` test (protocol, validation, authorization: what the database does not change) runs on
    SQLite only."""
    kept: list[pytest.Item] = []
    agnostic: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgres" in callspec.params.values():
            if item.get_closest_marker("db_agnostic"):
                agnostic.append(item)
                continue
            item.add_marker(pytest.mark.postgres)
        if "tests/browser/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.browser)
        kept.append(item)
    if agnostic:
        config.hook.pytest_deselected(items=agnostic)
    kept.sort(key=lambda item: "tests/browser/" in item.nodeid.replace("\\", "/"))
    items[:] = kept
