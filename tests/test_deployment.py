"""compose.yaml checked statically (no Docker engine here): Debian's docker-compose validates and renders it,
and the rendered file has what a multi-node deployment needs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.databases import IN_CI

ROOT = Path(__file__).resolve().parent.parent


def _rendered() -> dict:  # type: ignore[type-arg]
    exe = shutil.which("docker-compose")
    if exe is None:
        if IN_CI:
            pytest.fail("docker-compose (Debian package) is required in CI to validate compose.yaml")
        pytest.skip("docker-compose not installed")
    env = {**os.environ, "PLAIT_SECRET_KEY": "k" * 48}
    out = subprocess.run(
        [exe, "-f", str(ROOT / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)  # type: ignore[no-any-return]


def test_compose_validates_and_describes_two_nodes_behind_a_balancer() -> None:
    cfg = _rendered()
    services = cfg["services"]
    assert {"postgres", "redis", "migrate", "plait-1", "plait-2", "nginx"} <= set(services)
    for node in ("plait-1", "plait-2"):
        svc = services[node]
        assert svc["environment"]["PLAIT_REDIS_URL"].startswith("redis://")
        assert svc["environment"]["PLAIT_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert svc["environment"]["PLAIT_MIGRATE_ON_START"] == "false", "nodes must not race migrations"
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["plait", "migrate"]
    assert services["nginx"]["depends_on"]["plait-1"]["condition"] == "service_healthy"


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed")
    env = {k: v for k, v in os.environ.items() if k != "PLAIT_SECRET_KEY"}
    out = subprocess.run(
        [exe, "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode != 0 and "PLAIT_SECRET_KEY" in out.stderr


def test_load_balancer_upgrades_websockets_and_hides_tokens() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    assert "server plait-1:8000" in conf and "server plait-2:8000" in conf
    assert "$uri" in conf and "$request_uri" not in conf, "access log must not contain ?token="
    docker = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["plait", "serve"]' in docker and "npm run build" in docker
