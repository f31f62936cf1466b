"""Two Plait nodes (processes) on a private PostgreSQL and Redis behind Debian's nginx running
deploy/nginx.conf: the deployment of docs/deployment.md on loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.nginx import Nginx, require_nginx
from tests.support.pgserver import PgServer
from tests.support.redisproc import RedisProcess
from tests.support.server import SECRET, ProcessServer, free_port, start_all


@contextmanager
def balanced_cluster(
    tmp_path: Path, *, sticky: bool = False
) -> Iterator[tuple[list[ProcessServer], Nginx, dict[str, str]]]:
    """The nodes, nginx and the nodes' environment; ``sticky``: nginx routes by workspace (the option the
    file documents). A private PostgreSQL and Redis: the machine's shared server may be out of connections
    when other suites run."""
    require_nginx()
    pg = PgServer().init().start()
    url = pg.create_database("plait")
    rds = RedisProcess(free_port()).start()
    env = {
        "PLAIT_ENV": "test",
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_DATABASE_URL": url,
        "PLAIT_DATA_DIR": str(tmp_path),
        "PLAIT_REDIS_URL": rds.url,
        "PLAIT_REDIS_NAMESPACE": f"r{uuid.uuid4().hex[:8]}",
        "PLAIT_MIGRATE_ON_START": "false",
    }
    nodes: list[ProcessServer] = []
    nginx: Nginx | None = None
    try:
        migrated = subprocess.run(
            [sys.executable, "-m", "api", "migrate"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr
        nodes = [
            ProcessServer({**env, "PLAIT_NODE_ID": f"plait-{i}"}, log_path=tmp_path / f"plait-{i}.log") for i in (1, 2)
        ]
        start_all(*nodes)
        nginx = Nginx([f"127.0.0.1:{n.port}" for n in nodes], tmp_path / "nginx", sticky=sticky).start()
        yield nodes, nginx, env
    finally:
        if nginx is not None:
            nginx.stop()
        for node in nodes:
            node.stop()
        rds.stop()
        pg.destroy()
