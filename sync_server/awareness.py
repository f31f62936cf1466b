"""A room's awareness (y-protocols): who is where, with the server as the authority on identity.

Strict by design: a state is parsed before anything is relayed, a socket may only speak for the client ids it
introduced, the user in a state is the socket's account whatever the client claims, and sizes are bounded.
Every method *returns* the encoded payload of what changed (``None``: nothing did); the room broadcasts it,
and publishes it to other nodes when it came from one of its own sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from . import metrics
from .connection import Connection
from .limits import RoomLimits
from .protocol import AwarenessEntry, encode_awareness, parse_awareness


class AwarenessStates(dict[int, AwarenessEntry]):
    """The room's awareness states by client id, keeping the total size of their JSON (``nbytes``): what a
    newcomer receives in one frame, bounded by ``PLAIT_MAX_AWARENESS_ROOM_BYTES``."""

    __slots__ = ("_sizes", "nbytes")

    def __init__(self) -> None:
        super().__init__()
        self._sizes: dict[int, int] = {}
        self.nbytes = 0

    @staticmethod
    def size(entry: AwarenessEntry) -> int:
        return len(json.dumps(entry.state, separators=(",", ":")))

    def __setitem__(self, client_id: int, entry: AwarenessEntry) -> None:
        size = self.size(entry)
        self.nbytes += size - self._sizes.get(client_id, 0)
        self._sizes[client_id] = size
        super().__setitem__(client_id, entry)

    def __delitem__(self, client_id: int) -> None:
        super().__delitem__(client_id)
        self.nbytes -= self._sizes.pop(client_id, 0)

    def pop(self, client_id: int, *default: Any) -> Any:
        self.nbytes -= self._sizes.pop(client_id, 0)
        return super().pop(client_id, *default)

    def fits(self, client_id: int, entry: AwarenessEntry, limit: int) -> bool:
        """Whether setting ``entry`` keeps the total within ``limit`` bytes."""
        return self.nbytes - self._sizes.get(client_id, 0) + self.size(entry) <= limit


class RoomAwareness:
    __slots__ = ("_clocks", "_limits", "_owners", "_remote", "_renewed", "states")

    def __init__(self, limits: RoomLimits) -> None:
        self._limits = limits
        self.states = AwarenessStates()
        self._renewed: dict[int, float] = {}  # this node's client ids -> when their state was last renewed
        self._remote: dict[int, tuple[str, float]] = {}  # client id -> (node id, last renewed) for other nodes
        self._clocks: dict[int, int] = {}
        self._owners: dict[int, Connection] = {}

    def __bool__(self) -> bool:
        return bool(self.states)

    def everyone(self) -> bytes:
        """Every state the room holds, encoded (for a newcomer and for a query-awareness message)."""
        return encode_awareness(list(self.states.values()))

    def own(self) -> bytes:
        """The states of this node's own sockets, encoded: the answer to another node's query."""
        return encode_awareness([entry for cid, entry in self.states.items() if cid in self._owners])

    # ---- this node's sockets ---------------------------------------------------------------------------

    def accept(self, conn: Connection, payload: bytes) -> bytes | None:
        """A socket's awareness message, checked (size, rate, ownership, identity, bounds)."""
        limits = self._limits
        if len(payload) > limits.max_awareness_bytes:
            metrics.AWARENESS_DROPPED.labels("size").inc()
            return None
        if not conn.allow_awareness(limits.max_awareness_per_second):
            metrics.AWARENESS_DROPPED.labels("rate").inc()
            return None
        accepted: list[AwarenessEntry] = []
        for entry in parse_awareness(payload):
            owner = self._owners.get(entry.client_id)
            if owner is not None and owner is not conn:
                metrics.AWARENESS_DROPPED.labels("foreign_client_id").inc()
                continue
            if entry.client_id in self._remote:
                remote = self.states.get(entry.client_id)
                remote_user = (remote.state or {}).get("user", {}) if remote else {}
                if isinstance(remote_user, dict) and remote_user.get("id") not in (None, conn.user_id):
                    metrics.AWARENESS_DROPPED.labels("foreign_client_id").inc()
                    continue
                del self._remote[entry.client_id]  # the same user moved here from another node
            known = self._clocks.get(entry.client_id)
            if known is not None and entry.clock < known:
                continue
            state = None if entry.state is None else _enforce_identity(conn, entry.state)
            if state is not None and not self._fits(conn, AwarenessEntry(entry.client_id, entry.clock, state)):
                continue
            self._clocks[entry.client_id] = entry.clock
            if state is None:
                self.states.pop(entry.client_id, None)
                self._owners.pop(entry.client_id, None)
                conn.controlled.pop(entry.client_id, None)
            else:
                self.states[entry.client_id] = AwarenessEntry(entry.client_id, entry.clock, state)
                self._owners[entry.client_id] = conn
                conn.controlled[entry.client_id] = entry.clock
                self._renewed[entry.client_id] = time.monotonic()
            accepted.append(AwarenessEntry(entry.client_id, entry.clock, state))
        return encode_awareness(accepted) if accepted else None

    def _fits(self, conn: Connection, entry: AwarenessEntry) -> bool:
        """Bounds on what awareness a socket can make the room hold: a few client ids per socket (a y-websocket
        client has one) and a total size per room (a newcomer receives every state in one frame)."""
        limits = self._limits
        if entry.client_id not in conn.controlled and len(conn.controlled) >= limits.max_awareness_clients_per_socket:
            metrics.AWARENESS_DROPPED.labels("client_ids").inc()
            return False
        if not self.states.fits(entry.client_id, entry, limits.max_awareness_room_bytes):
            metrics.AWARENESS_DROPPED.labels("room_bytes").inc()
            return False
        return True

    def remove_owned_by(self, conn: Connection) -> bytes | None:
        """The socket closed: remove the states it controlled."""
        removed = []
        for cid in list(conn.controlled):
            if self._owners.get(cid) is conn:
                removed.append(self._remove(cid))
                self._owners.pop(cid, None)
        conn.controlled.clear()
        return encode_awareness(removed) if removed else None

    def expire_local(self, max_age: float) -> bytes | None:
        """Remove states of this node's sockets not renewed for ``max_age`` seconds (y-protocols' outdated
        timeout: clients renew every 15 s, and drop other clients' states after 30 s themselves)."""
        now = time.monotonic()
        removed = []
        for cid, renewed in list(self._renewed.items()):
            owner = self._owners.get(cid)
            if owner is None:
                del self._renewed[cid]
            elif now - renewed > max_age:
                del self._renewed[cid]
                removed.append(self._remove(cid))
                del self._owners[cid]
                owner.controlled.pop(cid, None)
        return encode_awareness(removed) if removed else None

    def _remove(self, cid: int) -> AwarenessEntry:
        clock = self._clocks.get(cid, 0) + 1
        self._clocks[cid] = clock
        self.states.pop(cid, None)
        return AwarenessEntry(cid, clock, None)

    # ---- other nodes' sockets --------------------------------------------------------------------------

    def accept_remote(self, node: str, entries: Iterable[AwarenessEntry]) -> bytes | None:
        """Awareness accepted (and identity-checked) by another node."""
        now = time.monotonic()
        accepted = []
        for entry in entries:
            known = self._clocks.get(entry.client_id)
            if (known is not None and entry.clock < known) or entry.client_id in self._owners:
                continue
            self._clocks[entry.client_id] = entry.clock
            if entry.state is None:
                self.states.pop(entry.client_id, None)
                self._remote.pop(entry.client_id, None)
            else:
                self.states[entry.client_id] = entry
                self._remote[entry.client_id] = (node, now)
            accepted.append(entry)
        return encode_awareness(accepted) if accepted else None

    def replace_remote(self, node: str, payload: bytes) -> list[bytes]:
        """``node``'s full set of its clients' states: drop what is held from that node beyond it, then take
        the set (two messages, in that order)."""
        entries = parse_awareness(payload)
        present = {entry.client_id for entry in entries}
        gone = [cid for cid, (owner, _) in self._remote.items() if owner == node and cid not in present]
        return [m for m in (self._drop_remote(gone), self.accept_remote(node, entries)) if m is not None]

    def expire_remote(self, max_age: float, live_nodes: set[str] | None = None) -> bytes | None:
        """Drop states of other nodes not renewed in ``max_age`` seconds or whose node is gone (crash)."""
        now = time.monotonic()
        return self._drop_remote(
            [
                cid
                for cid, (node, seen) in self._remote.items()
                if now - seen > max_age or (live_nodes is not None and node not in live_nodes)
            ]
        )

    def _drop_remote(self, gone: list[int]) -> bytes | None:
        removed = []
        for cid in gone:
            del self._remote[cid]
            if cid in self.states:
                removed.append(self._remove(cid))
        return encode_awareness(removed) if removed else None


def _enforce_identity(conn: Connection, state: dict[str, Any]) -> dict[str, Any]:
    """The server's account decides who a state belongs to, whatever the client claims."""
    user = state.get("user")
    user = dict(user) if isinstance(user, dict) else {}
    if user.get("id") != conn.user_id or user.get("name") != conn.display_name:
        if user:
            metrics.AWARENESS_REWRITTEN.inc()
        user["id"] = conn.user_id
        user["name"] = conn.display_name
    return {**state, "user": user}
