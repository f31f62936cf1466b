"""The node's loaded rooms: load (one lock per workspace), lease, failure and idle unload, and the index of
open sockets by account (membership changes and account closes act on it).

A room is loaded once however many sockets join it at the same instant (pycrdt-websocket's first-join race
cannot happen), and a failed room is dropped so the next connection rebuilds it from the database."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from persistence.db import Database
from persistence.doclog import DocumentLog
from persistence.membership import member_roles

from . import close_codes, metrics
from .close_codes import CloseEvent
from .compaction import Compactor
from .connection import Connection
from .limits import RoomLimits
from .room import KEEPALIVE, Room, RoomEvents, Submit

log = logging.getLogger("plait.sync")
MEMBER_CACHE_SECONDS = 5.0  # membership changes on this node invalidate at once; other nodes' within this


class RoomRegistry:
    def __init__(
        self,
        db: Database,
        store: DocumentLog,
        *,
        limits: RoomLimits,
        submit: Submit,
        events: RoomEvents,
        compactor: Compactor,
        on_load: Callable[[str], None],
        loading: Callable[[str], Awaitable[None]] | None = None,
        unloaded: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.limits = limits
        self._submit = submit
        self._events = events
        self._compactor = compactor
        self._on_load = on_load
        self._loading = loading  # before the document is read (the cluster subscribes to its channel)
        self._unloaded = unloaded  # after a room is forgotten (the cluster leaves its channel)
        self.rooms: dict[str, Room] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._user_conns: dict[tuple[str, str], set[Connection]] = {}
        self._members: dict[str, tuple[float, dict[str, str]]] = {}

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self.rooms.values()))

    def loaded(self, workspace_id: str) -> Room | None:
        """The room if it is loaded and usable (nothing is loaded)."""
        room = self.rooms.get(workspace_id)
        return room if room is not None and not room.broken else None

    async def get(self, workspace_id: str) -> Room:
        """The loaded room, or load it. One lock per workspace: concurrent first joins all get the same room."""
        room = self.loaded(workspace_id)
        if room is not None:
            return room
        lock = self._load_locks.setdefault(workspace_id, asyncio.Lock())
        async with lock:
            room = self.loaded(workspace_id)
            if room is not None:
                return room
            started = time.perf_counter()
            if self._loading is not None:
                await self._loading(workspace_id)
            try:
                stored = await self.store.load(workspace_id)
            except BaseException:
                self._forgotten(workspace_id)
                raise
            room = Room(
                workspace_id,
                stored,
                submit=self._submit,
                events=self._events,
                members=self.member_roles,
                limits=self.limits,
            )
            self.rooms[workspace_id] = room
            metrics.ROOMS.set(len(self.rooms))
            self._on_load(workspace_id)
            log.info(
                "loaded room %s (%d log rows after snapshot) in %.1f ms",
                workspace_id,
                len(stored.updates),
                (time.perf_counter() - started) * 1000,
            )
        if not lock.locked():
            self._load_locks.pop(workspace_id, None)
        return room

    @asynccontextmanager
    async def lease(self, workspace_id: str) -> AsyncIterator[Room]:
        """The live room for server-side reads and changes; kept loaded while in use."""
        room = await self.get(workspace_id)
        room.leases += 1
        try:
            yield room
        finally:
            room.leases -= 1
            room.touch()

    def drop(self, room: Room) -> None:
        """A failed room: forget it, so the next connection rebuilds it from the database."""
        if self.rooms.get(room.workspace_id) is room:
            del self.rooms[room.workspace_id]
            metrics.ROOMS.set(len(self.rooms))
            self._forgotten(room.workspace_id)

    def _forgotten(self, workspace_id: str) -> None:
        if self._unloaded is not None:
            self._unloaded(workspace_id)

    # ---- sockets by account --------------------------------------------------------------------------

    def add(self, conn: Connection) -> None:
        self._user_conns.setdefault((conn.workspace_id, conn.user_id), set()).add(conn)

    def remove(self, conn: Connection) -> None:
        key = (conn.workspace_id, conn.user_id)
        conns = self._user_conns.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._user_conns[key]

    def apply_membership(self, workspace_id: str, user_id: str, role: str | None) -> None:
        """A role change (None: removed) takes effect on the account's open sockets at once. A writer made a
        viewer is closed (4423), so its client learns now that its unsent edits will never be accepted."""
        self._members.pop(workspace_id, None)
        for conn in list(self._user_conns.get((workspace_id, user_id), ())):
            if role is None:
                conn.end(close_codes.ACCESS_WITHDRAWN)
            else:
                demoted = role == "viewer" and not conn.read_only
                metrics.CONNECTIONS.labels(conn.role).dec()
                conn.role = "viewer" if conn.read_scope else role
                metrics.CONNECTIONS.labels(conn.role).inc()
                if demoted:
                    conn.end(close_codes.DEMOTED_TO_VIEWER)

    def close_user(self, user_id: str, event: CloseEvent) -> int:
        conns = [c for (_, uid), cs in self._user_conns.items() if uid == user_id for c in cs if not c.closed]
        for conn in conns:
            conn.end(event)
        if conns:
            log.info("closed %d socket(s) of user %s (%d %s)", len(conns), user_id, event.code, event.reason)
        return len(conns)

    def open_session_ids(self) -> set[str]:
        """The sessions (and personal access tokens) the open sockets of this node were admitted with."""
        return {c.session_id for cs in self._user_conns.values() for c in cs if c.session_id and not c.closed}

    def close_sessions(self, session_ids: set[str], event: CloseEvent) -> int:
        """Close the sockets opened with a token of one of these sessions (or personal access tokens)."""
        conns = [c for cs in self._user_conns.values() for c in cs if c.session_id in session_ids and not c.closed]
        for conn in conns:
            conn.end(event)
        if conns:
            log.info("closed %d socket(s) of %d ended session(s)", len(conns), len(session_ids))
        return len(conns)

    def local_presence(self, workspace_id: str) -> dict[str, dict[str, Any]]:
        """Who is connected to the workspace on this node, by account."""
        users: dict[str, dict[str, Any]] = {}
        room = self.rooms.get(workspace_id)
        for conn in list(room.conns) if room else []:
            if conn.closed:
                continue
            entry = users.setdefault(
                conn.user_id,
                {
                    "user_id": conn.user_id,
                    "display_name": conn.display_name,
                    "connections": 0,
                    "since": conn.connected_at,
                    "last_active": conn.last_active,
                },
            )
            entry["connections"] += 1
            entry["since"] = min(entry["since"], conn.connected_at)
            entry["last_active"] = max(entry["last_active"], conn.last_active)
        return users

    async def member_roles(self, workspace_id: str) -> dict[str, str]:
        """User id -> role of the members (cached briefly; membership changes on this node invalidate at once)."""
        cached = self._members.get(workspace_id)
        if cached is not None and time.monotonic() - cached[0] < MEMBER_CACHE_SECONDS:
            return cached[1]
        roles = await member_roles(self.db, workspace_id)
        self._members[workspace_id] = (time.monotonic(), roles)
        return roles

    # ---- the janitor ---------------------------------------------------------------------------------

    async def janitor(self, idle_seconds: float, keepalive_seconds: float, awareness_timeout: float) -> None:
        """Unload idle rooms (folding their log first) and keep quiet sockets alive."""
        interval = max(0.2, min(5.0, idle_seconds / 2, keepalive_seconds / 2))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for wid, room in list(self.rooms.items()):
                if room.unloadable and now - room.idle_since >= idle_seconds:
                    if room.foldable and not room.log.compacted_for_unload:
                        # Leave one stored chunk behind: the next load answers fresh joiners with it at once.
                        room.log.compacted_for_unload = True
                        self._compactor.soon(room)
                        continue
                    del self.rooms[wid]
                    room.close()
                    self._forgotten(wid)
                    log.info("unloaded idle room %s", wid)
                room.expire_local_awareness(awareness_timeout)
                for conn in list(room.conns):
                    if now - conn.last_sent > keepalive_seconds:
                        conn.send(KEEPALIVE)
                        conn.last_sent = now
            metrics.ROOMS.set(len(self.rooms))
