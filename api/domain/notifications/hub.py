"""Live push: :meth:`NotificationHub.publish` is the one place that tells SSE streams "look again"; the stream
reads the database (the single truth), so a wake-up is never a lost message. With Redis it also wakes the
streams of other nodes (:meth:`NotificationHub.bridge`).

It also carries one kind of message that is not stored: "the member list of workspace W changed"
(:meth:`NotificationHub.members_changed`), which the stream sends as a ``members`` event so open clients
re-read the members and their own role at once instead of polling. Lost with a dropped stream, so a client
re-reads on every (re)connect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync_server.service import SyncService


class StreamCounts:
    """Open streams on this node, in total and per account (``PLAIT_MAX_SSE_STREAMS_PER_USER`` / ``_NODE``)."""

    def __init__(self) -> None:
        self.total = 0
        self.per_user: dict[str, int] = {}

    def take(self, user_id: str, per_user: int, per_node: int) -> str | None:
        """Count a new stream, or say which cap refuses it."""
        if per_node and self.total >= per_node:
            return "server"
        if per_user and self.per_user.get(user_id, 0) >= per_user:
            return "account"
        self.total += 1
        self.per_user[user_id] = self.per_user.get(user_id, 0) + 1
        return None

    def give_back(self, user_id: str) -> None:
        self.total -= 1
        left = self.per_user.pop(user_id, 1) - 1
        if left:
            self.per_user[user_id] = left


class Wake(asyncio.Event):
    """One stream's wake-up, and the workspaces whose member list changed since the stream last looked."""

    def __init__(self) -> None:
        super().__init__()
        self.member_lists: set[str] = set()

    def take_member_lists(self) -> list[str]:
        taken = sorted(self.member_lists)
        self.member_lists.clear()
        return taken


class NotificationHub:
    """In-process wake-ups for SSE streams on this node, per user (the stream then reads the database)."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Wake]] = {}
        self._remote: Callable[[set[str]], None] | None = None
        self._remote_members: Callable[[str, set[str]], None] | None = None
        self.streams = StreamCounts()  # the SSE streams open on this node, for their caps

    def subscribe(self, user_id: str) -> Wake:
        event = Wake()
        self._subs.setdefault(user_id, set()).add(event)
        return event

    def unsubscribe(self, user_id: str, event: asyncio.Event) -> None:
        subs = self._subs.get(user_id)
        if subs is not None:
            subs.discard(event)
            if not subs:
                del self._subs[user_id]

    def wake(self, user_ids: Iterable[str]) -> None:
        for uid in user_ids:
            for event in self._subs.get(uid, ()):
                event.set()

    def wake_member_lists(self, workspace_id: str, user_ids: Iterable[str]) -> None:
        for uid in user_ids:
            for event in self._subs.get(uid, ()):
                event.member_lists.add(workspace_id)
                event.set()

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def publish(self, user_ids: Iterable[str]) -> None:
        """The single publish point: new notifications are committed for these users. Wakes this node's
        streams and, with Redis, every other node's; a missed wake-up only delays delivery until the stream's
        next poll."""
        ids = set(user_ids)
        if ids:
            self.wake(ids)
            if self._remote is not None:
                self._remote(ids)

    def members_changed(self, workspace_id: str, user_ids: Iterable[str]) -> None:
        """The member list of a workspace changed (join, leave, role, display name): tell these users' streams,
        here and, with Redis, on every other node. At most once: a client re-reads when its stream reconnects."""
        ids = set(user_ids)
        if ids:
            self.wake_member_lists(workspace_id, ids)
            if self._remote_members is not None:
                self._remote_members(workspace_id, ids)

    def bridge(self, sync: SyncService) -> None:
        """Wake-ups cross nodes through the cluster's ``notify`` messages (register before the sync service
        starts: its Redis listener subscribes to the kinds registered by then)."""

        def send(ids: set[str]) -> None:
            sync.publish_to_nodes("notify", "users", json.dumps(sorted(ids)).encode())

        def receive(_key: str, body: bytes) -> None:
            self.wake(json.loads(body))

        def send_members(workspace_id: str, ids: set[str]) -> None:
            body = {"workspace_id": workspace_id, "users": sorted(ids)}
            sync.publish_to_nodes("member-list", workspace_id, json.dumps(body).encode())

        def receive_members(_key: str, body: bytes) -> None:
            message = json.loads(body)
            self.wake_member_lists(message["workspace_id"], message["users"])

        self._remote = send
        self._remote_members = send_members
        sync.on_node_message("notify", receive)
        sync.on_node_message("member-list", receive_members)
