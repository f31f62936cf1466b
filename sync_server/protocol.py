"""The y-websocket wire format, decoded strictly.

Encoding uses pycrdt's own helpers. Decoding is written here because pycrdt's ``Decoder`` does not check
bounds (a declared length past the end silently yields a short slice); every read below raises
``ProtocolError`` on truncated or oversized input instead, so a malformed frame closes only its socket.
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from pycrdt import write_var_uint

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

EMPTY_UPDATE = b"\x00\x00"
EMPTY_STATE_VECTOR = b"\x00"


def sync_step2(update: bytes) -> bytes:
    """A sync step 2 message, built with one copy of ``update`` (pycrdt's ``create_sync_step2_message`` makes
    two). Step 2 of a large workspace is megabytes, and on a VM each fresh megabyte costs page faults."""
    return b"".join((bytes((MSG_SYNC, SYNC_STEP2)), write_var_uint(len(update)), update))


class ProtocolError(ValueError):
    """A frame that does not follow the protocol."""


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def var_uint(self) -> int:
        num = 0
        shift = 0
        while True:
            if self.pos >= len(self.data):
                raise ProtocolError("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            num |= (byte & 0x7F) << shift
            if byte < 0x80:
                return num
            shift += 7
            if shift > 63:
                raise ProtocolError("varint too long")

    def var_bytes(self) -> bytes:
        n = self.var_uint()
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError("declared length past the end of the frame")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def var_string(self) -> str:
        try:
            return self.var_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid utf-8") from exc

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


@dataclass(frozen=True)
class Message:
    type: int
    sync_type: int = -1
    payload: bytes = b""


def parse_message(data: bytes) -> Message:
    """Split one frame into its type and payload; raises ProtocolError for anything malformed."""
    r = Reader(data)
    msg_type = r.var_uint()
    if msg_type == MSG_SYNC:
        sync_type = r.var_uint()
        if sync_type not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
            raise ProtocolError(f"unknown sync message type {sync_type}")
        return Message(msg_type, sync_type, r.var_bytes())
    if msg_type == MSG_AWARENESS:
        return Message(msg_type, payload=r.var_bytes())
    if msg_type == MSG_QUERY_AWARENESS:
        return Message(msg_type)
    if msg_type == MSG_AUTH:
        return Message(msg_type, payload=data[r.pos :])
    raise ProtocolError(f"unknown message type {msg_type}")


@dataclass(frozen=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: dict[str, Any] | None  # None is the "gone" state (JSON null)


def parse_awareness(payload: bytes) -> list[AwarenessEntry]:
    """Decode an awareness update (the payload of a type-1 message)."""
    r = Reader(payload)
    count = r.var_uint()
    if count > 10_000:
        raise ProtocolError("too many awareness entries")
    entries = []
    for _ in range(count):
        client_id = r.var_uint()
        clock = r.var_uint()
        state = _loads_state(r.var_string())
        if state is not None and not isinstance(state, dict):
            raise ProtocolError("awareness state must be an object or null")
        entries.append(AwarenessEntry(client_id, clock, state))
    if not r.at_end():
        raise ProtocolError("trailing bytes after awareness update")
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    """Encode entries as an awareness update payload (without the message-type prefix)."""
    out = [write_var_uint(len(entries))]
    for e in entries:
        state = json.dumps(e.state, separators=(",", ":")).encode()
        out += [write_var_uint(e.client_id), write_var_uint(e.clock), write_var_uint(len(state)), state]
    return b"".join(out)


# ---- awareness states: strict JSON ----------------------------------------------------------------------

MAX_AWARENESS_DEPTH = 32  # a cursor of y-prosemirror is 5 deep; yjs clients parse every state they get


def _refuse_constant(name: str) -> Any:
    raise ProtocolError(f"awareness state contains {name}, which is not JSON")


def _loads_state(raw: str) -> Any:
    """JSON as JavaScript's ``JSON.parse`` reads it: Python's ``json`` also takes NaN and ±Infinity, and would
    write them back out, so every peer's ``JSON.parse`` fails and drops all the states of that message."""
    try:
        state = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise ProtocolError("awareness state nested too deep") from exc
    except ValueError as exc:
        raise ProtocolError("awareness state is not JSON") from exc
    if _depth_exceeds(state, MAX_AWARENESS_DEPTH):
        raise ProtocolError("awareness state nested too deep")
    return state


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iteratively (a recursive walk, or ``json.dumps``, would hit Python's recursion limit first)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        if depth > limit:
            return True
        stack.extend((item, depth + 1) for item in v if isinstance(item, dict | list))
    return False


# ---- Yjs v1 updates: dependencies ----------------------------------------------------------
#
# The struct encoding of lib0/yjs (UpdateDecoderV1, readClientsStructRefs, readItemContent), which yrs writes
# too. Only what is needed to find where each struct ends, its clock length and the ids it refers to.

_CONTENT_STRING = 4
_STRUCT_GC = 0
_STRUCT_SKIP = 10
_XML_ELEMENT_OR_HOOK = (3, 5)  # type refs followed by a name


class UnknownStruct(ProtocolError):
    """A struct or content kind this decoder does not know (a yrs extension): the caller falls back."""


def decode_state_vector(sv: bytes) -> dict[int, int]:
    r = Reader(sv)
    out = {}
    for _ in range(r.var_uint()):
        client = r.var_uint()
        out[client] = r.var_uint()
    return out


def shares_state(sv: bytes, state: dict[int, int]) -> bool:
    """Whether the state vector ``sv`` has anything of a document whose state vector is ``state`` (stops at the
    first client it shares: a client's state vector may list thousands)."""
    r = Reader(sv)
    for _ in range(r.var_uint()):
        client = r.var_uint()
        if min(r.var_uint(), state.get(client, 0)):
            return True
    return False


def _skip_var_int(r: Reader) -> None:
    while True:
        if r.pos >= len(r.data):
            raise ProtocolError("truncated varint")
        byte = r.data[r.pos]
        r.pos += 1
        if byte < 0x80:
            return


def _skip(r: Reader, n: int) -> None:
    if r.pos + n > len(r.data):
        raise ProtocolError("truncated update")
    r.pos += n


def _skip_bytes(r: Reader) -> None:
    _skip(r, r.var_uint())


def _skip_any(r: Reader) -> None:
    """lib0's ``readAny``, iteratively (nesting is attacker-controlled)."""
    left = [1]  # values still to read at each nesting level
    keyed = [False]  # ... and whether each is preceded by a key (object entries)
    while left:
        if left[-1] == 0:
            left.pop()
            keyed.pop()
            continue
        left[-1] -= 1
        if keyed[-1]:
            _skip_bytes(r)
        _skip(r, 1)
        tag = r.data[r.pos - 1]
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            pass
        elif tag == 125:
            _skip_var_int(r)
        elif tag == 124:
            _skip(r, 4)
        elif tag in (123, 122):
            _skip(r, 8)
        elif tag in (119, 116):  # string, bytes
            _skip_bytes(r)
        elif tag in (118, 117):  # object, array
            left.append(r.var_uint())
            keyed.append(tag == 118)
        else:
            raise ProtocolError(f"unknown value tag {tag}")


def _struct(r: Reader, refs: list[tuple[int, int]] | None) -> tuple[int, bool]:
    """Read one struct; returns its clock length and whether it is a Skip. The ids it refers to (origins,
    parent) are appended to ``refs``."""
    _skip(r, 1)
    info = r.data[r.pos - 1]
    kind = info & 0x1F
    if kind == _STRUCT_GC:
        return r.var_uint(), False
    if kind == _STRUCT_SKIP:
        return r.var_uint(), True
    ids = []
    if info & 0x80:
        ids.append((r.var_uint(), r.var_uint()))
    if info & 0x40:
        ids.append((r.var_uint(), r.var_uint()))
    if not info & 0xC0:
        if r.var_uint() == 1:
            _skip_bytes(r)  # a root type's name
        else:
            ids.append((r.var_uint(), r.var_uint()))
        if info & 0x20:
            _skip_bytes(r)  # parentSub (map key)
    if refs is not None:
        refs.extend(ids)
    if kind == _CONTENT_STRING:
        n = r.var_uint()
        end = r.pos + n
        if end > len(r.data):
            raise ProtocolError("truncated update")
        text = r.data[r.pos : end]
        r.pos = end
        if text.isascii():
            return n, False
        try:
            return len(text.decode("utf-8", "surrogatepass").encode("utf-16-le", "surrogatepass")) // 2, False
        except UnicodeError as exc:
            raise ProtocolError("invalid utf-8 in a string") from exc
    if kind == 1:  # deleted
        return r.var_uint(), False
    if kind == 2:  # JSON
        n = r.var_uint()
        for _ in range(n):
            _skip_bytes(r)
        return n, False
    if kind == 3:  # binary
        _skip_bytes(r)
        return 1, False
    if kind == 5:  # embed
        _skip_bytes(r)
        return 1, False
    if kind == 6:  # format: key, value
        _skip_bytes(r)
        _skip_bytes(r)
        return 1, False
    if kind == 7:  # type
        ref = r.var_uint()
        if ref in _XML_ELEMENT_OR_HOOK:
            _skip_bytes(r)
        elif ref > 6:
            raise UnknownStruct(f"type ref {ref}")
        return 1, False
    if kind == 8:  # any
        n = r.var_uint()
        for _ in range(n):
            _skip_any(r)
        return n, False
    if kind == 9:  # subdocument: guid, options
        _skip_bytes(r)
        _skip_any(r)
        return 1, False
    raise UnknownStruct(f"content kind {kind}")


class _Overlay(dict[int, int]):
    """Clocks reached so far: what was set here, else ``base``'s."""

    __slots__ = ("base",)

    def __init__(self, base: dict[int, int]) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, client: int) -> int:
        return self.base.get(client, 0)

    def get(self, client: int, default: Any = 0) -> Any:
        return self[client]


class _Section:
    """One client's structs in an update, as the integration walks them."""

    __slots__ = ("client", "clock", "next", "structs")

    def __init__(self, client: int, clock: int, structs: list[tuple[int, bool, list[tuple[int, int]]]]):
        self.client = client
        self.clock = clock  # clock of structs[next]
        self.next = 0
        self.structs = structs  # (clock length, is a skip, ids it refers to)


def _integrate(update: bytes, state: dict[int, int]) -> tuple[str | None, int, dict[int, int]]:
    """Walk ``update``'s structs in an order in which each one's dependencies come first, as yrs and Yjs
    integrate them, on clocks only: a struct goes in once its client reached its clock and every id it refers
    to exists (in ``state`` or earlier in the walk). Returns why some structs cannot go in (None if all can),
    the offset of the delete set, and the state vector after. Raises ``UnknownStruct`` for encodings this
    decoder does not know, ``ProtocolError`` for undecodable input."""
    r = Reader(update)
    sections = []
    for _ in range(r.var_uint()):
        count = r.var_uint()
        client = r.var_uint()
        clock = r.var_uint()
        structs = []
        for _ in range(count):
            refs: list[tuple[int, int]] = []
            length, skip = _struct(r, refs)
            structs.append((length, skip, refs))
        sections.append(_Section(client, clock, structs))
    delete_set = r.pos
    have = _Overlay(state)  # not a copy: a state vector may have thousands of clients
    waiting: dict[int, list[tuple[int, int]]] = {}  # client -> heap of (clock it must pass, section index)
    ready = deque(range(len(sections)))
    while ready:
        index = ready.popleft()
        section = sections[index]
        client, first = section.client, section.next
        blocked: tuple[int, int] | None = None
        while section.next < len(section.structs):
            length, skip, refs = section.structs[section.next]
            reached = have.get(client, 0)
            if section.clock > reached:
                blocked = (client, section.clock - 1)  # a gap: waits for the client's earlier clocks
            elif skip:
                if section.clock + length > reached:
                    blocked = (client, section.clock + length - 1)  # a skip stands for clocks that must exist
            else:
                for ref in refs:
                    if ref[1] >= have.get(ref[0], 0):
                        blocked = ref
                        break
                else:
                    have[client] = max(reached, section.clock + length)
            if blocked is not None:
                break
            section.next += 1
            section.clock += length
        if section.next > first:
            queue = waiting.get(client)
            while queue and queue[0][0] < have.get(client, 0):
                ready.append(heapq.heappop(queue)[1])
        if blocked is not None:
            heapq.heappush(waiting.setdefault(blocked[0], []), (blocked[1], index))
    for section in sections:
        if section.next < len(section.structs):
            problem = f"client {section.client}'s struct at clock {section.clock} depends on structs that do not exist"
            return problem, delete_set, have
    return None, delete_set, have


def check_update(update: bytes, state: dict[int, int]) -> tuple[str | None, dict[int, int]]:
    """Why ``update`` cannot be integrated into a document whose state vector is ``state`` (a gap in a client's
    clocks, an origin or parent that does not exist, references that go in a circle, a deletion of unknown
    items), or None if it can; and the clock each client it has structs of reaches once it is integrated.

    yrs keeps such structs as *pending*, outside the document and its state vector, until the missing ones
    arrive; nothing would count or ever free them. A client cannot send them legitimately: it only knows what
    it made (and sent, in order) or received from the server."""
    problem, delete_set, have = _integrate(update, state)
    reached = dict(have)  # only the overlay's own entries: the clients the update moves on
    if problem is not None:
        return problem, reached
    r = Reader(update)
    r.pos = delete_set
    for _ in range(r.var_uint()):
        client = r.var_uint()
        for _ in range(r.var_uint()):
            clock = r.var_uint()
            length = r.var_uint()
            if clock + length > have.get(client, 0):
                return f"deletes {client}:{clock}+{length}, which does not exist", reached
    if not r.at_end():
        raise ProtocolError("trailing bytes after the update")
    return None, reached


def missing_dependencies(update: bytes, state: dict[int, int]) -> str | None:
    """``check_update``'s verdict alone."""
    return check_update(update, state)[0]


def update_end_clocks(update: bytes) -> dict[int, int]:
    """The clock each client section of ``update`` ends at. (pycrdt's ``get_state(update)`` is no substitute:
    it leaves out every client whose structs do not start at clock 0, i.e. those of any incremental update.)"""
    r = Reader(update)
    out: dict[int, int] = {}
    for _ in range(r.var_uint()):
        count = r.var_uint()
        client = r.var_uint()
        clock = r.var_uint()
        for _ in range(count):
            clock += _struct(r, None)[0]
        if clock > out.get(client, 0):
            out[client] = clock
    return out
