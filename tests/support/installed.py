"""Plait installed the way the Dockerfile installs it: a wheel built from the files the image copies, installed
without extras into a fresh virtual environment, run through its ``plait`` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
# What the Dockerfile copies before `pip install .`: nothing else may be needed to build and run.
IMAGE_SOURCES = ["pyproject.toml", "README.md", "api", "sync_server", "persistence"]


@dataclass
class InstalledPlait:
    venv: Path

    @property
    def plait(self) -> str:
        return str(self.venv / "bin" / "plait")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.plait, *args],
            env=_clean(env),
            cwd=self.venv.parent,  # away from the checkout (its .env, ./data)
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def install(workdir: Path) -> InstalledPlait:
    """Build the wheel from a copy of the image's sources and install it, without extras, into a new venv."""
    src = workdir / "src"
    src.mkdir(parents=True)
    for name in IMAGE_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = workdir / "dist"
    _check([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)])
    wheels = list(dist.glob("plait-*.whl"))
    assert len(wheels) == 1, wheels
    venv = workdir / "venv"
    # The suite's pip installs into the new venv (``--python``): seeding the venv with a pip of its own, and
    # byte-compiling every dependency up front, was most of this fixture's time (Python compiles on first import).
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    _check([*pip, "--disable-pip-version-check", "--no-compile", str(wheels[0])])
    return InstalledPlait(venv)


@dataclass
class InstalledNode:
    """``plait serve`` of the installed package, in its own process."""

    installed: InstalledPlait
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InstalledNode:
        env = {**self.env, "PLAIT_HOST": "127.0.0.1", "PLAIT_PORT": str(self.port)}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [self.installed.plait, "serve"],
                env=_clean(env),
                cwd=self.log_path.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_ready(self.base_url)
        except RuntimeError:
            raise RuntimeError(f"installed node did not start:\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code (a node that does not stop within 15 s is killed and fails here)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"installed node ignored SIGTERM:\n{self.log()[-3000:]}") from None
        return self.proc.returncode


def _clean(env: dict[str, str]) -> dict[str, str]:
    """The test's environment minus anything that would reach into the checkout (coverage's subprocess hook,
    PYTHONPATH, the test suite's PLAIT_* settings) plus ``env``."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PLAIT_", "COVERAGE_", "PYTHON")) and k not in ("VIRTUAL_ENV",)
    }
    return {**keep, **env}


def _check(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
