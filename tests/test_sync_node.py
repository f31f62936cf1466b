"""The npm ``yjs`` + ``y-websocket`` provider against a real Plait server, unchanged: convergence, concurrent
text, offline edits, close codes it can read (and stops retrying on), viewers, awareness identity."""

from __future__ import annotations

import httpx
import pytest

from tests.support.node import NodeClient, start_clients, wait_until
from tests.support.server import ThreadServer
from tests.support.users import Account, register, workspace_with

pytestmark = pytest.mark.node


def _connect(c: NodeClient, server: ThreadServer, wid: str, acct: Account) -> None:
    c.connect(f"{server.ws_url}/sync", wid, acct.token)
    c.wait_synced()


def test_npm_clients_converge_offline_edits_merge(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a, b, c = start_clients(3)
    try:
        _connect(a, server, wid, owner)
        _connect(b, server, wid, editor)
        tid = a.create_task("Plan", description="draft")
        b.wait_for(f"state().tasks['{tid}'] && state().tasks['{tid}'].description === 'draft'")
        # concurrent typing into one description
        for _ in range(10):
            a.insert_text(tid, 0, "A")
            b.insert_text(tid, 0, "B")
        wait_until(
            lambda: (
                a.tasks()[tid]["description"] == b.tasks()[tid]["description"]
                and a.tasks()[tid]["description"].count("B") == 10
            ),
            message="concurrent text converges",
        )
        # b goes offline, both edit, b comes back: nothing lost
        b.disconnect()
        b.set_field(tid, "title", "Plan (offline)")
        a.insert_text(tid, 0, "online:")
        b.reconnect()
        b.wait_synced()
        wait_until(lambda: a.tasks()[tid] == b.tasks()[tid], message="offline edits merged")
        assert a.tasks()[tid]["title"] == "Plan (offline)"
        assert a.tasks()[tid]["description"].startswith("online:")
        # a late joiner gets everything
        _connect(c, server, wid, owner)
        assert c.tasks()[tid] == a.tasks()[tid]
    finally:
        for x in (a, b, c):
            x.close()


def test_npm_client_reads_close_codes_and_stops_retrying(server: ThreadServer, client: httpx.Client) -> None:
    wid, _owner, _ = workspace_with(client)
    stranger = register(client, "stranger")
    cases = [("garbage-token", wid, 4401), (stranger.token, wid, 4404)]
    clients = start_clients(len(cases))
    try:
        for c, (token, target, code) in zip(clients, cases, strict=True):
            c.connect(f"{server.ws_url}/sync", target, token)
            close = c.wait_close()
            assert close["code"] == code
            # y-websocket's own record that it will not reconnect: its scheduled setupWS is then a no-op
            status = c.status()
            assert status["shouldConnect"] is False, "4400-4499 closes must stop y-websocket's reconnect loop"
            assert status["terminalClose"]["code"] == code
            assert len(status["closes"]) == 1
    finally:
        for c in clients:
            c.close()


def test_npm_viewer_sees_live_changes_but_never_writes(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (viewer,) = workspace_with(client, "viewer")
    a, v = start_clients(2)
    try:
        _connect(a, server, wid, owner)
        _connect(v, server, wid, viewer)
        tid = a.create_task("Visible")
        v.wait_for(f"state().tasks['{tid}'] !== undefined")
        v.set_field(tid, "title", "hacked")
        v.create_task("viewer task")
        a.set_field(tid, "status", "in_progress")
        v.wait_for(f"state().tasks['{tid}'].status === 'in_progress'")
        # barrier: the viewer's awareness, sent after its writes on the same socket, has reached a
        v.set_local_state_field("probe", 1)
        vid = v.status()["clientId"]
        a.wait_for(f"awareness.getStates().get({vid})?.probe === 1")
        assert list(a.tasks()) == [tid] and a.tasks()[tid]["title"] == "Visible"
        assert v.status()["connected"], "viewer writes are dropped without closing the socket"
    finally:
        a.close()
        v.close()


def test_npm_awareness_identity_is_the_servers(server: ThreadServer, client: httpx.Client) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    a, b = start_clients(2)
    try:
        _connect(a, server, wid, owner)
        a.set_local_state({"user": {"id": editor.id, "name": "Not Me", "color": "#f00"}, "viewing": None})
        _connect(b, server, wid, editor)
        a_id = a.status()["clientId"]
        b.wait_for(f"awareness.getStates().get({a_id}) !== undefined")
        state = b.get_states()[a_id]
        assert state["user"] == {"id": owner.id, "name": owner.display_name, "color": "#f00"}
        a.disconnect()
        b.wait_for(f"awareness.getStates().get({a_id}) === undefined", timeout=5)
    finally:
        a.close()
        b.close()
