"""The bounds a room enforces, taken from the settings once per node (rooms do not read the settings)."""

from __future__ import annotations

from dataclasses import dataclass

from persistence.settings import Settings


@dataclass(frozen=True, slots=True)
class RoomLimits:
    max_document_bytes: int  # the document size quota (snapshot + log tail)
    send_queue_max_bytes: int  # a step 2 diff above half of it is answered with the shared whole document
    max_awareness_bytes: int
    max_awareness_per_second: float
    max_awareness_clients_per_socket: int
    max_awareness_room_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RoomLimits:
        return cls(
            max_document_bytes=settings.quota_max_document_bytes,
            send_queue_max_bytes=settings.send_queue_max_bytes,
            max_awareness_bytes=settings.max_awareness_bytes,
            max_awareness_per_second=settings.max_awareness_per_second,
            max_awareness_clients_per_socket=settings.max_awareness_clients_per_socket,
            max_awareness_room_bytes=settings.max_awareness_room_bytes,
        )
