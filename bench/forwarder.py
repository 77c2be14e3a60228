"""The bench's ``forwarder`` column: the floor for a Python proxy on this machine.

A raw ASGI app on uvicorn (uvloop + httptools, one worker, same core as the gateways) that
forwards each POST body to the nginx upstream with pyreqwest (the client Lockgate uses, same
settings) and answers with the upstream's bytes, streamed chunk by chunk for ``"stream": true``.
No authentication, routing, accounting or logging: what Lockgate adds on top of this column is
the cost of its features.  ``FORWARDER_UPSTREAM`` is the nginx base URL.
"""

from __future__ import annotations

import os
from datetime import timedelta

import orjson
from pyreqwest.client import ClientBuilder

UPSTREAM = os.environ.get("FORWARDER_UPSTREAM", "http://127.0.0.1:8080")
TIMEOUT = timedelta(seconds=60)
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_client = None


async def app(scope, receive, send):  # noqa: ANN001, ANN201
    global _client
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _client = ClientBuilder().tcp_nodelay(True).gzip(False).build()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _client.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] == "GET":  # /health/liveliness for the bench's readiness check
        await send({"type": "http.response.start", "status": 200, "headers": JSON})
        await send({"type": "http.response.body", "body": b'"ok"'})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if orjson.loads(body).get("stream"):
        request = (_client.post(UPSTREAM + "/stream" + scope["path"]).headers({"content-type": "application/json"})
                   .body_bytes(body).streamed_read_buffer_limit(1).build_streamed())
        async with request as resp:
            await send({"type": "http.response.start", "status": resp.status, "headers": SSE})
            while (chunk := await resp.body_reader.read_chunk()) is not None:
                await send({"type": "http.response.body", "body": chunk.to_bytes(), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        return
    request = (_client.post(UPSTREAM + scope["path"]).headers({"content-type": "application/json"})
               .body_bytes(body).timeout(TIMEOUT).build())
    resp = await request.send()
    data = await resp.bytes()
    await send({"type": "http.response.start", "status": resp.status, "headers": JSON})
    await send({"type": "http.response.body", "body": data.to_bytes()})
