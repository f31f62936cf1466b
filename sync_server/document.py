"""A room's document: the pycrdt ``Doc`` when built, or the stored chunk until something needs it.

Kept cold, a room loaded from the database answers fresh joiners with the stored chunk at once and an idle
one stays small; the sockets that joined meanwhile are owed a sync step 1, sent when the Doc is built."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pycrdt import Doc
from pycrdt._sync import create_sync_step1_message

from . import metrics
from .connection import Connection
from .errors import InvalidUpdate, MissingDependencies
from .protocol import (
    EMPTY_STATE_VECTOR,
    EMPTY_UPDATE,
    ProtocolError,
    UnknownStruct,
    check_update,
    decode_state_vector,
    shares_state,
    sync_step2,
    update_end_clocks,
)

log = logging.getLogger("plait.sync.room")
# Client updates larger than this are checked for missing dependencies off the event loop (decoding a few MB of
# small structs in Python is too slow for the loop: docs/performance.md#dependency-check).
CHECK_IN_THREAD_BYTES = 64 * 1024


class RoomDocument:
    __slots__ = ("_changes", "_cold", "_doc", "_step1_owed", "_sv", "_whole", "workspace_id")

    def __init__(self, workspace_id: str, chunks: list[bytes]) -> None:
        self.workspace_id = workspace_id
        self._doc: Doc[Any] | None = None
        self._cold: bytes | None = chunks[0] if len(chunks) == 1 else None
        self._step1_owed: set[Connection] = set()
        # The Doc's state vector, decoded, kept current from each change's delta: decoding the Doc's own for every
        # update would cost a pass over every client that ever wrote (thousands in an old workspace).
        self._sv: dict[int, int] | None = None
        # Step 2 for a fresh client, keyed by a count of the document's changes (not by its state vector:
        # a deletion does not change the state vector).
        self._changes = 0
        self._whole: tuple[int, bytes] | None = None
        if len(chunks) > 1:
            self._build(chunks)

    @property
    def doc(self) -> Doc[Any]:
        if self._doc is None:
            self._build([self._cold] if self._cold is not None else [])
        assert self._doc is not None
        return self._doc

    @property
    def built(self) -> bool:
        return self._doc is not None

    def _build(self, chunks: list[bytes]) -> None:
        """Apply the stored document (its cost: docs/performance.md#room-build); then send the sync step 1 owed
        to sockets that joined before, so they send back what they have that the server lacks."""
        started = time.perf_counter()
        doc: Doc[Any] = Doc()
        for chunk in chunks:
            doc.apply_update(chunk)
        self._doc, self._cold = doc, None
        self._sv = None
        if chunks:
            log.info(
                "built %s from %d chunk(s) in %.1f ms",
                self.workspace_id,
                len(chunks),
                (time.perf_counter() - started) * 1000,
            )
        if self._step1_owed:
            message = create_sync_step1_message(doc.get_state())
            for conn in self._step1_owed:
                conn.send(message)
                conn.step2_due = True
            self._step1_owed.clear()

    def whole_update(self) -> bytes | None:
        """The document as one update (for a snapshot); None if the Doc was never built (nothing changed)."""
        return self._doc.get_update() if self._doc is not None else None

    # ---- sync handshake --------------------------------------------------------------------------------

    def step1_for(self, conn: Connection) -> bytes | None:
        """The sync step 1 for a joining socket, or None when it is owed until the Doc is built."""
        if self._doc is not None:
            return create_sync_step1_message(self._doc.get_state())
        if self._cold is None:
            return create_sync_step1_message(EMPTY_STATE_VECTOR)  # empty stored document
        # Step 1 needs the state vector, which needs the Doc: it is sent when the Doc is built — unless the
        # client's own step 1 shows it has nothing (a fresh client), then it is not needed at all.
        self._step1_owed.add(conn)
        return None

    def forget(self, conn: Connection) -> None:
        """The socket left, or showed it has nothing the server lacks: no step 1 is owed to it."""
        self._step1_owed.discard(conn)

    def step2(self, state_vector: bytes, max_diff_bytes: int) -> tuple[bytes, bool]:
        """Sync step 2 for a state vector, and whether it is the room's shared encoding (True) or this socket's
        own. A fresh client (empty state vector) gets the whole document, encoded once per document state: ten
        clients joining a large workspace cost one encoding, not ten, and hold references to it, not copies (a
        large message goes out in fragments as the socket drains: ``Connection.send``). Until the first change
        that encoding is the stored chunk itself: a fresh client joining a room just loaded from the database
        does not wait for the Doc to be built.

        A state vector that shares nothing with the document's is a fresh client too, and so is one whose
        difference is larger than ``max_diff_bytes``: the whole document is a valid step 2 for any client (it
        ignores what it has), and a socket's own copy of a large difference is what ten sockets that never read
        would each hold."""
        if state_vector != EMPTY_STATE_VECTOR:
            if shares_state(state_vector, self.state_vector()):
                diff = self.doc.get_update(state_vector)
                if len(diff) <= max_diff_bytes:
                    return sync_step2(diff), False
        if self._whole is None or self._whole[0] != self._changes:
            # No change can happen before the Doc is built, so until then the stored chunk is the document.
            whole = self._doc.get_update() if self._doc is not None else (self._cold or EMPTY_UPDATE)
            self._whole = (self._changes, sync_step2(whole))
        return self._whole[1], True

    # ---- changes -----------------------------------------------------------------------------------------

    def changing(self) -> None:
        """A transaction is about to run: the shared whole-document step 2 is stale after it."""
        self._changes += 1

    def state_vector(self) -> dict[int, int]:
        """The Doc's state vector, decoded. Cached: decoding it for every update would cost a pass over every
        client that ever wrote to the workspace (docs/performance.md#state-vector-cache)."""
        if self._sv is None:
            self._sv = decode_state_vector(self.doc.get_state())
        return self._sv

    def forget_state_vector(self) -> None:
        """Decode it again when next needed (to confirm a refusal against the Doc's own)."""
        self._sv = None

    def advance(self, delta: bytes, reached: dict[int, int] | None = None) -> None:
        """Keep the cached state vector current after a change whose new part is ``delta`` (``reached``: its end
        clocks, when known already)."""
        sv = self._sv
        if sv is None or delta == EMPTY_UPDATE:
            return
        if reached is None:
            try:
                reached = update_end_clocks(delta)
            except ProtocolError:
                self._sv = None  # decoded again when next needed
                return
        for client, clock in reached.items():
            if clock > sv.get(client, 0):
                sv[client] = clock

    async def check_dependencies(self, update: bytes) -> dict[int, int] | None:
        """Refuse a client's update with missing dependencies (``MissingDependencies``) before it is applied;
        returns the clock each of its clients reaches (None if its encoding is one this decoder does not know).
        Checked against the cached state vector; a refusal is confirmed against the Doc's own, so that a stale
        cache can never refuse a valid update."""
        for attempt in range(2):
            try:
                state = self.state_vector()
                if len(update) > CHECK_IN_THREAD_BYTES:
                    # A copy: updates from other nodes are applied meanwhile (they only add to it, so what
                    # passes here still passes after).
                    problem, reached = await asyncio.to_thread(check_update, update, dict(state))
                else:
                    problem, reached = check_update(update, state)
            except UnknownStruct:
                return None  # an encoding this decoder does not know: yrs decides
            except ProtocolError as exc:
                raise InvalidUpdate(f"update cannot be decoded: {exc}") from exc
            except Exception:
                log.exception("dependency check failed in %s; left to yrs", self.workspace_id)
                return None
            if problem is None:
                return reached
            if attempt == 0:
                self._sv = None
        metrics.UPDATES_DROPPED.labels("missing_dependencies").inc()
        raise MissingDependencies(problem)

    def reaches(self, reached: dict[int, int]) -> bool:
        """Every client's clock is at least what ``reached`` says (confirmed against the Doc's own state vector
        before answering no)."""
        for attempt in range(2):
            sv = self.state_vector()
            if all(sv.get(client, 0) >= clock for client, clock in reached.items()):
                return True
            if attempt == 0:
                self._sv = None
        return False
