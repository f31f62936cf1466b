"""Two nodes on Redis behind Sentinel (a master, a replica and a sentinel on loopback ports, Debian's
redis-server): a ``redis+sentinel://`` URL, and the master killed mid-stream — the sentinel fails over, the
nodes find the new master through it, no update is lost and clients converge."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from persistence.migrate import upgrade
from tests.support.databases import IN_CI, drop_postgres_database, fresh_database
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ProcessServer, free_port, node_env, node_pair
from tests.support.users import create_workspace, register

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@dataclass
class SentinelSetup:
    master: int
    replica: int
    sentinel: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def master_port(self) -> int:
        return int(redis.Redis(port=self.sentinel).sentinel_get_master_addr_by_name("m")[1])


def _wait(ok: object, message: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise RuntimeError(message)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    exe = shutil.which("redis-server")
    if exe is None:
        if IN_CI:
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server not installed")
    s = SentinelSetup(free_port(), free_port(), free_port())
    base = [exe, "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "", "--appendonly", "no"]
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {s.sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor m 127.0.0.1 {s.master} 1\n"
        "sentinel down-after-milliseconds m 1000\nsentinel failover-timeout m 5000\n"
    )
    try:
        # a replica's first full sync waits repl-diskless-sync-delay (5 s by default) for more replicas to join
        master = [*base, "--port", str(s.master), "--repl-diskless-sync-delay", "0"]
        s.procs.append(subprocess.Popen(master, stdout=subprocess.DEVNULL))
        s.procs.append(
            subprocess.Popen(
                [*base, "--port", str(s.replica), "--replicaof", "127.0.0.1", str(s.master)], stdout=subprocess.DEVNULL
            )
        )
        _wait(
            lambda: redis.Redis(port=s.replica).info("replication")["master_link_status"] == "up",
            "the replica did not sync",
        )
        # started once the replica is attached: the sentinel's first look at the master lists it (otherwise it
        # finds it at its next 10 s INFO round)
        s.procs.append(subprocess.Popen([exe, str(conf), "--sentinel"], stdout=subprocess.DEVNULL))
        _wait(lambda: redis.Redis(port=s.sentinel).sentinel_slaves("m"), "the sentinel did not find the replica")
        yield s
    finally:
        for p in s.procs:
            p.kill()
        for p in s.procs:
            p.wait(10)


@pytest.fixture
def nodes(tmp_path: Path, sentinel: SentinelSetup) -> Iterator[tuple[ProcessServer, ProcessServer]]:
    url = fresh_database("postgres", tmp_path)
    upgrade(url)
    env = node_env(url, f"redis+sentinel://127.0.0.1:{sentinel.sentinel}/m/0", tmp_path)
    try:
        with node_pair(env, tmp_path) as pair:
            yield pair
    finally:
        drop_postgres_database(url)


async def test_a_master_killed_mid_stream_fails_over_and_loses_nothing(
    nodes: tuple[ProcessServer, ProcessServer], sentinel: SentinelSetup
) -> None:
    a, b = nodes
    with httpx.Client(base_url=a.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
    on_a, on_b = YClient(), YClient()
    await on_a.connect(sync_url(a.ws_url, wid, owner.token))
    await on_b.connect(sync_url(b.ws_url, wid, owner.token))
    await on_a.wait_synced()
    await on_b.wait_synced()
    on_a.map("m")["first"] = 1
    await on_b.wait_for(lambda: on_b.map("m").get("first") == 1)
    assert sentinel.master_port() == sentinel.master
    stop = asyncio.Event()

    async def write(c: YClient, prefix: str) -> int:
        i = 0
        while not stop.is_set():
            c.map("m")[f"{prefix}{i}"] = i
            i += 1
            await asyncio.sleep(0.02)
        return i

    writers = [asyncio.create_task(write(on_a, "a")), asyncio.create_task(write(on_b, "b"))]
    await asyncio.sleep(0.3)
    sentinel.procs[0].kill()  # the master dies; the sentinel promotes the replica after 1 s down
    await asyncio.to_thread(_wait, lambda: sentinel.master_port() == sentinel.replica, "no failover")
    await asyncio.sleep(1.0)  # writing on through the switch
    stop.set()
    na, nb = [await w for w in writers]
    total = 1 + na + nb
    await on_a.wait_for(lambda: len(on_a.map("m").to_py() or {}) == total, timeout=20)
    await on_b.wait_for(lambda: len(on_b.map("m").to_py() or {}) == total, timeout=20)
    # and Redis fan-out works again on the new master
    on_a.map("m")["after"] = 1
    await on_b.wait_for(lambda: on_b.map("m").get("after") == 1, timeout=10)
    await on_a.close()
    await on_b.close()
