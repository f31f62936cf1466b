"""A private 3-master Redis Cluster on loopback ports (Debian's redis-server and redis-cli), for a test."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
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


@dataclass
class RedisClusterProcesses:
    """Three masters (no replicas), each owning a third of the hash slots."""

    directory: Path
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed node; the cluster client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, masters: int = 3) -> RedisClusterProcesses:
        try:
            return self._start(masters)
        except BaseException:
            self.stop()
            raise

    def _start(self, masters: int) -> RedisClusterProcesses:
        server, cli = _require("redis-server"), _require("redis-cli")
        self.ports = [_cluster_port() for _ in range(masters)]
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
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in self.ports:
            self._wait(
                lambda port=port: redis.Redis(port=port).cluster("info")["cluster_state"] == "ok",
                "the cluster did not become ok",
            )
        return self

    @staticmethod
    def _wait(ok: object, message: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if ok():  # type: ignore[operator]
                    return
            time.sleep(0.05)
        raise RuntimeError(message)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0])

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)
