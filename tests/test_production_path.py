"""The path a team takes to production: the wheel installed without extras (as the Dockerfile installs it) runs
`plait migrate` and `plait serve` on PostgreSQL; two such nodes behind Debian's nginx running the project's own
deploy/nginx.conf serve real npm y-websocket clients, REST, SSE and the web client through nginx only."""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.databases import create_postgres_database, drop_postgres_database, require_postgres
from tests.support.installed import InstalledNode, InstalledPlait, install
from tests.support.nginx import Nginx, require_nginx
from tests.support.node import NodeClient, start_clients, wait_until
from tests.support.pyclient import YClient, sync_url
from tests.support.redisproc import RedisProcess
from tests.support.server import free_port
from tests.support.sse import SseReader
from tests.support.users import Account, add_member, create_workspace, register

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.node, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledPlait:
    return install(tmp_path_factory.mktemp("installed"))


def production_env(database_url: str, data_dir: Path, **more: str) -> dict[str, str]:
    return {
        "PLAIT_ENV": "production",
        "PLAIT_SECRET_KEY": secrets.token_urlsafe(48),
        "PLAIT_DATABASE_URL": database_url,
        "PLAIT_DATA_DIR": str(data_dir),
        "PLAIT_MIGRATE_ON_START": "false",
        "PLAIT_WEB_DIST": str(ROOT / "web" / "dist"),
        **more,
    }


def test_the_installed_package_imports_nothing_it_does_not_declare(installed: InstalledPlait) -> None:
    """Every module of the three packages imports in a venv holding only [project].dependencies."""
    probe = (
        "import importlib, pkgutil, api, sync_server, persistence\n"
        "for pkg in (api, sync_server, persistence):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not m.name.endswith('__main__'):\n"
        "            importlib.import_module(m.name)\n"
        "print('imported', pkg.__file__)\n"
    )
    out = subprocess.run(
        [installed.python, "-c", probe], capture_output=True, text=True, cwd=installed.venv, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert str(installed.venv) in out.stdout, "the modules must come from the installed wheel, not the checkout"


def test_installed_plait_migrates_serves_rest_and_sync_on_postgres(installed: InstalledPlait, tmp_path: Path) -> None:
    require_postgres()
    url = create_postgres_database()
    env = production_env(url, tmp_path)
    node = InstalledNode(installed, env, tmp_path / "node.log")
    try:
        migrated = installed.run("migrate", env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        node.start()
        with httpx.Client(base_url=node.base_url, timeout=30) as http:
            owner = register(http, "owner")
            wid = create_workspace(http, owner)
            r = http.post(f"/api/workspaces/{wid}/tasks", json={"title": "installed"}, headers=owner.headers)
            assert r.status_code == 201, r.text
            tid = r.json()["id"]

        async def sync_round_trip() -> None:
            async with YClient() as client:
                await client.connect(sync_url(f"ws://127.0.0.1:{node.port}", wid, owner.token))
                await client.wait_synced()
                assert client.tasks()[tid]["title"] == "installed"
                client.tasks_map()[tid]["title"] = "renamed over the socket"
                with httpx.Client(base_url=node.base_url, timeout=30) as http:

                    async def renamed() -> bool:
                        r = http.get(f"/api/workspaces/{wid}/tasks/{tid}", headers=owner.headers)
                        return bool(r.json()["title"] == "renamed over the socket")

                    await client.wait_for(renamed)

        asyncio.run(sync_round_trip())
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: -15 is a clean stop
        assert node.stop() in (0, -15)
        assert "Application shutdown complete" in node.log()
        assert "Traceback" not in node.log(), node.log()
    finally:
        node.stop()
        drop_postgres_database(url)


# ---- two installed nodes behind the real nginx ---------------------------------------------------------------


@dataclass
class Deployment:
    nodes: list[InstalledNode]
    nginx: Nginx

    @property
    def base_url(self) -> str:
        return self.nginx.base_url

    def sockets_per_node(self) -> list[int]:
        """Open sync sockets on each node, read from its own /metrics (loopback, not through nginx)."""
        counts = []
        for node in self.nodes:
            text = httpx.get(f"{node.base_url}/metrics", timeout=10).text
            counts.append(int(sum(float(v) for v in re.findall(r"^plait_connections\{[^}]*\} (\S+)$", text, re.M))))
        return counts


@pytest.fixture(scope="module")
def deployment(installed: InstalledPlait, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """compose.yaml's layout on this machine: PostgreSQL migrated once, Redis, two production nodes, nginx."""
    require_postgres()
    require_nginx()
    tmp = tmp_path_factory.mktemp("deployment")
    url = create_postgres_database()
    rds = RedisProcess(free_port()).start()
    env = production_env(url, tmp, PLAIT_REDIS_URL=rds.url, PLAIT_REDIS_NAMESPACE=f"p{uuid.uuid4().hex[:8]}")
    nodes = [InstalledNode(installed, {**env, "PLAIT_NODE_ID": f"plait-{i}"}, tmp / f"plait-{i}.log") for i in (1, 2)]
    nginx = Nginx([f"127.0.0.1:{node.port}" for node in nodes], tmp / "nginx")
    try:
        migrated = installed.run("migrate", env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        for node in nodes:
            node.start()
        nginx.start()
        yield Deployment(nodes, nginx)
        for node in nodes:
            assert "Traceback" not in node.log(), node.log()[-5000:]
        assert "[error]" not in nginx.error_log() or "upstream" not in nginx.error_log(), nginx.error_log()[-3000:]
    finally:
        nginx.stop()
        for node in nodes:
            node.stop()
        rds.stop()
        drop_postgres_database(url)


def _team(deployment: Deployment) -> tuple[str, Account, Account]:
    with httpx.Client(base_url=deployment.base_url, timeout=30) as http:
        owner = register(http, "owner")
        wid = create_workspace(http, owner)
        editor = register(http, "editor")
        add_member(http, wid, owner, editor, "editor")
    return wid, owner, editor


def _connect(deployment: Deployment, clients: list[NodeClient], accounts: list[Account], wid: str) -> None:
    for client, account in zip(clients, accounts, strict=True):
        client.connect(f"{deployment.nginx.ws_url}/sync", wid, account.token)
        client.wait_synced(timeout=15)


def test_yjs_clients_behind_nginx_reach_both_nodes_and_converge_with_rest_writes(deployment: Deployment) -> None:
    a, b = start_clients(2, prefix="lb")
    try:
        wid, owner, editor = _team(deployment)
        before = deployment.sockets_per_node()
        _connect(deployment, [a, b], [owner, editor], wid)
        after = deployment.sockets_per_node()
        assert [x - y for x, y in zip(after, before, strict=True)] == [1, 1], "least_conn puts one socket on each node"
        tid = a.create_task("through nginx", created_by=owner.id)
        wait_until(lambda: b.tasks().get(tid, {}).get("title") == "through nginx", message="b sees a's task")
        b.set_text(tid, "written on the other node")
        wait_until(lambda: a.tasks()[tid]["description"] == "written on the other node", message="a sees b's text")
        with httpx.Client(base_url=deployment.base_url, timeout=30) as http:
            r = http.post(f"/api/workspaces/{wid}/tasks", json={"title": "from REST"}, headers=owner.headers)
            assert r.status_code == 201, r.text
            rest_id = r.json()["id"]
            for client in (a, b):
                wait_until(lambda c=client: rest_id in c.tasks(), message="the REST task reaches both nodes' clients")
            r = http.get(f"/api/workspaces/{wid}/tasks/{tid}", headers=editor.headers)
            assert r.json()["description"] == "written on the other node"
    finally:
        a.close()
        b.close()


def test_awareness_presence_and_newcomers_behind_nginx(deployment: Deployment) -> None:
    first, second, newcomer = start_clients(3, prefix="aw")
    try:
        wid, owner, editor = _team(deployment)
        _connect(deployment, [first, second], [owner, editor], wid)
        first.set_local_state({"user": {"id": "someone-else", "name": "Spoof"}, "cursor": 3})
        owner_state = f"[...awareness.getStates().values()].find(s => s.cursor === 3 && s.user.id === '{owner.id}')"
        second.wait_for(owner_state)
        # the newcomer lands on whichever node nginx picks, and sees the present states at once (no renewal)
        _connect(deployment, [newcomer], [editor], wid)
        newcomer.wait_for(owner_state, timeout=5)
        with httpx.Client(base_url=deployment.base_url, timeout=30) as http:

            def present() -> set[str]:
                r = http.get(f"/api/workspaces/{wid}/presence", headers=editor.headers)
                assert r.status_code == 200, r.text
                return {p["user_id"] for p in r.json()}

            wait_until(lambda: present() == {owner.id, editor.id}, message="presence lists both nodes' users")
    finally:
        for client in (first, second, newcomer):
            client.close()


def test_notifications_stream_through_nginx(deployment: Deployment) -> None:
    wid, owner, editor = _team(deployment)
    with SseReader(f"{deployment.base_url}/api/notifications/stream?token={editor.token}") as sse:
        sse.wait_open()
        with httpx.Client(base_url=deployment.base_url, timeout=30) as http:
            r = http.post(
                f"/api/workspaces/{wid}/tasks",
                json={"title": "for the editor", "assignee_id": editor.id},
                headers=owner.headers,
            )
            assert r.status_code == 201, r.text
        event = sse.wait_event(lambda e: e.event == "notification", timeout=15)
        assert event.json()["type"] == "task_assigned"


def test_a_member_removed_while_connected_through_nginx_is_closed(deployment: Deployment) -> None:
    watcher, removed = start_clients(2, prefix="rm")
    try:
        wid, owner, editor = _team(deployment)
        _connect(deployment, [watcher, removed], [owner, editor], wid)
        with httpx.Client(base_url=deployment.base_url, timeout=30) as http:
            r = http.delete(f"/api/workspaces/{wid}/members/{editor.id}", headers=owner.headers)
            assert r.status_code == 204, r.text
        assert removed.wait_close(timeout=10)["code"] == 4403
        assert watcher.status()["connected"]
    finally:
        watcher.close()
        removed.close()


def test_the_web_client_and_the_api_docs_are_served_through_nginx(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.base_url, timeout=30) as http:
        index = http.get("/")
        assert index.status_code == 200 and '<div id="root">' in index.text
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', index.text)
        assert assets, index.text
        for path in assets:
            r = http.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript", "text/css")
        assert http.get("/invite/some-token").status_code == 200  # deep links load the app
        docs = http.get("/docs")
        assert docs.status_code == 200
        for path in re.findall(r"(?:src|href)=['\"](/docs/static/[^'\"]+)['\"]", docs.text):
            assert http.get(path).status_code == 200, path
    # access tokens in query strings never reach nginx's log
    assert "token=" not in deployment.nginx.access_log()


def test_a_client_cannot_choose_the_address_the_nodes_see(deployment: Deployment) -> None:
    """nginx is the edge: it replaces X-Forwarded-For with the address it sees. /metrics is served to loopback
    only, so a spoofed public address taken at face value would be refused (403); the real one (loopback) is not."""
    with httpx.Client(base_url=deployment.base_url, timeout=30) as http:
        r = http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 200, r.text


def test_failed_logins_behind_nginx_are_counted_per_client_not_per_proxy(deployment: Deployment) -> None:
    """Through nginx every connection comes from the proxy; the nodes throttle by the address nginx saw. One
    client guessing a password is refused (429) and the account's owner, from another address, still gets in."""
    with httpx.Client(base_url=deployment.base_url, timeout=30) as http:
        owner = register(http, "owner")

    def client_at(address: str) -> httpx.Client:
        return httpx.Client(
            base_url=deployment.base_url, timeout=30, transport=httpx.HTTPTransport(local_address=address)
        )

    with client_at("127.0.0.2") as guesser, client_at("127.0.0.3") as real:
        statuses = [
            guesser.post("/api/auth/login", json={"email": owner.email, "password": f"wrong {i}"}).status_code
            for i in range(12)
        ]
        assert statuses[0] == 401 and statuses[-1] == 429, statuses
        r = real.post("/api/auth/login", json={"email": owner.email, "password": owner.password})
        assert r.status_code == 200, r.text
