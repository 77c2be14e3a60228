"""uvicorn's HTTP protocol (httptools) with a leaner request/response cycle.

uvicorn keeps the connection handling (keep-alive, pipelining, upgrades, flow control, graceful shutdown,
``--workers N``); this module replaces the part that runs for every request, measured on a trivial app at
~30 µs of CPU per request under uvicorn against ~14 µs for a bare httptools protocol (docs/performance.md):

* **One write per whole answer.**  uvicorn writes the status line and headers at ``http.response.start`` and
  the body at ``http.response.body``: two ``write`` calls, two TCP segments with ``TCP_NODELAY``.  Here a
  header block that announces a ``content-length`` is held and written with the body.  Streams (chunked) get
  their headers at once, as before.
* **No ``asyncio.Event`` per request.**  The body usually arrives with the headers, before the app's first
  ``receive()``: a flag says so and ``receive()`` returns without waiting; a future is made only when the app
  really has to wait (a large body, or a stream's watch for the client's disconnect).
* **Two header checks per answer, not two per header.**  uvicorn searches every name and every value with a
  regular expression; a forbidden byte in any one of them is one in their concatenation, so the names are
  checked joined, and so are the values (same expressions, same ``RuntimeError``).

Everything else (``Expect: 100-continue``, HEAD, 204/304, ``connection: close``, content-length checks, the
500 answer of an app that failed before answering, ``http.disconnect`` after the answer or the client's
going) behaves as uvicorn's ``RequestResponseCycle`` does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl, service_unavailable
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE, HttpToolsProtocol

Message = dict[str, Any]
App = Callable[..., Any]

_SPECIAL = frozenset((b"content-length", b"transfer-encoding", b"connection"))
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ERROR_500 = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"), (b"connection", b"close")]


class Cycle:
    """One request and its answer on a connection (uvicorn's ``RequestResponseCycle``, leaner)."""

    __slots__ = ("chunked_encoding", "chunks", "default_headers", "disconnected", "expected_content_length", "flow",
                 "head", "held", "keep_alive", "logger", "more_body", "on_response", "ready", "response_complete",
                 "response_started", "scope", "size", "transport", "waiter", "waiting_for_100_continue")

    def __init__(self, scope: Message, transport: asyncio.Transport, flow: FlowControl, logger: logging.Logger,
                 default_headers: list[tuple[bytes, bytes]], expect_100_continue: bool, keep_alive: bool,
                 on_response: Callable[[], None]) -> None:
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.logger = logger
        self.default_headers = default_headers
        self.on_response = on_response
        self.head = scope["method"] == "HEAD"
        self.disconnected = False
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.chunks: list[bytes] = []  # request body received and not yet given to the app
        self.size = 0
        self.more_body = True
        self.ready = False  # something arrived (body, end, disconnect) since the app's last receive()
        self.waiter: asyncio.Future[None] | None = None
        self.response_started = False
        self.response_complete = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0
        self.held: bytes | None = None  # a whole answer's header block, written with its body

    # -- from the protocol
    def wake(self) -> None:
        self.ready = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, body: bytes) -> None:
        self.chunks.append(body)
        self.size += len(body)
        if self.size > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        self.wake()

    async def run_asgi(self, app: App) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                self.transport.close()
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                self.logger.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            self.on_response = _nothing

    async def _send_500(self) -> None:
        await self.send({"type": "http.response.start", "status": 500, "headers": _ERROR_500})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error", "more_body": False})

    # -- the ASGI callables
    async def send(self, message: Message) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
            self._start(message["status"], message.get("headers", ()))
        elif not self.response_complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}' sent, after response already completed.")

    def _start(self, status: int, headers: Any) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        if not isinstance(headers, (list, tuple)):
            headers = list(headers)  # any iterable of pairs: read twice below
        if self.default_headers:
            headers = [*self.default_headers, *headers]
        if HEADER_RE.search(b"".join([h[0] for h in headers])):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join([h[1] for h in headers])):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status]]
        has_close = False
        for name, value in headers:
            name = name.lower()
            if name in _SPECIAL:
                if name == b"content-length":
                    if self.chunked_encoding is None:
                        self.expected_content_length = int(value.decode())
                        self.chunked_encoding = False
                elif name == b"transfer-encoding":
                    if value.lower() == b"chunked":
                        self.expected_content_length = 0
                        self.chunked_encoding = True
                elif b"close" in [token.lower().strip() for token in value.split(b",")]:
                    self.keep_alive = False
                    has_close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not has_close:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and not self.head and status not in (204, 304):
            self.chunked_encoding = True  # neither content-length nor transfer-encoding: chunked
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        block = b"".join(content)
        if self.chunked_encoding is False and self.expected_content_length and not self.head:
            self.held = block  # a whole answer: its body follows, in the same write
        else:
            self.transport.write(block)

    def _body(self, body: bytes, more_body: bool) -> None:
        if self.head:
            self.expected_content_length = 0
        elif self.chunked_encoding:
            content = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
            if not more_body:
                content.append(b"0\r\n\r\n")
            if content:
                self.transport.write(b"".join(content))
        else:
            size = len(body)
            if size > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= size
            held = self.held
            if held is not None:
                if body or not more_body:
                    self.held = None
                    self.transport.write(held + body)
            elif body:
                self.transport.write(body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.wake()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    async def receive(self) -> Message:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(_CONTINUE)
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            if not self.ready:
                self.waiter = asyncio.get_running_loop().create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            self.ready = False
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        chunks = self.chunks
        body = b"".join(chunks) if chunks else b""
        self.chunks = []
        self.size = 0
        return {"type": "http.request", "body": body, "more_body": self.more_body}


def _nothing() -> None:
    pass


class LeanHttpToolsProtocol(HttpToolsProtocol):
    """``uvicorn.run(http=LeanHttpToolsProtocol)``: uvicorn's connection handling, ``Cycle`` per request."""

    cycle: Cycle  # type: ignore[assignment]

    def _unsupported_upgrade_warning(self) -> None:
        # served with ws="none" (no WebSocket route; websockets is not even imported): the request is answered
        # as plain HTTP, and uvicorn's advice to install a WebSocket library would only mislead
        self.logger.debug("WebSocket upgrade not supported: answered as plain HTTP")

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.wake()
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None:
            self.transport.close()
            self._unset_keepalive_if_required()
        self.parser = None  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        parser = self.parser
        http_version = parser.get_http_version()
        scope: Message = self.scope  # type: ignore[assignment]
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root = self.root_path
        scope["path"] = root + path if root else path
        scope["raw_path"] = root.encode("ascii") + raw_path if root else raw_path
        scope["query_string"] = parsed_url.query or b""
        app = self.app
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        existing = self.cycle
        self.cycle = Cycle(scope, self.transport, self.flow, self.logger, self.server_state.default_headers,
                           self.expect_100_continue, http_version != "1.0" and parser.should_keep_alive(),
                           self.on_response_complete)
        if existing is None or existing.response_complete:
            self._start_asgi_task(self.cycle, app)
        else:  # pipelined requests wait for the answer before them
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, app))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: Cycle, app: App) -> None:  # type: ignore[override]
        if self.config.reset_contextvars:
            task = self.loop.create_task(cycle.run_asgi(app), context=contextvars.Context())
        else:
            task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.feed(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.more_body = False
        cycle.wake()
