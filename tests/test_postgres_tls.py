"""TLS to PostgreSQL: libpq's ``sslmode``/``sslrootcert``/``sslcert`` in PLAIT_DATABASE_URL, on every path a node
connects by (the SQLAlchemy engine and its sessions, the update log's kept asyncpg connections, the start-up
checks, the migrations).

A private PostgreSQL serves a certificate the test makes with ``openssl`` (its own CA, the name ``localhost``
only) and refuses every connection without TLS (``hostnossl ... reject``), so a node that works through it used
TLS on every connection it made.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from persistence.db import make_engine
from persistence.settings import StartupError
from tests.support.databases import IN_CI
from tests.support.node import wait_until
from tests.support.pgserver import PgServer
from tests.support.server import SECRET, ProcessServer
from tests.support.users import create_workspace, register

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # a private cluster (initdb) and a node: several seconds


@dataclass
class Certs:
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not
    client_cert: Path  # a client certificate signed by the CA (the server does not ask for one)
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        if IN_CI:
            pytest.fail("openssl is required in CI")
        pytest.skip("openssl not installed")
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certs(out: Path) -> tuple[Certs, Path, Path]:
    """A CA, a server certificate for ``localhost`` signed by it, another CA, a client certificate."""
    for name in ("ca", "other"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=plait test {name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=out)  # fmt: skip
    for name, cn in (("server", "localhost"), ("client", "postgres")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=out)  # fmt: skip
    (out / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days",
             "2", "-extfile", "san.ext", "-out", "server.crt", cwd=out)  # fmt: skip
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days",
             "2", "-out", "client.crt", cwd=out)  # fmt: skip
    certs = Certs(out / "ca.crt", out / "other.crt", out / "client.crt", out / "client.key")
    return certs, out / "server.crt", out / "server.key"


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgServer, Certs]]:
    certs, server_crt, server_key = _make_certs(tmp_path_factory.mktemp("pg-certs"))
    pg = PgServer().init()
    try:
        assert pg.root is not None
        for src in (server_crt, server_key):
            dst = pg.root / src.name
            shutil.copy(src, dst)
            dst.chmod(0o600)
            if os.geteuid() == 0:
                owner = pwd.getpwnam("postgres")
                os.chown(dst, owner.pw_uid, owner.pw_gid)
        with open(pg.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                f"ssl = on\nssl_cert_file = '{pg.root / 'server.crt'}'\nssl_key_file = '{pg.root / 'server.key'}'\n"
            )
        # TLS or nothing: a connection that did not negotiate TLS is refused
        (pg.datadir / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
            "hostssl all all ::1/128 trust\nhostnossl all all ::1/128 reject\n"
        )
        pg.start()  # its own probe connects with asyncpg's default, sslmode=prefer
        yield pg, certs
    finally:
        pg.destroy()


def _url(pg: PgServer, db: str, host: str, query: str) -> str:
    return f"postgresql+asyncpg://postgres@{host}:{pg.port}/{db}?{query}"


async def _uses_tls(url: str) -> bool:
    """Connect through the node's engine (sessions and the update log's connections come from its pool) and ask
    the server whether this connection is encrypted."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return bool(await conn.scalar(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")))
    finally:
        await engine.dispose()


def test_sslmode_and_sslrootcert_on_the_engine(tls_pg: tuple[PgServer, Certs]) -> None:
    pg, certs = tls_pg
    client = f"sslcert={certs.client_cert}&sslkey={certs.client_key}"
    ok = [
        ("localhost", f"sslmode=verify-full&sslrootcert={certs.ca}"),
        ("127.0.0.1", f"sslmode=verify-ca&sslrootcert={certs.ca}"),
        ("127.0.0.1", "sslmode=require"),  # encrypted, not verified
        ("127.0.0.1", "sslmode=prefer"),  # asyncpg's default, tried first
        ("localhost", f"sslmode=verify-full&sslrootcert={certs.ca}&{client}"),  # a client certificate is loaded
    ]
    for host, query in ok:
        assert asyncio.run(_uses_tls(_url(pg, "postgres", host, query))), query

    refused = [
        ("127.0.0.1", f"sslmode=verify-full&sslrootcert={certs.ca}", "IP address mismatch"),  # named localhost only
        ("localhost", f"sslmode=verify-full&sslrootcert={certs.other_ca}", "certificate verify failed"),
        ("127.0.0.1", f"sslmode=verify-ca&sslrootcert={certs.other_ca}", "certificate verify failed"),
        ("127.0.0.1", f"sslmode=require&sslrootcert={certs.other_ca}", "certificate verify failed"),  # as libpq
        ("127.0.0.1", "sslmode=disable", "no encryption"),  # pg_hba: hostnossl ... reject
    ]
    for host, query, why in refused:
        with pytest.raises(Exception, match=why) as failed:
            asyncio.run(_uses_tls(_url(pg, "postgres", host, query)))
        assert not isinstance(failed.value, TypeError), query


def test_bad_tls_parameters_are_one_startup_error() -> None:
    with pytest.raises(StartupError, match="sslmode=verify_full is not one of"):
        make_engine("postgresql+asyncpg://u@h/db?sslmode=verify_full")
    with pytest.raises(StartupError, match=r"cannot load the TLS files \(sslrootcert=/nonexistent/ca\.crt"):
        make_engine("postgresql+asyncpg://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt")


def test_a_node_works_over_tls_only(tls_pg: tuple[PgServer, Certs], tmp_path: Path) -> None:
    """plait check, plait migrate and plait serve with PLAIT_DATABASE_URL=...?sslmode=verify-full: a REST write
    goes through the update log's kept asyncpg connection, a read loads the document back; the server refuses
    every connection without TLS, so each of them was encrypted and verified."""
    pg, certs = tls_pg
    pg.create_database("plait_tls")
    url = _url(pg, "plait_tls", "localhost", f"sslmode=verify-full&sslrootcert={certs.ca}")
    env = {
        **os.environ,
        "PLAIT_DATABASE_URL": url,
        "PLAIT_DATA_DIR": str(tmp_path),
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_ENV": "test",
        "PLAIT_ROOM_IDLE_SECONDS": "0.2",  # the document unloads, so the read below loads it from the database
    }
    plait = [sys.executable, "-m", "api"]
    migrated = subprocess.run([*plait, "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert migrated.returncode == 0, migrated.stderr
    checked = subprocess.run([*plait, "check"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0 and "database: ok" in checked.stdout, checked.stdout + checked.stderr

    node = ProcessServer({k: v for k, v in env.items() if k.startswith("PLAIT_")}, log_path=tmp_path / "node.log")
    node.start()
    try:
        with httpx.Client(base_url=node.base_url, timeout=30) as client:
            assert client.get("/readyz").json()["checks"]["database"] == "ok"
            owner = register(client, "tls")
            wid = create_workspace(client, owner)
            r = client.post(f"/api/workspaces/{wid}/tasks", json={"title": "over tls"}, headers=owner.headers)
            assert r.status_code == 201, r.text

            def unloaded() -> bool:
                return "plait_rooms_loaded 0.0" in client.get("/metrics").text

            wait_until(unloaded, 15, message="the room never unloaded")
            tasks = client.get(f"/api/workspaces/{wid}/tasks", headers=owner.headers).json()
            titles = [t["title"] for t in tasks]
            assert "over tls" in titles, tasks
    finally:
        node.stop()

    bad = {**env, "PLAIT_DATABASE_URL": url.replace(str(certs.ca), str(tmp_path / "missing.crt"))}
    refused = subprocess.run([*plait, "serve"], env=bad, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1
    assert "missing.crt" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
