"""Redis messages each node receives, before and after per-workspace channels (one command).

    .venv/bin/python bench/redis_fanout.py                      # 2 and 4 nodes, 32 workspaces, 20 updates/client
    .venv/bin/python bench/redis_fanout.py --nodes 2 4 8 --workspaces 64 --updates 20

For each node count N it runs N ``plait serve`` processes on one fresh PostgreSQL database and a private
redis-server, twice: from the tree before per-workspace channels (``--before``, exported with ``git archive``)
and from this tree. Workspace i has two pycrdt clients, one on node i mod N and one on node (i+1) mod N (a
non-sticky load balancer: every workspace spans two nodes), each writing ``--updates`` map entries; the run
ends when every client has every entry.

Counted: before, an observer ``PSUBSCRIBE``s ``{ns}:*`` exactly like each old node did (every old node receives
what it receives); after, each node's ``plait_fanout_messages_received_total`` (workspace and node-wide
channels); and the CPU time (user + system, from /proc) the nodes and the redis-server spent from the first write
to the last client's convergence, per delivered update (each client update reaches one other client). Prints a
Markdown table (the one in docs/performance.md). Needs PostgreSQL at 127.0.0.1:5432 and redis-server on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.databases import drop_postgres_database, fresh_database  # noqa: E402
from tests.support.metrics import scrape, value  # noqa: E402
from tests.support.pyclient import YClient, sync_url  # noqa: E402
from tests.support.redisproc import RedisProcess  # noqa: E402
from tests.support.server import SECRET, free_port, wait_ready  # noqa: E402
from tests.support.users import create_workspace, register  # noqa: E402

BEFORE = "d9ceaf8"  # main before per-workspace channels: every node PSUBSCRIBEd to {ns}:*
RECEIVED = "plait_fanout_messages_received_total"
PUBLISHED = "plait_fanout_messages_published_total"
CHANNELS = ("workspace", "node")


def export_tree(ref: str, into: Path) -> Path:
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref], check=True)
    tree = into / "tree"
    tree.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


class Observer(threading.Thread):
    """What one node of the old design received: everything under the namespace."""

    def __init__(self, port: int, ns: str) -> None:
        super().__init__(daemon=True)
        self.ps = redis.Redis(port=port).pubsub(ignore_subscribe_messages=True)
        self.ps.psubscribe(f"{ns}:*")
        self.count = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            if self.ps.get_message(timeout=0.2) is not None:
                self.count += 1


def start_nodes(tree: Path, n: int, env: dict[str, str], logs: Path) -> list[tuple[subprocess.Popen[bytes], str]]:
    nodes = []
    for i in range(n):
        port = free_port()
        full = {
            **os.environ,
            **env,
            "PLAIT_NODE_ID": f"node-{i}",
            "PLAIT_PORT": str(port),
            "PLAIT_HOST": "127.0.0.1",
            "PLAIT_PASSWORD_HASH_TIME_COST": "1",
            "PLAIT_PASSWORD_HASH_MEMORY_KIB": "8",
            "PLAIT_PASSWORD_HASH_PARALLELISM": "1",
            "PLAIT_REGISTER_MAX_PER_ADDRESS": "0",
            "PLAIT_QUOTA_REST_WRITES_PER_MINUTE": "100000",
            "PLAIT_QUOTA_MAX_WORKSPACES_PER_USER": "100000",
        }
        out = open(logs / f"node-{i}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "api", "serve"], cwd=tree, env=full, stdout=out, stderr=out)
        nodes.append((proc, f"127.0.0.1:{port}"))
    try:
        for _, addr in nodes:
            wait_ready(f"http://{addr}", timeout=90)
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes: list[tuple[subprocess.Popen[bytes], str]]) -> None:
    for proc, _ in nodes:
        proc.terminate()
    for proc, _ in nodes:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def workload(addrs: list[str], workspaces: int, updates: int, mark: Callable[[], None]) -> None:
    n = len(addrs)
    with httpx.Client(base_url=f"http://{addrs[0]}", timeout=30) as http:
        owner = register(http, "bench")
        wids = [create_workspace(http, owner, f"w{i}") for i in range(workspaces)]
    clients: list[YClient] = []
    for i, wid in enumerate(wids):
        for addr in (addrs[i % n], addrs[(i + 1) % n]):
            c = YClient()
            await c.connect(sync_url(f"ws://{addr}", wid, owner.token))
            await c.wait_synced()
            clients.append(c)
    await asyncio.sleep(0.5)
    mark()
    for k in range(updates):
        for j, c in enumerate(clients):
            c.map("m")[f"{j % 2}-{k}"] = k
        await asyncio.sleep(0.01)
    for c in clients:
        await c.wait_for(lambda c=c: len(c.map("m").to_py() or {}) == 2 * updates, timeout=60)
    mark()
    await asyncio.sleep(1.0)  # the last awareness/heartbeat traffic
    for c in clients:
        await c.close()


def run(tree: Path, n: int, workspaces: int, updates: int, old: bool, tmp: Path) -> dict[str, float]:
    url = fresh_database("postgres", tmp)
    rds = RedisProcess(free_port()).start()
    ns = f"b{uuid.uuid4().hex[:8]}"
    env = {
        "PLAIT_DATABASE_URL": url,
        "PLAIT_REDIS_URL": rds.url,
        "PLAIT_REDIS_NAMESPACE": ns,
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_MIGRATE_ON_START": "false",
        "PLAIT_ENV": "test",
        "PLAIT_DATA_DIR": str(tmp),
    }
    # Each tree's own migrations: the database is at the revision that tree's nodes expect.
    subprocess.run([sys.executable, "-m", "api", "migrate"], cwd=tree, env={**os.environ, **env}, check=True)
    observer = Observer(rds.port, ns)
    observer.start()
    nodes: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        nodes = start_nodes(tree, n, env, tmp)
        addrs = [addr for _, addr in nodes]
        before = [scrape(f"http://{a}") for a in addrs]
        count0 = observer.count
        pids = [proc.pid for proc, _ in nodes]
        redis_pid = rds.proc.pid if rds.proc is not None else 0
        marks: list[tuple[list[float], float]] = []

        def mark() -> None:
            marks.append(([cpu_seconds(p) for p in pids], cpu_seconds(redis_pid)))

        t0 = time.monotonic()
        asyncio.run(workload(addrs, workspaces, updates, mark))
        elapsed = time.monotonic() - t0
        published = float(observer.count - count0)
        if old:
            per_node = [published] * n
        else:
            per_node, published = [], 0.0
            for a, b0 in zip(addrs, before, strict=True):
                now = scrape(f"http://{a}")
                got = (
                    value(now, RECEIVED, channel=ch) - value(b0, RECEIVED, channel=ch) for ch in ("workspace", "node")
                )
                per_node.append(sum(got))
                published += value(now, PUBLISHED) - value(b0, PUBLISHED)
        (node0, redis0), (node1, redis1) = marks
        delivered = 2 * workspaces * updates
        return {
            "node_cpu_ms_per_update": 1000 * (sum(node1) - sum(node0)) / delivered,
            "redis_cpu_ms_per_update": 1000 * (redis1 - redis0) / delivered,
            "mean": sum(per_node) / n,
            "max": max(per_node),
            "total_published": published,
            "seconds": elapsed,
        }
    finally:
        observer.running = False
        stop_nodes(nodes)
        rds.stop()
        drop_postgres_database(url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--workspaces", type=int, default=32)
    ap.add_argument("--updates", type=int, default=20, help="map entries each client writes")
    ap.add_argument("--before", default=BEFORE, help="git ref of the design to compare with")
    ap.add_argument("--chart", type=Path, help="also draw the two measures against N into this PNG (matplotlib)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="plait-fanout-bench-") as d:
        base = Path(d)
        old_tree = export_tree(args.before, base)
        for n in args.nodes:
            res = {}
            for label, tree, old in (("before", old_tree, True), ("after", ROOT, False)):
                tmp = base / f"{label}-{n}"
                tmp.mkdir()
                res[label] = run(tree, n, args.workspaces, args.updates, old, tmp)
                print(f"N={n} {label}: {res[label]}", file=sys.stderr, flush=True)
            rows.append((n, res))
    messages = 2 * args.workspaces * args.updates
    print(f"\n{args.workspaces} workspaces, each on 2 of N nodes; {messages} client updates in all\n")
    print(
        "| nodes | published, after (all nodes) | received per node, before | after (mean / max) | before / after "
        "| node CPU ms per delivered update, before / after | Redis CPU ms per update, before / after |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, res in rows:
        b, a = res["before"], res["after"]
        ratio = b["mean"] / a["mean"] if a["mean"] else float("inf")
        print(
            f"| {n} | {a['total_published']:.0f} | {b['mean']:.0f} | {a['mean']:.0f} / {a['max']:.0f} | {ratio:.1f} "
            f"| {b['node_cpu_ms_per_update']:.2f} / {a['node_cpu_ms_per_update']:.2f} "
            f"| {b['redis_cpu_ms_per_update']:.3f} / {a['redis_cpu_ms_per_update']:.3f} |"
        )
    if args.chart:
        chart(rows, args.chart, args.workspaces)
        print(f"\nchart: {args.chart}")


def chart(rows: list[tuple[int, dict[str, dict[str, float]]]], path: Path, workspaces: int) -> None:
    """Messages received per node and node CPU per delivered update, before and after, against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [n for n, _ in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for label, style in (("before", "o--"), ("after", "s-")):
        left.plot(ns, [r[label]["mean"] for _, r in rows], style, label=f"{label} (mean per node)")
        right.plot(ns, [r[label]["node_cpu_ms_per_update"] for _, r in rows], style, label=label)
    left.set_title(f"Redis messages received per node ({workspaces} workspaces, each on 2 nodes)")
    right.set_title("Node CPU per delivered update (all nodes)")
    left.set_ylabel("messages")
    right.set_ylabel("ms")
    for ax in (left, right):
        ax.set_xlabel("nodes")
        ax.set_xticks(ns)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
