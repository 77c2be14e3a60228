"""uvicorn's HTTP protocol (httptools), with a whole non-streamed answer written in one system call.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and the
body when it sends ``http.response.body``: two ``write`` calls, and with ``TCP_NODELAY`` two TCP segments
for every answer, each costing a ``send`` here and a wake-up at the client.  This protocol holds a header
block that announces a ``content-length`` (a whole answer: its body follows in the same event-loop step)
and writes it together with the next write, so such an answer leaves in one segment.  Streams (chunked,
no ``content-length``) are written as before, headers at once.  Anything else uvicorn does with the
transport (close, set_protocol) and the end of every answer (a HEAD answer has no body write) first
write what is held.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_LINE = b"HTTP/1.1 "
_LENGTH = b"\r\ncontent-length: "


class CoalescingTransport:
    """The few transport methods uvicorn's protocol calls, with the held header block in front of the
    next write."""

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(_STATUS_LINE) and _LENGTH in data and data.endswith(b"\r\n\r\n"):
            self._held = data
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._transport.get_extra_info(name, default)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """``uvicorn.run(http=CoalescingHttpToolsProtocol)``: httptools parsing, one write per whole answer."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a HEAD answer: headers only, no body write
        super().on_response_complete()
