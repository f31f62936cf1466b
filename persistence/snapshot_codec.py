"""How a snapshot's bytes are stored: compressed by Plait with lz4 on PostgreSQL, as they are on SQLite.

A joiner of a room that is not loaded waits for its snapshot to be read. On PostgreSQL a 5.2 MB snapshot
(s4's 10,000 tasks) crossed the socket whole after the server had decompressed it from TOAST (lz4, migration
0004): 5.3 ms in an idle process, 10.1 ms with ``plait serve``'s fixed mmap threshold, since every buffer it
passes through lands on fresh pages. Compressed by Plait (1.2 MB; the column is ``STORAGE EXTERNAL``, so
PostgreSQL stores it as it is) the same read and its decompression take 2.2 and 7.7 ms. SQLite reads a
snapshot from its memory map; there the decompression would only add time (0.8 → 1.2 ms), so it stores
snapshots as they are.

lz4 releases the GIL: large snapshots are (de)compressed on a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio

import lz4.block

LZ4 = "lz4"
OFF_LOOP_BYTES = 1 << 20  # below this a thread hop costs more than the work (5 MB: ~5 ms to compress, ~1 to expand)


def pack(data: bytes) -> tuple[bytes, str | None]:
    """(stored bytes, codec): lz4, or the data as it is (codec None) when that is not smaller."""
    packed = lz4.block.compress(data, store_size=True)
    return (packed, LZ4) if len(packed) < len(data) else (data, None)


def expand(data: bytes, codec: str | None) -> bytes:
    """The document's bytes from what ``pack`` stored."""
    if codec is None:
        return data
    if codec == LZ4:
        out: bytes = lz4.block.decompress(data)
        return out
    raise ValueError(f"unknown snapshot codec {codec!r}")


async def compress(data: bytes) -> tuple[bytes, str | None]:
    """``pack``, on a worker thread for large data."""
    if len(data) < OFF_LOOP_BYTES:
        return pack(data)
    return await asyncio.to_thread(pack, data)


async def decompress(data: bytes, codec: str | None) -> bytes:
    """``expand``, on a worker thread for large data."""
    if codec is None or len(data) < OFF_LOOP_BYTES // 4:
        return expand(data, codec)
    return await asyncio.to_thread(expand, data, codec)
