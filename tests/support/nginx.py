"""Debian's nginx running the project's own ``deploy/nginx.conf``, with only its upstream addresses, listen
port and log paths rewritten, inside a main configuration like the official image's."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.databases import IN_CI
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"
SITE = ROOT / "deploy" / "nginx.conf"


def require_nginx() -> None:
    if not os.path.exists(NGINX):
        if IN_CI:
            pytest.fail("nginx (Debian package) is required in CI for the load-balancer tests")
        pytest.skip("nginx not installed (apt-get install nginx)")


def site_config(upstreams: list[str], port: int, logs: Path, *, sticky: bool = False) -> str:
    """deploy/nginx.conf for this machine: each rewrite must apply exactly where the file says, so a change
    of the file's shape fails here instead of silently testing something else. ``sticky``: the file's
    documented option, routing by workspace, instead of ``least_conn``."""
    conf = SITE.read_text()
    if sticky:
        conf, n = re.subn(
            r"^(\s*)least_conn;\n\s*# (hash \$plait_workspace consistent;)$", r"\g<1>\g<2>", conf, flags=re.M
        )
        assert n == 1, "deploy/nginx.conf must offer the sticky option right after least_conn"
    servers = re.findall(r"^(\s*server )plait-\d+:8000( .*;)$", conf, flags=re.M)
    assert len(servers) == len(upstreams), f"deploy/nginx.conf names {len(servers)} upstream servers"
    for address in upstreams:
        conf = re.sub(r"^(\s*server )plait-\d+:8000( .*;)$", rf"\g<1>{address}\g<2>", conf, count=1, flags=re.M)
    conf, n = re.subn(r"^(\s*)listen 80;$", rf"\g<1>listen 127.0.0.1:{port};", conf, flags=re.M)
    assert n == 1, "deploy/nginx.conf must listen on port 80 once"
    conf, n = re.subn(r"/var/log/nginx/", f"{logs}/", conf)
    assert n >= 1
    return conf


@dataclass
class Nginx:
    upstreams: list[str]
    workdir: Path
    port: int = field(default_factory=free_port)
    sticky: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        require_nginx()
        self.workdir.mkdir(parents=True, exist_ok=True)
        site = self.workdir / "plait.conf"
        site.write_text(site_config(self.upstreams, self.port, self.workdir, sticky=self.sticky))
        kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        temp = "\n".join(f"    {kind}_temp_path {self.workdir}/{kind}_temp;" for kind in kinds)
        main = self.workdir / "nginx.conf"
        # The official image's /etc/nginx/nginx.conf, with this test's paths; the site file is included as the
        # image includes conf.d/*.conf.
        main.write_text(
            f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
error_log {self.workdir}/error.log notice;
pid {self.workdir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 65;
{temp}
    include {site};
}}
"""
        )
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.workdir), "-c", str(main), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "stderr.log", "ab"),
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.workdir / 'stderr.log').read_text()}")
            try:
                httpx.get(f"{self.base_url}/healthz", timeout=2)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def error_log(self) -> str:
        return (self.workdir / "error.log").read_text(errors="replace")

    def access_log(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
