"""Sticky routing by workspace, the option deploy/nginx.conf documents: with it every socket of a workspace
reaches one node, so each room is loaded once in the cluster and no node applies another node's updates; with
the default (least_conn) the two clients of a workspace land on different nodes and every update crosses."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.balanced import balanced_cluster
from tests.support.metrics import scrape
from tests.support.pyclient import YClient, sync_url
from tests.support.server import ProcessServer
from tests.support.users import create_workspace, register

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
WORKSPACES = 12


def _metric(node: ProcessServer, name: str) -> float:
    return sum(v for (n, _), v in scrape(node.base_url).items() if n == name)


@pytest.mark.parametrize("sticky", [True, False], ids=["sticky", "least_conn"])
async def test_routing_by_workspace_keeps_each_room_on_one_node(tmp_path: Path, sticky: bool) -> None:
    with balanced_cluster(tmp_path, sticky=sticky) as (nodes, nginx, _):
        with httpx.Client(base_url=nginx.base_url, timeout=30) as http:
            owner = register(http, "router")
            wids = [create_workspace(http, owner, f"w{i}") for i in range(WORKSPACES)]
        clients: list[YClient] = []
        try:
            for wid in wids:  # two clients per workspace, one after the other (least_conn alternates them)
                pair = [YClient(), YClient()]
                for c in pair:
                    await c.connect(sync_url(nginx.ws_url, wid, owner.token))
                    await c.wait_synced()
                clients.extend(pair)
                pair[0].map("notes")["k"] = "from the first"
                await pair[1].wait_for(lambda p=pair[1]: p.map("notes").get("k") == "from the first")
            rooms = [_metric(n, "plait_rooms_loaded") for n in nodes]
            crossed = sum(_metric(n, "plait_redis_fanout_lag_seconds_count") for n in nodes)
        finally:
            for c in clients:
                await c.close()
    if sticky:
        assert sum(rooms) == WORKSPACES, f"a workspace loaded on both nodes: {rooms}"
        assert min(rooms) >= 1, f"consistent hashing put every workspace on one node: {rooms}"
        assert crossed == 0, "with sticky routing no update should cross nodes"
    else:
        assert sum(rooms) > WORKSPACES and crossed >= WORKSPACES, (rooms, crossed)
