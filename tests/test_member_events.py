"""Membership changes pushed to open clients: a ``members`` event on every member's notification stream (join,
role change, display name, leave), and a writer made a viewer has its sync sockets closed with 4423."""

from __future__ import annotations

import httpx
import pytest

from tests.support.pyclient import YClient, sync_url
from tests.support.server import ThreadServer
from tests.support.sse import SseEvent, SseReader
from tests.support.users import Account, add_member, register, workspace_with

pytestmark = pytest.mark.db_agnostic  # an in-process push after the commit: the same on both databases


def _stream(server: ThreadServer, acct: Account) -> SseReader:
    return SseReader(f"{server.base_url}/api/notifications/stream?token={acct.token}")


def _member_events(sse: SseReader, wid: str) -> list[SseEvent]:
    return [e for e in sse.snapshot() if e.event == "members" and e.json() == {"workspace_id": wid}]


def _wait_members_event(sse: SseReader, wid: str, count: int) -> None:
    sse.wait_event(lambda _e: len(_member_events(sse, wid)) >= count)


def test_every_member_hears_of_a_join_a_role_change_a_new_name_and_a_leave(
    server: ThreadServer, client: httpx.Client
) -> None:
    wid, owner, (editor,) = workspace_with(client, "editor")
    newcomer = register(client, "newcomer")
    outsider = register(client, "outsider")
    with _stream(server, owner) as o, _stream(server, editor) as e, _stream(server, newcomer) as n:
        with _stream(server, outsider) as x:
            for s in (o, e, n, x):
                assert s.wait_open() == 200
            add_member(client, wid, owner, newcomer, "editor")
            _wait_members_event(o, wid, 1)
            _wait_members_event(e, wid, 1)
            _wait_members_event(n, wid, 1)  # the newcomer's other tabs learn of the workspace too
            url = f"/api/workspaces/{wid}/members/{newcomer.id}"
            assert client.patch(url, json={"role": "viewer"}, headers=owner.headers).status_code == 200
            _wait_members_event(e, wid, 2)
            r = client.patch("/api/me", json={"display_name": "New Name"}, headers=newcomer.headers)
            assert r.status_code == 200, r.text
            _wait_members_event(e, wid, 3)  # a member's display name is part of the list too
            assert client.delete(url, headers=newcomer.headers).status_code == 204
            _wait_members_event(e, wid, 4)
            _wait_members_event(n, wid, 4)  # the one who left hears it as well
            assert not [ev for ev in x.snapshot() if ev.event == "members"], "outsiders hear nothing"
            # Not a notification: no id, so a reconnecting stream's Last-Event-ID still names a notification.
            assert all(ev.id is None for ev in _member_events(e, wid))


async def test_a_writer_made_viewer_is_closed_4423_and_promotion_keeps_the_socket(
    server: ThreadServer, client: httpx.Client
) -> None:
    wid, owner, (member,) = workspace_with(client, "viewer")
    viewer = YClient()
    await viewer.connect(sync_url(server.ws_url, wid, member.token))
    await viewer.wait_synced()
    url = f"/api/workspaces/{wid}/members/{member.id}"
    assert client.patch(url, json={"role": "editor"}, headers=owner.headers).status_code == 200
    viewer.text("t").insert(0, "promoted")  # the same socket writes now
    writer = YClient()
    await writer.connect(sync_url(server.ws_url, wid, owner.token))
    await writer.wait_for(lambda: str(writer.text("t")) == "promoted")
    assert client.patch(url, json={"role": "viewer"}, headers=owner.headers).status_code == 200
    assert await viewer.wait_closed() == 4423
    assert writer.connected
    await writer.close()
