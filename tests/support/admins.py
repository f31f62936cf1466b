"""Instance administrators for tests, made the one way there is: ``plait admin grant EMAIL`` (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

from persistence.settings import Settings


def plait_admin(settings_or_env: Settings | dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``plait admin ARGS`` against a server's database (its settings, or a process server's environment)."""
    if isinstance(settings_or_env, Settings):
        env = {
            "PLAIT_DATABASE_URL": settings_or_env.resolved_database_url(),
            "PLAIT_DATA_DIR": str(settings_or_env.data_dir),
        }
    else:
        env = settings_or_env
    return subprocess.run(
        [sys.executable, "-m", "api", "admin", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def grant_admin(settings_or_env: Settings | dict[str, str], email: str) -> None:
    done = plait_admin(settings_or_env, "grant", email)
    assert done.returncode == 0, done.stderr
