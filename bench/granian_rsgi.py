"""Lockgate's ASGI app behind Granian's RSGI interface: the bench's measurement of issue 16's lever
"measure both interfaces on Lockgate" (docs/performance.md, session 14).  Not part of the gateway.

    pip install granian
    LOCKGATE_CONFIG=gateway.yaml granian --interface rsgi --loop uvloop --runtime-mode st \
        --factory granian_rsgi:create_app  # with PYTHONPATH=bench

A thin adapter: the RSGI scope becomes an ASGI scope, the body is read in one call, a whole answer
goes out with one ``response_bytes`` and a streamed one through ``response_stream``.  The ASGI
lifespan runs in ``__rsgi_init__`` (Granian's own lifespan driver), before the first request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from granian.asgi import LifespanProtocol

from lockgate.app import create_app as create_asgi_app


class RSGIApp:
    def __init__(self) -> None:
        self.app = create_asgi_app()
        self.lifespan = LifespanProtocol(self.app)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.lifespan.startup())
        if self.lifespan.interrupt:
            raise RuntimeError("lifespan startup failed")

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.lifespan.shutdown())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        host, _, port = scope.server.rpartition(":")
        chost, _, cport = scope.client.rpartition(":")
        asgi_scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": scope.http_version,
            "method": scope.method, "scheme": scope.scheme, "path": scope.path, "raw_path": scope.path.encode(),
            "query_string": scope.query_string.encode(), "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in scope.headers.items()],
            "server": (host, int(port or 0)), "client": (chost, int(cport or 0)),
        }
        body = await protocol()
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            await protocol.client_disconnect()
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[str, str]] = []
        stream: Any = None

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers, stream
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = [(k.decode(), v.decode()) for k, v in message.get("headers", ())]
            elif kind == "http.response.body":
                data = message.get("body", b"")
                more = message.get("more_body", False)
                if stream is None and not more:
                    protocol.response_bytes(status, headers, data)
                    return
                if stream is None:
                    stream = protocol.response_stream(status, headers)
                if data:
                    await stream.send_bytes(data)

        await self.app(asgi_scope, receive, send)


def create_app() -> RSGIApp:
    return RSGIApp()
