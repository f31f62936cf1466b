"""Two nodes reaching a real redis-server over TLS only (``rediss://``, a CA and a client certificate the test
makes with openssl; the server demands client certificates): clients on both nodes converge."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from persistence.migrate import upgrade
from tests.support.databases import IN_CI, drop_postgres_database, fresh_database
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ProcessServer, free_port, node_env, node_pair
from tests.support.users import create_workspace, register

pytestmark = pytest.mark.redis


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _certificates(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=plait-test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=plait-{name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        ca = ("-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-CAcreateserial")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), *ca, "-days", "2",
                 "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt"))  # fmt: skip
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, dict[str, Path]]]:
    exe = shutil.which("redis-server")
    if exe is None or shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("redis-server and openssl are required in CI")
        pytest.skip("redis-server or openssl not installed")
    certs = _certificates(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--tls-cert-file", str(certs["server.crt"]), "--tls-key-file", str(certs["server.key"]),
         "--tls-ca-cert-file", str(certs["ca.crt"]), "--tls-auth-clients", "yes"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    tls = {"ssl_ca_certs": str(certs["ca.crt"]), "ssl_certfile": str(certs["client.crt"])}
    client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_keyfile=str(certs["client.key"]), **tls)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port, certs
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def tls_nodes(tmp_path: Path, tls_redis: tuple[int, dict[str, Path]]) -> Iterator[tuple[ProcessServer, ProcessServer]]:
    port, certs = tls_redis
    url = fresh_database("postgres", tmp_path)
    upgrade(url)
    env = node_env(
        url,
        f"rediss://127.0.0.1:{port}/0",
        tmp_path,
        PLAIT_REDIS_SSL_CA_CERTS=str(certs["ca.crt"]),
        PLAIT_REDIS_SSL_CERTFILE=str(certs["client.crt"]),
        PLAIT_REDIS_SSL_KEYFILE=str(certs["client.key"]),
    )
    try:
        with node_pair(env, tmp_path) as pair:
            yield pair
    finally:
        drop_postgres_database(url)


async def test_two_nodes_over_rediss_converge(tls_nodes: tuple[ProcessServer, ProcessServer]) -> None:
    a, b = tls_nodes
    with httpx.Client(base_url=a.base_url) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
    on_a, on_b = YClient(), YClient()
    await on_a.connect(sync_url(a.ws_url, wid, owner.token))
    await on_b.connect(sync_url(b.ws_url, wid, owner.token))
    await on_a.wait_synced()
    await on_b.wait_synced()
    for i in range(10):
        on_a.map("m")[f"a{i}"] = i
        on_b.map("m")[f"b{i}"] = i
    await on_a.wait_for(lambda: len(on_a.map("m").to_py() or {}) == 20)
    await on_b.wait_for(lambda: len(on_b.map("m").to_py() or {}) == 20)
    with httpx.Client(base_url=b.base_url) as http:
        ready = http.get("/readyz").json()
    assert ready["checks"]["redis"] == "ok", ready
    await on_a.close()
    await on_b.close()
