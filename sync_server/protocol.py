"""The y-websocket wire format, decoded strictly.

Encoding uses pycrdt's own helpers. Decoding is written here because pycrdt's ``Decoder`` does not check
bounds (a declared length past the end silently yields a short slice); every read below raises
``ProtocolError`` on truncated or oversized input instead, so a malformed frame closes only its socket.
"""

from __future__ import annotations

import json
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
        raw = r.var_string()
        try:
            state = json.loads(raw)
        except ValueError as exc:
            raise ProtocolError("awareness state is not JSON") from exc
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
