"""The counters service's wire format: length-prefixed orjson frames over a Unix socket.

A frame is a 4-byte big-endian length followed by that many bytes of JSON (an array).

Worker -> service (answered in order, one reply per request, except ``PUBLISH``):

    [ADMIT, request_id, lease, items]             -> [REPLY, ok, failed, values, reset, window]
    [SETTLE, request_id, window, delta, cost, items] -> [REPLY]
    [FORGET, keys]                                -> [REPLY]
    [RESET, key, value]                           -> [REPLY]
    [PUBLISH, message]                            (no reply: sent to every other connection)

Service -> worker, between replies: ``[EVENT, message]`` (a message another worker published:
key-cache invalidations, cooldowns).

An item is ``[kind, key, limit, amount, tokens]`` (``tokens``: 1 for a token window).
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

from .counters import Item

ADMIT, SETTLE, FORGET, PUBLISH, RESET = 1, 2, 3, 4, 5
REPLY, EVENT = 0, 1
HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20


def frame(message: Any) -> bytes:
    data = orjson.dumps(message)
    return HEADER.pack(len(data)) + data


def encode_items(items: list[Item]) -> list[list[Any]]:
    return [[it.kind, it.key, it.limit, it.amount, 1 if it.header == "tokens" else 0] for it in items]


def decode_items(raw: list[list[Any]]) -> list[Item]:
    return [Item(kind, key, limit, amount, "", "tokens" if tokens else None)
            for kind, key, limit, amount, tokens in raw]


class FrameBuffer:
    """Collects bytes; yields every complete frame's decoded message."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        buf += data
        out: list[Any] = []
        start = 0
        end = len(buf)
        while end - start >= 4:
            (size,) = HEADER.unpack_from(buf, start)
            if size > MAX_FRAME:
                raise ValueError(f"counters frame of {size} bytes")
            if end - start - 4 < size:
                break
            out.append(orjson.loads(buf[start + 4 : start + 4 + size]))
            start += 4 + size
        if start:
            del buf[:start]
        return out
