"""Configuration: PLAIT_* variables, the development secret kept in the data directory, production refusal."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from persistence.settings import Settings
from tests.support.server import ProcessServer
from tests.support.users import register


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PLAIT_"):
            monkeypatch.delenv(name)


def test_environment_variables_configure_plait(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLAIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PLAIT_ACCESS_TOKEN_TTL_SECONDS", "60")
    monkeypatch.setenv("PLAIT_ALLOWED_ORIGINS", '["https://app.example.org"]')
    monkeypatch.setenv("PLAIT_PUBLIC_URL", "https://plait.example.org")
    s = Settings()
    assert s.access_token_ttl_seconds == 60
    assert s.allowed_origins == ["https://app.example.org"]
    assert s.public_url == "https://plait.example.org"
    assert s.redis_url is None
    assert s.resolved_database_url() == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'plait.db'}"
    monkeypatch.setenv("PLAIT_DATABASE_URL", "postgresql+asyncpg://u@db/plait")
    assert Settings().resolved_database_url() == "postgresql+asyncpg://u@db/plait"


def test_development_secret_is_generated_once_and_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="plait.settings"):
        key = Settings(data_dir=tmp_path / "data").resolved_secret_key()
    path = tmp_path / "data" / "secret_key"
    assert path.read_text() == key and len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("PLAIT_SECRET_KEY is not set" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="plait.settings"):
        assert Settings(data_dir=tmp_path / "data").resolved_secret_key() == key
    assert not any("generated" in r.getMessage() for r in caplog.records)
    # A configured key wins and nothing is written.
    assert Settings(data_dir=tmp_path / "other", secret_key="configured").resolved_secret_key() == "configured"
    assert not (tmp_path / "other").exists()


def test_production_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(env="production", data_dir=tmp_path)
    with pytest.raises(RuntimeError, match="PLAIT_SECRET_KEY"):
        settings.resolved_secret_key()
    with pytest.raises(RuntimeError, match="PLAIT_SECRET_KEY"):
        create_app(settings)
    assert not (tmp_path / "secret_key").exists()
    env = {**os.environ, "PLAIT_ENV": "production", "PLAIT_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "api", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "PLAIT_SECRET_KEY must be set" in done.stderr
    assert not (tmp_path / "data" / "secret_key").exists()


def test_production_with_a_key_starts(tmp_path: Path) -> None:
    assert Settings(env="production", secret_key="k" * 40).resolved_secret_key() == "k" * 40


@pytest.mark.slow
def test_fresh_data_dir_serves_and_keeps_its_key_across_restarts(tmp_path: Path) -> None:
    """``plait serve`` with nothing configured: migrates SQLite, answers /docs, and tokens survive a restart."""
    data = tmp_path / "data"
    env = {"PLAIT_DATA_DIR": str(data)}
    first = ProcessServer(env, log_path=tmp_path / "first.log").start()
    try:
        with httpx.Client(base_url=first.base_url, timeout=30) as c:
            assert c.get("/docs").status_code == 200
            acct = register(c, "persist")
            assert c.get("/api/me", headers=acct.headers).status_code == 200
    finally:
        first.stop()
    key = (data / "secret_key").read_text()
    assert (data / "plait.db").exists()
    assert "generated a development key" in (tmp_path / "first.log").read_text()
    second = ProcessServer(env, log_path=tmp_path / "second.log").start()
    try:
        with httpx.Client(base_url=second.base_url, timeout=30) as c:
            r = c.get("/api/me", headers=acct.headers)
            assert r.status_code == 200 and r.json()["id"] == acct.id
    finally:
        second.stop()
    assert (data / "secret_key").read_text() == key
    assert "generated a development key" not in (tmp_path / "second.log").read_text()
