"""HTTP/1.1 to plain-``http://`` providers on the event loop itself (httptools' llhttp parser).

Local and in-cluster model servers (vLLM, Ollama, TGI, sidecars) are reached without TLS.  For them
this client keeps the whole exchange on the loop: pyreqwest hands each request to its own thread and
the answer back, two thread wake-ups per request that on a shared core also compete with the loop
(about 100 µs per request at one connection, docs/performance.md, session 12).  ``https://``
providers and providers behind a proxy stay on pyreqwest; ``client.Upstream`` chooses per URL.

What is ours is small: a pool of keep-alive connections per host, the request's bytes, the timeouts.
Parsing the answer (status line, headers, content-length and chunked bodies, keep-alive) is llhttp's,
the parser of Node.js, through httptools (which uvicorn uses for the server side).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections import deque
from collections.abc import Callable, ItemsView
from time import monotonic
from urllib.parse import urlsplit

import httptools

from ..errors import ResponseTooLarge, UpstreamTimeout, UpstreamUnreachable

IDLE_SECONDS = 60.0  # a pooled connection unused this long is closed rather than reused
PAUSE_AT = 1 << 20  # a stream's unread bytes above which the socket is not read (flow control)
MAX_HEAD = 256 * 1024  # bytes of status line and headers accepted in one answer
JOIN_UNDER = 64 * 1024  # a request body under this size is sent in one buffer with its headers


def direct_hosts() -> Callable[[str], bool] | None:
    """None without ``http_proxy``; else the test of ``no_proxy`` (hosts reached without the proxy).
    pyreqwest reads the same variables, so a provider behind the proxy goes through it."""
    if "http" not in urllib.request.getproxies_environment():
        return None
    return lambda host: bool(urllib.request.proxy_bypass(host))


def timed_out() -> UpstreamTimeout:
    return UpstreamTimeout("the provider did not answer in time")


def unreachable() -> UpstreamUnreachable:
    return UpstreamUnreachable("the provider could not be reached")


def broken() -> UpstreamUnreachable:
    """The connection failed after it was made (both clients say the same three things)."""
    return UpstreamUnreachable("the connection to the provider failed")


class RawHeaders:
    """An answer's header lines as they came; ``items()`` decodes them (names lower-cased, repeated
    names joined with ", ").  A successful answer's headers are rarely read: no work until then."""

    __slots__ = ("names", "values")

    def __init__(self, names: list[bytes], values: list[bytes]) -> None:
        self.names = names
        self.values = values

    def items(self) -> ItemsView[str, str]:
        out: dict[str, str] = {}
        for name, value in zip(self.names, self.values, strict=True):
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            out[key] = f"{out[key]}, {text}" if key in out else text
        return out.items()


class Dropped(Exception):
    """The connection ended before the answer did."""


class Connection(asyncio.Protocol):
    """One keep-alive connection to a provider; one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.used = False  # carried an earlier exchange: a failure before any answer may be retried
        self.closed = False
        self.counted = True  # still counted in the pool's open connections
        self.waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.busy = False  # an exchange is on: bytes arriving otherwise are a fault of the provider
        self.status = 0
        self.names: list[bytes] = []
        self.values: list[bytes] = []
        self.head_size = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.limit: int | None = None
        self.streaming = False
        self.answered = False  # a byte of the answer arrived
        self.head_done = False
        self.keep_alive = False
        self.delimited = True  # the body's end is known without the connection's end
        self.complete = False
        self.paused = False
        self.error: BaseException | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # nothing was asked: this connection cannot be trusted with a request
            self._fail(Dropped("the provider sent bytes nobody asked for"))
            return
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Dropped("the provider switched protocols"))
        except httptools.HttpParserError:
            self._fail(Dropped("the provider's answer is not valid HTTP"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and not self.delimited and self.error is None and not self.complete:
            self.complete = True  # an answer whose body ends with the connection
            self._wake()
        elif not self.complete:
            self._fail(Dropped("the provider closed the connection"))
        self.pool.forget(self)

    # -- the parser's callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # more than the one answer: the connection is not reused
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD:
            self._fail(Dropped("the provider's answer has too many headers"))
            return
        self.names.append(name)
        self.values.append(value)

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103): the real one follows
            self.names.clear()
            self.values.clear()
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message completes
        if not self.keep_alive:
            self.delimited = any(n.lower() in (b"content-length", b"transfer-encoding") for n in self.names)
        if self.streaming:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.size += len(body)
        if self.streaming:
            self.parts.append(body)
            if self.size > PAUSE_AT and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
            self._wake()
        elif self.limit is not None and self.size > self.limit:
            self._fail(ResponseTooLarge(""))
        else:
            self.parts.append(body)

    def on_message_complete(self) -> None:
        if self.head_done and not self.complete:
            self.complete = True
            self._wake()

    # -- the exchange

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._wake()
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()

    def time_out(self) -> None:
        self._fail(timed_out())

    async def wait(self) -> None:
        """Until the parser has news (raises what failed the connection)."""
        if self.error is None:
            waiter = self.waiter = self.pool.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        if self.error is not None:
            raise self.error

    async def wait_idle(self, seconds: float) -> None:
        """``wait``, failing with a timeout after ``seconds`` without news (a stream's idle limit)."""
        timer = self.pool.loop.call_later(seconds, self.time_out)
        try:
            await self.wait()
        finally:
            timer.cancel()

    def headers(self) -> RawHeaders:
        """The answer's headers as received, decoded only if read (``_reset`` starts new lists)."""
        return RawHeaders(self.names, self.values)

    def body(self) -> bytes:
        parts = self.parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def take(self) -> bytes | None:
        """A stream's bytes that arrived since the last call, or None if none did."""
        if not self.parts:
            return None
        data = self.body()
        self.parts = []
        self.size = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def release(self) -> None:
        """After the exchange: back to the pool if the answer was read to its end and both sides keep
        the connection; closed otherwise (an answer left unread cannot be skipped)."""
        if self.closed or not self.complete or not self.keep_alive:
            self.close()
            return
        self._reset()
        self.used = True
        self.idle_since = monotonic()
        self.pool.put(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self.pool.forget(self)


class Pool:
    """The connections to one host and port: the idle ones (newest last) and a count of all."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, connect_timeout: float,
                 max_connections: int | None) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.idle: deque[Connection] = deque()
        self.open = 0
        self.queue: deque[asyncio.Future[None]] = deque()  # requests waiting for a connection

    async def acquire(self, fresh: bool, deadline: float) -> Connection:
        while True:
            if not fresh:
                while self.idle:
                    conn = self.idle.pop()
                    if not conn.closed and monotonic() - conn.idle_since < IDLE_SECONDS:
                        return conn
                    conn.close()
            if self.max_connections is None or self.open < self.max_connections:
                return await self._connect(min(self.connect_timeout, deadline - self.loop.time()))
            slot = self.loop.create_future()
            self.queue.append(slot)
            try:
                await asyncio.wait_for(slot, max(deadline - self.loop.time(), 0.0))
            except BaseException as exc:
                if slot.done() and not slot.cancelled():
                    self._notify()  # pass on the turn this request no longer takes
                if isinstance(exc, TimeoutError):
                    raise timed_out() from None
                raise

    async def _connect(self, timeout: float) -> Connection:
        self.open += 1
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: Connection(self), self.host, self.port), max(timeout, 0.0))
        except TimeoutError:
            self._freed()
            raise timed_out() from None
        except OSError:
            self._freed()
            raise unreachable() from None
        except BaseException:
            self._freed()
            raise
        return conn

    def put(self, conn: Connection) -> None:
        self.idle.append(conn)
        self._notify()

    def forget(self, conn: Connection) -> None:
        """A connection closed: out of the idle ones and the count."""
        if conn.counted:
            conn.counted = False
            try:
                self.idle.remove(conn)
            except ValueError:
                pass
            self._freed()

    def _freed(self) -> None:
        self.open -= 1
        self._notify()

    def _notify(self) -> None:
        while self.queue:
            slot = self.queue.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class Target:
    """Where one URL goes: its host's pool and the first lines of a request to it; ``exchange`` sends one."""

    __slots__ = ("get", "pool", "post")

    def __init__(self, pool: Pool, path: str, host: str) -> None:
        self.pool = pool
        self.post = f"POST {path} HTTP/1.1\r\nhost: {host}\r\n"
        self.get = f"GET {path} HTTP/1.1\r\nhost: {host}\r\n"

    async def exchange(self, head: str, headers: dict[str, str], body: bytes | None,
                       timeout: float, limit: int | None, streaming: bool) -> Connection:
        """Send one request; return its connection once the answer is whole (streaming: once its
        head arrived).  ``timeout`` bounds all of it.  A request that failed on a reused connection
        before any answer came is sent once more on a new connection: the provider had closed the idle
        connection while the request was on its way."""
        lines = [head]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n" if body is None else f"content-length: {len(body)}\r\n\r\n")
        text = "".join(lines)
        breaks = len(headers) + (3 if body is None else 4)  # one per line, and the blank line
        if text.count("\n") != breaks or text.count("\r") != breaks:
            raise UpstreamUnreachable("a header of the request to the provider holds a line break")
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            raise UpstreamUnreachable("a header of the request to the provider is not Latin-1") from None
        large = body is not None and len(body) >= JOIN_UNDER
        if body and not large:
            data += body
        pool = self.pool
        loop = pool.loop
        deadline = loop.time() + timeout
        fresh = False
        while True:
            conn = await pool.acquire(fresh, deadline)
            conn.busy = True
            conn.limit = limit
            conn.streaming = streaming
            timer = loop.call_at(deadline, conn.time_out)
            try:
                transport = conn.transport
                assert transport is not None
                if large:
                    transport.writelines((data, body))  # type: ignore[arg-type]
                else:
                    transport.write(data)
                while not (conn.head_done if streaming else conn.complete):
                    await conn.wait()
            except Dropped:
                conn.close()
                if conn.used and not conn.answered and not fresh:
                    fresh = True
                    continue
                raise broken() from None
            except BaseException:
                conn.close()
                raise
            finally:
                timer.cancel()
            return conn


class PlainClient:
    """The pools of ``http://`` providers; ``target`` says whether a URL is one (else pyreqwest takes it)."""

    def __init__(self, connect_timeout: float, max_connections: int | None,
                 direct: Callable[[str], bool] | None) -> None:
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.direct = direct  # None: no proxy configured; else True for the hosts reached without it
        self.pools: dict[tuple[str, int], Pool] = {}
        self.targets: dict[str, Target | None] = {}

    def target(self, url: str) -> Target | None:
        """Where ``url`` goes, or None when it is not plain HTTP (or goes through a proxy)."""
        try:
            return self.targets[url]
        except KeyError:
            pass
        result = None
        if url[:7].lower() == "http://":
            try:
                parts = urlsplit(url)
                host, port = parts.hostname, parts.port or 80
            except ValueError:  # a port out of range: pyreqwest refuses it in its own words
                host = None
            if host and (self.direct is None or self.direct(host)):
                pool = self.pools.get((host, port))
                if pool is None:
                    pool = self.pools[(host, port)] = Pool(
                        asyncio.get_running_loop(), host, port, self.connect_timeout, self.max_connections)
                path = parts.path or "/"
                if parts.query:
                    path = f"{path}?{parts.query}"
                result = Target(pool, path, parts.netloc.rpartition("@")[2])
        if len(self.targets) < 1024:  # URLs come from the configuration: a few per deployment
            self.targets[url] = result
        return result

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
        self.targets.clear()
