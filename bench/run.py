"""One-command side-by-side benchmark: Plait (SQLite, PostgreSQL), vanilla pycrdt-websocket and Hocuspocus.

    python bench/run.py            # full run, ~15 min on 2 cores
    python bench/run.py --quick    # smoke run, < 3 min
    python bench/run.py --servers plait-sqlite,hocuspocus --scenarios s1,s4

Every (scenario, server) pair gets a fresh server process, pinned to CPU 0; the load generator (loadgen.mjs,
its own Node process) is pinned to CPU 1. Servers are interleaved within each round (A B C D A B C D) so
drift on a shared machine hits them all alike. Results: bench/results/<stamp>/results.json, a summary table
(medians across rounds, ratios of Plait to each peer) and, with matplotlib, a latency-vs-rate chart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PG_BASE = os.environ.get("PLAIT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("PLAIT_BENCH_REDIS", "redis://127.0.0.1:6379/0")
SERVERS = ("plait-sqlite", "plait-postgres", "vanilla", "hocuspocus")
PEERS = ("hocuspocus", "vanilla")
SCENARIOS = ("s1", "s2", "s3", "s4", "s5", "s0", "s6", "s7")
CLUSTER_SCENARIOS = {"s7": ("plait-postgres",)}  # two Plait nodes sharing PostgreSQL and Redis: only this server
EXTRA_SCENARIOS = ("soak",)  # only when asked for: --scenarios soak --soak-minutes 60
SERVER_CPU = 0
GENERATOR_CPU = 1
GENERATOR_BOUND_PCT = 85.0
LOG_DIR = Path(tempfile.gettempdir())  # set to <results>/logs by main()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_busy_pct(sample_s: float = 1.0) -> float:
    """CPU in use on the whole machine, in % of one core, over a short sample."""

    def ticks() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(f) - f[3] - f[4], sum(f)

    try:
        b0, t0 = ticks()
        time.sleep(sample_s)
        b1, t1 = ticks()
    except OSError:
        return 0.0
    return 100.0 * (os.cpu_count() or 1) * (b1 - b0) / max(1, t1 - t0)


def wait_quiet(threshold: float, max_wait: float) -> float:
    """On a shared machine, wait (bounded) for other tenants to go quiet; returns the last busy sample."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy_pct()
    while busy > threshold and time.monotonic() < deadline:
        log(f"machine busy ({busy:.0f} % of a core used by others); waiting for < {threshold:.0f} %")
        time.sleep(4)
        busy = machine_busy_pct()
    return busy


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    if cpu is None or cpu >= (os.cpu_count() or 1):
        return cmd
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *cmd]
    return cmd


def pin_with_psutil(pid: int, cpu: int | None) -> None:
    """Fallback when taskset is missing."""
    if cpu is None or shutil.which("taskset") or cpu >= (os.cpu_count() or 1):
        return
    with contextlib.suppress(Exception):
        import psutil

        psutil.Process(pid).cpu_affinity([cpu])


def pin_running(pid: int, cpu: int | None) -> None:
    """Pin every thread of a running process (its DB driver and GC threads too, not only the main one)."""
    if cpu is None or cpu >= (os.cpu_count() or 1):
        return
    if shutil.which("taskset"):
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=False, capture_output=True)
        return
    with contextlib.suppress(Exception):
        import psutil

        for t in psutil.Process(pid).threads():
            os.sched_setaffinity(t.id, {cpu})


# ----------------------------------------------------------------------------------------------------------
# Servers


@dataclass
class Room:
    url: str
    doc: str | None = None
    token: str | None = None

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"url": self.url}
        if self.doc is not None:
            d["doc"] = self.doc
        if self.token is not None:
            d["token"] = self.token
        return d


class Server:
    """A benchmark target: started fresh for each scenario run."""

    name = ""
    kind = "peer"

    def __init__(self, workdir: Path, pin: bool) -> None:
        self.workdir = workdir
        self.pin = pin
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.user_id: str | None = None
        self.aux_match: str | None = None
        self.log_name = self.name

    # -- lifecycle
    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Before the first start (databases)."""

    def cleanup(self) -> None:
        """After the last stop."""

    def start(self, fresh_port: bool = True) -> None:
        if fresh_port or not self.port:
            self.port = free_port()
        cmd, env = self.command()
        logf = (LOG_DIR / f"{self.log_name}.log").open("ab")
        # Start unpinned (imports and migrations are not what we measure), pin once it serves.
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **env}, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
        )
        logf.close()
        self.wait_ready()
        pin_running(self.proc.pid, SERVER_CPU if self.pin else None)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {LOG_DIR}")
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready in {timeout}s")

    def ready(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True
        return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The server process leads its own session: signal only that group (it is ours).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    # -- rooms
    def rooms(self, n: int) -> list[Room]:
        raise NotImplementedError


class Vanilla(Server):
    name = "vanilla"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, str(BENCH / "servers" / "vanilla_pycrdt.py"), str(self.port)], {}

    def rooms(self, n: int) -> list[Room]:
        return [Room(f"ws://127.0.0.1:{self.port}/sync/bench-{uuid.uuid4().hex[:12]}") for _ in range(n)]


class Hocuspocus(Server):
    name = "hocuspocus"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return ["node", str(BENCH / "servers" / "hocuspocus.mjs"), str(self.port)], {}

    def rooms(self, n: int) -> list[Room]:
        return [
            Room(f"ws://127.0.0.1:{self.port}", doc=f"bench-{uuid.uuid4().hex[:12]}", token="bench") for _ in range(n)
        ]


class Plait(Server):
    """``python -m api serve`` with auth and persistence on; users and workspaces come from the REST API."""

    kind = "plait"
    backend = "sqlite"

    def __init__(self, workdir: Path, pin: bool) -> None:
        super().__init__(workdir, pin)
        self.secret = secrets.token_urlsafe(32)
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=workdir))
        self.token: str | None = None
        self.database_url: str | None = None
        self.extra_env: dict[str, str] = {}  # s7: Redis and node id of a cluster node

    def env(self) -> dict[str, str]:
        env = {
            "PLAIT_DATA_DIR": str(self.data_dir),
            "PLAIT_SECRET_KEY": self.secret,
            # One account owns every bench workspace (s6: 500): the owned-workspace quota is not under test.
            "PLAIT_QUOTA_MAX_WORKSPACES_PER_USER": "100000",
            "PLAIT_ENV": "development",
            # The runner creates hundreds of workspaces with one account; the REST write quota is not under test.
            "PLAIT_QUOTA_REST_WRITES_PER_MINUTE": "1000000",
            # ... and opens up to 1,000 sockets with it (s5): the per-account socket cap is not under test either.
            "PLAIT_MAX_SOCKETS_PER_USER": "0",
        }
        if self.database_url:
            env["PLAIT_DATABASE_URL"] = self.database_url
        return {**env, **self.extra_env}

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "api", "serve", "--port", str(self.port)], self.env()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {self.token}"} if self.token else {}),
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def login(self) -> None:
        if self.token is not None:
            return
        email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
        password = "bench password 123"
        user = self.api("POST", "/api/auth/register", {"email": email, "password": password, "display_name": "bench"})
        self.user_id = str(user["id"])
        self.token = str(self.api("POST", "/api/auth/login", {"email": email, "password": password})["access_token"])

    def sibling(self) -> Plait:
        """A second node of the same deployment: same database, secret and account, its own port and process."""
        other = type(self)(self.workdir, self.pin)
        other.secret, other.database_url, other.token, other.user_id = (
            self.secret,
            self.database_url,
            self.token,
            self.user_id,
        )
        return other

    def rooms(self, n: int) -> list[Room]:
        self.login()
        out = []
        for i in range(n):
            wid = self.api("POST", "/api/workspaces", {"name": f"bench {i}"})["id"]
            out.append(Room(f"ws://127.0.0.1:{self.port}/sync/{wid}?token={self.token}"))
        return out


class PlaitSqlite(Plait):
    name = "plait-sqlite"


class PlaitPostgres(Plait):
    name = "plait-postgres"
    backend = "postgres"

    def prepare(self) -> None:
        self.db_name = f"plait_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg(f"CREATE DATABASE {self.db_name}"))
        self.database_url = f"postgresql+asyncpg://{PG_BASE.split('://', 1)[1]}/{self.db_name}"
        # Backends of this database show the name in their process title: their CPU is reported as db_cpu.
        self.aux_match = self.db_name
        subprocess.run(
            [sys.executable, "-m", "api", "migrate"],
            cwd=ROOT,
            env={**os.environ, **self.env()},
            check=True,
            capture_output=True,
        )

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(_pg(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)"))


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


SERVER_CLASSES: dict[str, type[Server]] = {
    "plait-sqlite": PlaitSqlite,
    "plait-postgres": PlaitPostgres,
    "vanilla": Vanilla,
    "hocuspocus": Hocuspocus,
}


@contextlib.contextmanager
def running(server: Server, log_name: str) -> Iterator[Server]:
    """A fresh server process for one scenario run (Plait keeps its database and account across runs)."""
    server.log_name = log_name
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------------------
# Load generator


def loadgen(cfg: dict[str, Any], pin: bool, timeout: float) -> dict[str, Any]:
    cfg = {**cfg, "clkTck": os.sysconf("SC_CLK_TCK")}
    cmd = pinned(["node", str(BENCH / "loadgen.mjs")], GENERATOR_CPU if pin else None)
    proc = subprocess.Popen(
        cmd, cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, start_new_session=True
    )
    pin_with_psutil(proc.pid, GENERATOR_CPU if pin else None)
    try:
        out, _ = proc.communicate(json.dumps(cfg).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return {"error": f"load generator timed out after {timeout:.0f}s"}
    lines = [ln for ln in out.decode().splitlines() if ln.strip()]
    if not lines:
        return {"error": f"load generator exited {proc.returncode} without a result"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# ----------------------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Profile:
    rounds: int
    s1: dict[str, Any]
    s2: dict[str, Any]
    s3: dict[str, Any]
    s4: dict[str, Any]
    s5: dict[str, Any]
    s0: dict[str, Any]
    s6: dict[str, Any]
    soak: dict[str, Any] = field(
        default_factory=lambda: {
            "clients": 200,
            "writers": 10,
            "rate": 100,
            "warmupS": 30,
            "drainS": 5,
            "finalJoin": True,
        }
    )
    # Two nodes, one workspace, clients split evenly; writers all on node A.
    s7: dict[str, Any] = field(
        default_factory=lambda: {"clients": 40, "writers": 5, "rate": 100, "warmupS": 2, "durationS": 8, "drainS": 5}
    )
    once: tuple[str, ...] = ("s3", "s5", "soak")  # long, and stable enough: one round
    extra: dict[str, Any] = field(default_factory=dict)


FULL = Profile(
    rounds=2,
    s1={"clients": 50, "writers": 5, "rate": 200, "warmupS": 2, "durationS": 6, "drainS": 5},
    s2={"clients": 200, "writers": 10, "rate": 500, "warmupS": 2, "durationS": 6, "drainS": 5},
    s3={
        "clients": 100,
        "writers": 10,
        "rates": [100, 200, 500, 1000, 2000, 3000, 4500],
        "warmupS": 1,
        "durationS": 3,
        "drainS": 2,
    },
    s4={"tasks": 10000, "textBytes": 1 << 20, "sequential": 5, "concurrent": 10, "cold": True},
    s5={"rooms": 100, "clientsPerRoom": 10, "settleS": 2, "holdS": 5},
    s0={"rooms": 5, "clientsPerRoom": 20, "timeoutS": 10},
    s6={"rooms": 500, "ratePerClient": 1, "warmupS": 3, "durationS": 8, "drainS": 3},
)

# A smoke run: every scenario and server exercised, at reduced sizes (the numbers are not the reference).
QUICK = Profile(
    rounds=1,
    s1={"clients": 50, "writers": 5, "rate": 200, "warmupS": 1, "durationS": 2, "drainS": 2},
    s2={"clients": 200, "writers": 10, "rate": 500, "warmupS": 1, "durationS": 2, "drainS": 2},
    s3={"clients": 100, "writers": 10, "rates": [300, 2000], "warmupS": 1, "durationS": 2, "drainS": 1},
    s4={"tasks": 2000, "textBytes": 200_000, "sequential": 2, "concurrent": 10, "cold": True, "coldConcurrent": False},
    s5={"rooms": 20, "clientsPerRoom": 10, "settleS": 0.5, "holdS": 0.5},
    s0={"rooms": 5, "clientsPerRoom": 20, "timeoutS": 3},
    s6={"rooms": 50, "ratePerClient": 1, "warmupS": 1, "durationS": 2, "drainS": 2},
    s7={"clients": 40, "writers": 5, "rate": 100, "warmupS": 1, "durationS": 3, "drainS": 2},
)


def base_cfg(server: Server) -> dict[str, Any]:
    return {"serverPid": server.pid, "auxMatch": server.aux_match, "userId": server.user_id}


def run_fanout(server: Server, p: dict[str, Any], pin: bool, rooms: int = 1) -> dict[str, Any]:
    room_list = server.rooms(rooms)
    cfg = {
        **base_cfg(server),
        "mode": "fanout",
        "rooms": [r.as_json() for r in room_list],
        "clientsPerRoom": p.get("clients", 2),
        "writersPerRoom": p.get("writers", 2),
        "warmupS": p["warmupS"],
        "durationS": p["durationS"],
        "drainS": p["drainS"],
        "userId": server.user_id,
        "finalJoin": p.get("finalJoin", False),
    }
    if "rates" in p:
        cfg.update(rates=p["rates"], stopOnCollapse=True)
    elif "ratePerClient" in p:
        cfg["rate"] = p["ratePerClient"] * rooms * 2
    else:
        cfg["rate"] = p["rate"]
    budget = 120 + len(cfg.get("rates", [0])) * (p["warmupS"] + p["durationS"] + p["drainS"] + 5)
    return loadgen(cfg, pin, budget)


def scenario_s1(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    return run_fanout(server, prof.s1, pin)


def scenario_s2(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    return run_fanout(server, prof.s2, pin)


def scenario_s3(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    return run_fanout(server, prof.s3, pin)


def scenario_s6(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    p = {**prof.s6, "clients": 2, "writers": 2}
    cfg_rooms = prof.s6["rooms"]
    return run_fanout(server, p, pin, rooms=cfg_rooms)


def scenario_soak(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    return run_fanout(server, prof.soak, pin)


def scenario_s7(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    """Two nodes (PostgreSQL + Redis), one workspace: fan-out latency to receivers on the writers' node and
    on the other node, measured in the same window."""
    if not isinstance(server, PlaitPostgres):
        return {"error": "s7 runs only on plait-postgres"}
    import redis

    namespace = f"plaitbench{uuid.uuid4().hex[:10]}"  # a fresh key space: nothing left over from other runs
    shared = {"PLAIT_REDIS_URL": REDIS_URL, "PLAIT_REDIS_NAMESPACE": namespace, "PLAIT_MIGRATE_ON_START": "false"}
    server.login()  # before sibling(): node B shares the account
    node_b = server.sibling()
    node_b.log_name = server.log_name + "-node-b"
    node_b.extra_env = {**shared, "PLAIT_NODE_ID": "bench-b"}
    try:
        server.stop()  # `running` started it single-node; restart it as node A of the cluster
        server.extra_env = {**shared, "PLAIT_NODE_ID": "bench-a"}
        server.start(fresh_port=False)
        node_b.start()
        p = prof.s7
        wid = server.rooms(1)[0].url.split("/sync/", 1)[1].split("?", 1)[0]
        nodes = [
            {"url": f"ws://127.0.0.1:{n.port}/sync/{wid}?token={server.token}", "node": tag}
            for n, tag in ((server, "a"), (node_b, "b"))
        ]
        cfg = {
            **base_cfg(server),
            "serverPids": [server.pid, node_b.pid],
            "mode": "fanout",
            "rooms": [{"url": nodes[0]["url"], "nodes": nodes}],
            "clientsPerRoom": p["clients"],
            "writersPerRoom": p["writers"],
            "rate": p["rate"],
            "warmupS": p["warmupS"],
            "durationS": p["durationS"],
            "drainS": p["drainS"],
        }
        result = loadgen(cfg, pin, 120 + p["warmupS"] + p["durationS"] + p["drainS"])
        result["redis_url"] = REDIS_URL
        return result
    finally:
        node_b.stop()
        server.extra_env = {}
        with contextlib.suppress(Exception):
            r = redis.Redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(f"{namespace}:*"))
            if keys:
                r.delete(*keys)


def scenario_s4(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    p = prof.s4
    room = server.rooms(1)[0]
    cfg = {
        **base_cfg(server),
        "mode": "join",
        "rooms": [room.as_json()],
        "seed": True,
        "keepSeeder": True,
        "tasks": p["tasks"],
        "textBytes": p["textBytes"],
        "sequential": p["sequential"],
        "concurrent": p["concurrent"],
    }
    if p.get("cold") and isinstance(server, Plait):
        # Rooms nobody has open unload after PLAIT_ROOM_IDLE_SECONDS (30 s by default): 1 s here, so the
        # "unloaded" join below does not wait half a minute.
        server.stop()
        server.extra_env = {**server.extra_env, "PLAIT_ROOM_IDLE_SECONDS": "1"}
        server.start(fresh_port=False)
    result = loadgen(cfg, pin, 300)
    if p.get("cold") and server.kind == "plait" and "error" not in result:
        # From the database, in a running server: the loadgen (and its seeder) left, the room unloads when idle.
        time.sleep(3)
        result["unloaded"] = loadgen(
            {**base_cfg(server), "mode": "join", "rooms": [room.as_json()], "sequential": 1, "concurrent": 0},
            pin,
            300,
        )
        # From the database after a restart: a new process, the room not loaded, the first join pays for it.
        cold: dict[str, Any] = {}
        plan = [("single", 1, 0)] + ([("concurrent", 0, p["concurrent"])] if p.get("coldConcurrent", True) else [])
        for label, seq, conc in plan:
            server.stop()
            server.start(fresh_port=False)
            r = loadgen(
                {**base_cfg(server), "mode": "join", "rooms": [room.as_json()], "sequential": seq, "concurrent": conc},
                pin,
                300,
            )
            cold[label] = r
        result["cold"] = cold
    if isinstance(server, Plait):
        server.extra_env.pop("PLAIT_ROOM_IDLE_SECONDS", None)
    return result


def scenario_s5(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    p = prof.s5
    rooms = server.rooms(p["rooms"])
    cfg = {**base_cfg(server), **p, "mode": "idle", "rooms": [r.as_json() for r in rooms]}
    return loadgen(cfg, pin, 300)


def scenario_s0(server: Server, prof: Profile, pin: bool) -> dict[str, Any]:
    p = prof.s0
    rooms = server.rooms(p["rooms"])
    cfg = {**base_cfg(server), **p, "mode": "burst", "rooms": [r.as_json() for r in rooms]}
    return loadgen(cfg, pin, 120)


SCENARIO_FUNCS: dict[str, Callable[[Server, Profile, bool], dict[str, Any]]] = {
    "s1": scenario_s1,
    "s2": scenario_s2,
    "s3": scenario_s3,
    "s4": scenario_s4,
    "s5": scenario_s5,
    "s0": scenario_s0,
    "s6": scenario_s6,
    "s7": scenario_s7,
    "soak": scenario_soak,
}


# ----------------------------------------------------------------------------------------------------------
# Summary


def _med(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def metrics(scenario: str, r: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of one run (None when the run failed or the value is undefined)."""
    if "error" in r:
        return {}
    if scenario in ("s1", "s2", "s6"):
        s = r["steps"][0]
        return {
            "p50_ms": s["p50_ms"],
            "p95_ms": s["p95_ms"],
            "p99_ms": s["p99_ms"],
            "server_cpu_pct": s["server_cpu_pct"],
            "db_cpu_pct": s["db_cpu_pct"],
            "delivered_pct": 100 * (s["delivered_fraction"] or 0),
            "deliveries_per_s": s["deliveries_per_s"],
            "server_rss_mb": s["server_rss_mb"],
            "generator_cpu_pct": s["generator_cpu_pct"],
            "other_cpu_pct": s.get("other_cpu_pct"),
            "unexpected_closes": r.get("unexpected_closes"),
        }
    if scenario == "s7":
        s = r["steps"][0]
        a = s.get("by_node", {}).get("a", {})
        b = s.get("by_node", {}).get("b", {})
        return {
            "same_node_p50_ms": a.get("p50_ms"),
            "same_node_p95_ms": a.get("p95_ms"),
            "cross_node_p50_ms": b.get("p50_ms"),
            "cross_node_p95_ms": b.get("p95_ms"),
            "same_node_delivered_pct": 100 * (a.get("delivered_fraction") or 0),
            "cross_node_delivered_pct": 100 * (b.get("delivered_fraction") or 0),
            "deliveries_per_s": s["deliveries_per_s"],
            "server_cpu_pct": s["server_cpu_pct"],
            "db_cpu_pct": s["db_cpu_pct"],
            "generator_cpu_pct": s["generator_cpu_pct"],
            "other_cpu_pct": s.get("other_cpu_pct"),
            "unexpected_closes": r.get("unexpected_closes"),
        }
    if scenario == "soak":
        s = r["steps"][0]
        start = s.get("server_rss_start_mb")
        return {
            "p95_ms": s["p95_ms"],
            "delivered_pct": 100 * (s["delivered_fraction"] or 0),
            "server_cpu_pct": s["server_cpu_pct"],
            "rss_start_mb": start,
            "rss_end_mb": s["server_rss_mb"],
            "rss_drift_pct": 100 * (s["server_rss_mb"] - start) / start if start else None,
            "doc_mb_end": r["doc_bytes_end"] / 1e6 if r.get("doc_bytes_end") else None,
            "unexpected_closes": r.get("unexpected_closes"),
        }
    if scenario == "s3":
        # A step where the generator itself was near a full core measures the generator: leave it out.
        steps = [s for s in r["steps"] if s["generator_cpu_pct"] < GENERATOR_BOUND_PCT] or r["steps"][:1]
        kept = [s for s in steps if (s["delivered_fraction"] or 0) >= 0.95 and (s["p95_ms"] or 1e9) <= 1000]
        return {
            "deliveries_per_cpu_s": max((s["deliveries_per_server_cpu_s"] or 0) for s in steps),
            "frames_per_cpu_s": max((s.get("frames_per_server_cpu_s") or 0) for s in steps),
            "max_rate_kept_up": max((s["rate"] for s in kept), default=0),
            "max_deliveries_per_s": max(s["deliveries_per_s"] for s in steps),
            "generator_cpu_pct_max": max(s["generator_cpu_pct"] for s in r["steps"]),
        }
    if scenario == "s4":
        out: dict[str, float | None] = {
            "join_ms": _med([j["ms"] for j in r.get("single", [])]),
            "join10_all_ms": r["concurrent"]["all_synced_ms"] if r.get("concurrent") else None,
            "step2_mb": r["single"][0]["step2_bytes"] / 1e6 if r.get("single") else None,
        }
        unloaded = r.get("unloaded")
        if unloaded:
            out["unloaded_join_ms"] = (unloaded.get("single") or [{}])[0].get("ms")
        cold = r.get("cold")
        if cold:
            single = cold.get("single", {}).get("single") or [{}]
            out["cold_join_ms"] = single[0].get("ms")
            conc = cold.get("concurrent", {}).get("concurrent")
            out["cold_join10_all_ms"] = conc["all_synced_ms"] if conc else None
        return out
    if scenario == "s5":
        return {
            "kb_per_connection": r["kb_per_connection"],
            "kb_per_room": r["kb_per_room"],
            "still_open": r["still_open"],
            "clients": r["clients"],
        }
    if scenario == "s0":
        return {"synced": r["synced"], "clients": r["clients"], "p50_ms": r["p50_ms"], "max_ms": r["max_ms"]}
    return {}


# Which way is better for each metric (ratios are printed as Plait / peer either way).
HEADLINE = {
    "s1": ["p95_ms", "server_cpu_pct", "delivered_pct"],
    "s2": ["p95_ms", "server_cpu_pct", "delivered_pct"],
    "s3": ["deliveries_per_cpu_s", "frames_per_cpu_s", "max_rate_kept_up"],
    "s4": ["join_ms", "join10_all_ms", "unloaded_join_ms", "cold_join_ms", "cold_join10_all_ms"],
    "s5": ["kb_per_connection", "kb_per_room"],
    "s0": ["synced"],
    "s6": ["p95_ms", "server_cpu_pct", "delivered_pct"],
    "s7": ["same_node_p95_ms", "cross_node_p95_ms"],
    "soak": ["p95_ms", "rss_drift_pct", "doc_mb_end"],
}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    table: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    for run in runs:
        m = metrics(run["scenario"], run["result"])
        cell = table.setdefault(run["scenario"], {}).setdefault(run["server"], {})
        for k, v in m.items():
            cell.setdefault(k, []).append(v)
    return {
        sc: {srv: {k: _med(vs) for k, vs in cell.items()} for srv, cell in servers.items()}
        for sc, servers in table.items()
    }


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def print_summary(summary: dict[str, dict[str, dict[str, float | None]]], servers: list[str]) -> str:
    lines = []
    for sc in SCENARIOS + EXTRA_SCENARIOS:
        if sc not in summary:
            continue
        lines.append(f"\n== {sc} (medians across rounds) ==")
        keys: list[str] = []
        for srv in servers:
            for k in summary[sc].get(srv, {}):
                if k not in keys:
                    keys.append(k)
        width = max([len(k) for k in keys] + [10])
        lines.append(" " * width + "".join(f"{s:>16}" for s in servers))
        for k in keys:
            lines.append(k.ljust(width) + "".join(f"{fmt(summary[sc].get(s, {}).get(k)):>16}" for s in servers))
        for plait in [s for s in servers if s.startswith("plait")]:
            for peer in [s for s in servers if s in PEERS]:
                parts = []
                for k in HEADLINE[sc]:
                    a = summary[sc].get(plait, {}).get(k)
                    b = summary[sc].get(peer, {}).get(k)
                    if a is not None and b:
                        parts.append(f"{k} {a / b:.2f}x")
                if parts:
                    lines.append(f"  {plait}/{peer}: " + ", ".join(parts))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def markdown_summary(summary: dict[str, dict[str, dict[str, float | None]]], servers: list[str]) -> str:
    """The same medians as GitHub tables (pasted into docs/performance.md)."""
    out = []
    for sc in SCENARIOS + EXTRA_SCENARIOS:
        if sc not in summary:
            continue
        keys: list[str] = []
        for srv in servers:
            for k in summary[sc].get(srv, {}):
                if k not in keys:
                    keys.append(k)
        out.append(f"\n**{sc}**\n")
        out.append("| metric | " + " | ".join(servers) + " |")
        out.append("|---|" + "---:|" * len(servers))
        for k in keys:
            out.append(f"| {k} | " + " | ".join(fmt(summary[sc].get(s, {}).get(k)) for s in servers) + " |")
    return "\n".join(out) + "\n"


def chart(runs: list[dict[str, Any]], path: Path) -> bool:
    """p95 fan-out latency against offered deliveries/s in the s3 sweep, one line per server."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        log("matplotlib not installed (pip install -e '.[bench]'): no chart")
        return False
    ceiling = 20_000.0  # where a collapsed step (p95 undefined: updates lost or later than the drain) is drawn
    points: dict[str, dict[float, list[float]]] = {}
    for run in runs:
        if run["scenario"] != "s3" or "error" in run["result"]:
            continue
        for s in run["result"]["steps"]:
            p95 = s["p95_ms"] if s["p95_ms"] is not None else ceiling
            points.setdefault(run["server"], {}).setdefault(s["offered_deliveries_per_s"], []).append(p95)
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, srv in enumerate([s for s in SERVERS if s in points]):
        by_rate = points[srv]
        xs = sorted(by_rate)
        top = ceiling * (1 + 0.12 * i)  # collapsed servers stacked, not hidden behind each other
        ys = [statistics.median(by_rate[x]) for x in xs]
        ys = [top if y >= ceiling else y for y in ys]
        (line,) = ax.plot([x / 1000 for x in xs], ys, marker="o", label=srv)
        cx = [x / 1000 for x, y in zip(xs, ys, strict=True) if y >= ceiling]
        if cx:
            ax.plot(cx, [top] * len(cx), marker="x", markersize=11, linestyle="none", color=line.get_color())
    ax.axhline(ceiling, color="grey", linewidth=0.6, linestyle=":")
    ax.text(0.01, 0.02, "x: collapsed (updates lost or later than the drain)", transform=ax.transAxes, va="bottom")
    ax.set_xlabel("offered deliveries per second (thousands; 100 clients, 10 writers)")
    ax.set_ylabel("fan-out latency p95 (ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.legend(loc="center right")
    ax.set_title("s3: latency vs offered rate (server on 1 core)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return ""

    pkgs: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pv

    for name in ("pycrdt", "pycrdt-websocket", "uvicorn", "uvloop", "websockets", "sqlalchemy", "asyncpg"):
        with contextlib.suppress(PackageNotFoundError):
            pkgs[name] = pv(name)
    npm: dict[str, str] = {}
    for name in ("@hocuspocus/server", "yjs", "ws"):
        with contextlib.suppress(OSError, KeyError, ValueError):
            npm[name] = json.loads((BENCH / "node_modules" / name / "package.json").read_text())["version"]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "node": version(["node", "--version"]),
        "postgres": version(["psql", "--version"]),
        "python_packages": pkgs,
        "npm_packages": npm,
        "plait_commit": version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "taskset": bool(shutil.which("taskset")),
    }


def ensure_npm() -> None:
    if (BENCH / "node_modules" / "@hocuspocus" / "server").exists() and (BENCH / "node_modules" / "yjs").exists():
        return
    log("installing the bench's npm dependencies (npm ci --prefix bench)")
    subprocess.run(["npm", "ci", "--prefix", str(BENCH), "--no-audit", "--no-fund"], check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (< 3 min)")
    ap.add_argument("--servers", default=",".join(SERVERS), help=f"comma list of {', '.join(SERVERS)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    ap.add_argument("--rounds", type=int, help="rounds (default: 2, --quick: 1)")
    ap.add_argument("--duration", type=float, help="measurement window of s1/s2/s6 in seconds")
    ap.add_argument("--soak-minutes", type=float, default=10, help="recorded length of the soak scenario")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and generator to separate CPUs")
    ap.add_argument("--out", type=Path, help="results directory (default bench/results/<stamp>)")
    ap.add_argument("--chart", type=Path, help="also write the latency-vs-rate PNG here")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        metavar="PCT",
        help="before each run wait (up to 5 min) until other processes use less than PCT %% of one core",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SCENARIO.KEY=VALUE",
        help="override one scenario parameter (JSON value), e.g. --set s1.clients=5; repeatable",
    )
    ap.add_argument("--render", type=Path, metavar="RESULTS_JSON", help="only re-print and re-chart a results file")
    args = ap.parse_args(argv)
    if args.render:
        data = json.loads(args.render.read_text())
        names = [s for s in SERVERS if any(r["server"] == s for r in data["runs"])]
        print_summary(summarize(data["runs"]), names)
        (args.render.parent / "summary.md").write_text(markdown_summary(summarize(data["runs"]), names))
        png = args.chart or args.render.parent / "latency_vs_rate.png"
        if chart(data["runs"], png):
            log(f"chart: {png}")
        return 0

    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in servers:
        if s not in SERVER_CLASSES:
            ap.error(f"unknown server {s}")
    for s in scenarios:
        if s not in SCENARIO_FUNCS:
            ap.error(f"unknown scenario {s}")
    prof = QUICK if args.quick else FULL
    rounds = args.rounds or prof.rounds
    if args.duration:
        for p in (prof.s1, prof.s2, prof.s6):
            p["durationS"] = args.duration
    prof.soak["durationS"] = args.soak_minutes * 60
    for item in args.set:
        key, _, value = item.partition("=")
        scenario, _, param = key.partition(".")
        if not isinstance(getattr(prof, scenario, None), dict) or not param or not value:
            ap.error(f"--set {item}: expected SCENARIO.KEY=VALUE")
        getattr(prof, scenario)[param] = json.loads(value)
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    ensure_npm()
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    out = args.out or BENCH / "results" / stamp
    global LOG_DIR
    LOG_DIR = out / "logs"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="plait-bench-"))
    info = machine_info()
    log(f"{len(servers)} servers x {len(scenarios)} scenarios x {rounds} round(s); results in {out}")
    runs: list[dict[str, Any]] = []
    t0 = time.monotonic()
    targets: dict[str, Server] = {}
    try:
        for srv in servers:
            target = SERVER_CLASSES[srv](work, pin)
            try:
                target.prepare()
            except Exception as exc:
                log(f"{srv}: cannot prepare ({type(exc).__name__}: {exc}); skipped")
                continue
            targets[srv] = target
        for rnd in range(rounds):
            for sc in scenarios:
                if rnd > 0 and sc in prof.once:
                    continue
                for srv, target in targets.items():
                    if sc in CLUSTER_SCENARIOS and srv not in CLUSTER_SCENARIOS[sc]:
                        continue
                    busy_before = wait_quiet(args.wait_quiet, 300) if args.wait_quiet else machine_busy_pct(0.5)
                    load_before = os.getloadavg()[0]
                    started = time.monotonic()
                    try:
                        with running(target, f"{sc}-{srv}-r{rnd + 1}") as server:
                            result = SCENARIO_FUNCS[sc](server, prof, pin)
                    except Exception as exc:  # one failing target must not sink the whole comparison
                        result = {"error": f"{type(exc).__name__}: {exc}"}
                    run = {
                        "round": rnd,
                        "scenario": sc,
                        "server": srv,
                        "result": result,
                        "wall_s": time.monotonic() - started,
                        "loadavg_before": load_before,
                        "machine_busy_pct_before": busy_before,
                    }
                    runs.append(run)
                    m = metrics(sc, result)
                    brief = ", ".join(f"{k}={fmt(v)}" for k, v in list(m.items())[:4]) or result.get("error", "")
                    log(f"round {rnd + 1} {sc} {srv}: {brief}")
                    (out / "results.json").write_text(json.dumps({"machine": info, "runs": runs}, indent=1))
    finally:
        for target in targets.values():
            target.stop()
            target.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(runs)
    text = print_summary(summary, servers)
    total = time.monotonic() - t0
    (out / "results.json").write_text(
        json.dumps(
            {
                "machine": info,
                "profile": "quick" if args.quick else "full",
                "rounds": rounds,
                "wall_s": total,
                "summary": summary,
                "runs": runs,
            },
            indent=1,
        )
    )
    (out / "summary.txt").write_text(text + "\n")
    (out / "summary.md").write_text(markdown_summary(summary, list(targets)))
    if chart(runs, out / "latency_vs_rate.png") and args.chart:
        shutil.copy(out / "latency_vs_rate.png", args.chart)
    log(f"done in {total / 60:.1f} min; {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
