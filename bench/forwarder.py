"""The bench's ``forwarder`` column: the floor for a Python proxy on this machine.

A raw ASGI app on uvicorn (uvloop + httptools, one worker, same core as the gateways) that
forwards each POST body to the nginx upstream with Lockgate's own upstream client
(``lockgate.transport.client.Upstream``, default settings: plain-HTTP upstreams on the event loop
since session 12, pyreqwest before) and answers with the upstream's bytes, streamed chunk by chunk
for ``"stream": true``.  ``FORWARDER_PYREQWEST=1`` sends everything through pyreqwest, as before.
No authentication, routing, accounting or logging: what Lockgate adds on top of this column is
the cost of its features.  ``FORWARDER_UPSTREAM`` is the nginx base URL.
"""

from __future__ import annotations

import os

import orjson

from lockgate.transport.client import Upstream

UPSTREAM = os.environ.get("FORWARDER_UPSTREAM", "http://127.0.0.1:8080")
TIMEOUT = 60.0
HEADERS = {"content-type": "application/json"}
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_client = None


async def app(scope, receive, send):  # noqa: ANN001, ANN201
    global _client
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _client = Upstream(plain=os.environ.get("FORWARDER_PYREQWEST") != "1")
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
        async with _client.stream(UPSTREAM + "/stream" + scope["path"], HEADERS, body, TIMEOUT) as up:
            await send({"type": "http.response.start", "status": up.status, "headers": SSE})
            while (chunk := await up.read()) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        return
    reply = await _client.post(UPSTREAM + scope["path"], HEADERS, body, TIMEOUT)
    await send({"type": "http.response.start", "status": reply.status, "headers": JSON})
    await send({"type": "http.response.body", "body": reply.body})
