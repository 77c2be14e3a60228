"""Server-sent events framing, incremental and allocation-light.

``SSEParser.feed(chunk)`` takes raw bytes as they arrive from the network and
returns the complete events seen so far as ``(event, data)`` pairs (``event`` is
``None`` when the event has no ``event:`` line; several ``data:`` lines are
joined with newlines, as the SSE spec says).  Partial events stay buffered until
their blank line arrives, so a line longer than any read buffer is fine.
"""

from __future__ import annotations


class SSEParser:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[tuple[str | None, bytes]] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            if block:
                ev = parse_block(block)
                if ev is not None:
                    events.append(ev)
        self._buf = buf[start:]
        return events

    def flush(self) -> list[tuple[str | None, bytes]]:
        """Events left without a final blank line when the stream ends."""
        rest, self._buf = self._buf.strip(b"\n"), b""
        if not rest:
            return []
        ev = parse_block(rest)
        return [ev] if ev is not None else []


def parse_block(block: bytes) -> tuple[str | None, bytes] | None:
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # ':' comment / keep-alive
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode()
    if not data and event is None:
        return None
    return event, b"\n".join(data)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
