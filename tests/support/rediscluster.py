"""A private Redis Cluster on loopback ports (Debian's redis-server and redis-cli), for a test: three masters,
optionally one replica each (failover), and the operator's moves a test plays (kill a master, move a slot)."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.support.databases import IN_CI


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (an ephemeral port + 10000 may exceed 65535)."""
    while True:
        port = random.randint(20000, 30000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


def _require(exe: str) -> str:
    path = shutil.which(exe)
    if path is None:
        if IN_CI:
            pytest.fail(f"{exe} is required in CI")
        pytest.skip(f"{exe} not installed")
    return path


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of ``CLUSTER NODES``: who a node is and which slots it serves."""

    node_id: str
    port: int
    master: bool
    failed: bool
    slots: frozenset[int]


def _parse_nodes(text: str) -> list[ClusterNodeInfo]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        flags = set(parts[2].split(","))
        slots: set[int] = set()
        for spec in parts[8:]:
            if spec.startswith("["):  # "[slot->-id]" / "[slot-<-id]": a migration in progress, not owned
                continue
            first, _, last = spec.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        failed = bool(flags & {"fail", "fail?"})
        out.append(ClusterNodeInfo(parts[0], port, "master" in flags, failed, frozenset(slots)))
    return out


@dataclass
class RedisClusterProcesses:
    """Three masters, each owning a third of the hash slots; with ``replicas=1`` each has a replica that a
    failover promotes (``node_timeout_ms`` is how long a master may be silent before it is failed over)."""

    directory: Path
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed node; the cluster client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 15000) -> RedisClusterProcesses:
        try:
            return self._start(masters, replicas, node_timeout_ms)
        except BaseException:
            self.stop()
            raise

    def _start(self, masters: int, replicas: int, node_timeout_ms: int) -> RedisClusterProcesses:
        server, cli = _require("redis-server"), _require("redis-cli")
        self.ports = [_cluster_port() for _ in range(masters * (1 + replicas))]
        for port in self.ports:
            self.procs.append(
                subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--cluster-node-timeout",
                        str(node_timeout_ms),
                        "--dir",
                        str(self.directory),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(lambda port=port: bool(redis.Redis(port=port).ping()), "redis-server did not start")
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._wait(self._settled, "the cluster did not become ok")
        return self

    def _settled(self) -> bool:
        """Every live node says ok, sees every other live node, and they agree on who serves which slot."""
        views = []
        live = self.live_ports()
        for port in live:
            r = redis.Redis(port=port, decode_responses=True)
            if r.cluster("info")["cluster_state"] != "ok":
                return False
            nodes = self.nodes(port)
            if {n.port for n in nodes if not n.failed} != set(live):
                return False
            views.append({n.port: n.slots for n in nodes if n.master and n.slots})
            if r.info("replication")["role"] == "slave" and r.info("replication")["master_link_status"] != "up":
                return False
        return all(v == views[0] for v in views)

    @staticmethod
    def _wait(ok: Callable[[], bool], message: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if ok():
                    return
            time.sleep(0.05)
        raise RuntimeError(message)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.live_ports()[0])

    def admin(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True)

    def live_ports(self) -> list[int]:
        return [port for port, proc in zip(self.ports, self.procs, strict=True) if proc.poll() is None]

    def nodes(self, port: int | None = None) -> list[ClusterNodeInfo]:
        """``CLUSTER NODES`` as one live node (by default the first) sees it."""
        asked = self.admin(port if port is not None else self.live_ports()[0])
        return _parse_nodes(asked.execute_command("CLUSTER", "NODES", NEVER_DECODE=True).decode())

    def keyslot(self, key: str) -> int:
        return int(self.admin(self.live_ports()[0]).execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, slot: int) -> int:
        """The port of the master serving ``slot``, as every live node agrees (waits for them to agree)."""
        owners: set[int] = set()

        def agreed() -> bool:
            owners.clear()
            for port in self.live_ports():
                owners.update(n.port for n in self.nodes(port) if n.master and slot in n.slots and not n.failed)
            return len(owners) == 1

        self._wait(agreed, f"the live nodes do not agree on who serves slot {slot}: {owners}")
        return owners.pop()

    def masters(self) -> list[int]:
        return sorted(n.port for n in self.nodes() if n.master and not n.failed and n.slots)

    def kill(self, port: int) -> None:
        """SIGKILL one server (no goodbye to the cluster: its replica is promoted after the node timeout)."""
        proc = self.procs[self.ports.index(port)]
        proc.kill()
        proc.wait(10)

    def wait_failover(self, dead: int, timeout: float = 20.0) -> None:
        """Until a replica serves the dead master's slots and every live node agrees on the slot map."""
        self._wait(
            lambda: self._settled() and all(n.port != dead for n in self.nodes() if n.master and n.slots),
            f"no failover of {dead}",
            timeout,
        )

    def move_slot(self, slot: int, to_port: int) -> None:
        """Move one slot with its keys to another master, the way ``redis-cli --cluster reshard`` does:
        IMPORTING on the target, MIGRATING on the source, MIGRATE of the keys, then NODE everywhere."""
        src_port = self.owner(slot)
        if src_port == to_port:
            return
        src, dst = self.admin(src_port), self.admin(to_port)
        src_id = src.execute_command("CLUSTER", "MYID")
        dst_id = dst.execute_command("CLUSTER", "MYID")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "REPLACE", "KEYS", *keys)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)  # the target first: it bumps the epoch
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        for port in self.masters():
            if port not in (src_port, to_port):
                self.admin(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        self._wait(lambda: self.owner(slot) == to_port, f"slot {slot} did not move to {to_port}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)
