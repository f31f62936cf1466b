"""Two ``plait serve`` processes on one PostgreSQL database and one private Redis: the multi-node setup of
tests/test_multinode.py and the other cross-node tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from persistence.migrate import upgrade
from tests.support.databases import drop_postgres_database, fresh_database
from tests.support.redisproc import RedisProcess
from tests.support.server import ProcessServer, free_port, node_env, node_pair


@dataclass
class Cluster:
    a: ProcessServer
    b: ProcessServer
    redis: RedisProcess
    env: dict[str, str]


@contextmanager
def two_nodes(tmp_path: Path, extra: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Two nodes on a fresh PostgreSQL database and a private Redis; ``extra`` adds PLAIT_* settings."""
    url = fresh_database("postgres", tmp_path)
    upgrade(url)  # migrations run once, before the nodes start (as in compose.yaml)
    rds = RedisProcess(free_port()).start()
    env = node_env(url, rds.url, tmp_path, PLAIT_PRESENCE_TTL_SECONDS="5", **(extra or {}))
    try:
        with node_pair(env, tmp_path) as (a, b):
            yield Cluster(a, b, rds, env)
    finally:  # only once both nodes are stopped: a stopping node still compacts into the database
        rds.stop()
        drop_postgres_database(url)


def check_still_whole(c: Cluster) -> None:
    """After a test on the shared cluster: both nodes and Redis still run, and neither node logged an error
    during the test (each test is charged only with what was logged since the previous check)."""
    assert c.redis.proc is not None and c.redis.proc.poll() is None, "a test on the shared cluster stopped Redis"
    for node in (c.a, c.b):
        assert node.proc is not None and node.proc.poll() is None, (
            f"a test on the shared cluster ended node {node.port}: mark it own_cluster"
        )
        node.check_new_log()
