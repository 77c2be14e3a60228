"""The pooled upstream HTTP client (pyreqwest: Rust hyper under a thin binding).

One ``Upstream`` per gateway process.  It maps transport failures to the
gateway's errors (unreachable -> 502, timed out -> 504) so nothing above it
sees a pyreqwest exception.  Streams are read chunk by chunk as they arrive
(``streamed_read_buffer_limit(1)``: no 64 KB batching) and closing the
``UpstreamStream`` closes the upstream connection at once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta

# pyreqwest allocates with mimalloc, which by default commits its arenas eagerly: ~7 MB more
# resident memory on the benchmark for no speed (measured; docs/performance.md).  Read by
# mimalloc when the extension loads, so it is set before the import; an operator's value wins.
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectError, PyreqwestError, RequestTimeoutError
from pyreqwest.response import ResponseBodyReader

from ..errors import ResponseTooLarge
from .plain import Connection, Dropped, PlainClient, RawHeaders, Target, broken, direct_hosts, timed_out, unreachable
from .scheduling import IOThreadPolicy


class _Headers:
    """The answer's headers as a dict, made on first use: a successful answer's are rarely read (only
    error answers and a few providers look at them), and copying them costs a few µs per request."""

    __slots__ = ("_dict", "_raw")

    def __init__(self, headers: Mapping[str, str] | RawHeaders) -> None:
        self._raw = headers
        self._dict: dict[str, str] | None = headers if isinstance(headers, dict) else None

    @property
    def headers(self) -> dict[str, str]:
        headers = self._dict
        if headers is None:
            headers = self._dict = dict(self._raw.items())
        return headers


class UpstreamReply(_Headers):
    __slots__ = ("body", "status")

    def __init__(self, status: int, headers: Mapping[str, str] | RawHeaders, body: bytes) -> None:
        super().__init__(headers)
        self.status = status
        self.body = body


class UpstreamStream(_Headers):
    """A streamed answer, read as it arrives (``ReqwestStream`` or ``PlainStream``)."""

    __slots__ = ("status",)

    def __init__(self, status: int, headers: Mapping[str, str] | RawHeaders) -> None:
        super().__init__(headers)
        self.status = status

    async def read(self) -> bytes | None:
        """The next chunk as it arrived, or None at the end of the body."""
        raise NotImplementedError

    async def read_all(self, limit: int | None = None) -> bytes:
        """The rest of the body; over ``limit`` bytes it is not read further (502)."""
        parts = []
        size = 0
        while (chunk := await self.read()) is not None:
            size += len(chunk)
            if limit is not None and size > limit:
                raise too_large(limit)
            parts.append(chunk)
        return b"".join(parts)


class ReqwestStream(UpstreamStream):
    __slots__ = ("_reader",)

    def __init__(self, status: int, headers: Mapping[str, str], reader: ResponseBodyReader) -> None:
        super().__init__(status, headers)
        self._reader = reader

    async def read(self) -> bytes | None:
        try:
            chunk = await self._reader.read_chunk()
        except PyreqwestError as exc:
            raise _map(exc) from None
        return None if chunk is None else chunk.to_bytes()


class PlainStream(UpstreamStream):
    """A streamed answer from a plain-HTTP provider (``plain.py``)."""

    __slots__ = ("_conn", "_idle")

    def __init__(self, conn: Connection, idle_timeout: float) -> None:
        super().__init__(conn.status, conn.headers())
        self._conn = conn
        self._idle = idle_timeout

    async def read(self) -> bytes | None:
        conn = self._conn
        while True:
            data = conn.take()
            if data is not None:
                return data
            if conn.complete:
                return None
            try:
                await conn.wait_idle(self._idle)
            except Dropped:
                raise broken() from None


class Upstream:
    def __init__(self, connect_timeout: float = 10.0, max_connections: int | None = None, batch_at: int = 0,
                 plain: bool = True) -> None:
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._clients: dict[float | None, Client] = {}
        self._timeouts: dict[float, timedelta] = {}
        self.policy = IOThreadPolicy(batch_at)  # the I/O thread's scheduling follows the load
        self.plain = PlainClient(connect_timeout, max_connections, direct_hosts()) if plain else None

    def _timeout(self, seconds: float) -> timedelta:
        """The same few timeouts every request: made once each (bounded: clients may ask for their own)."""
        value = self._timeouts.get(seconds)
        if value is None:
            value = timedelta(seconds=seconds)
            if len(self._timeouts) < 256:
                self._timeouts[seconds] = value
        return value

    def _client(self, read_timeout: float | None) -> Client:
        """One pooled client per stream idle timeout (reqwest sets it per client)."""
        client = self._clients.get(read_timeout)
        if client is None:
            builder = (
                ClientBuilder()
                .connect_timeout(timedelta(seconds=self._connect_timeout))
                .pool_idle_timeout(timedelta(seconds=60))
                .tcp_nodelay(True)
                .max_connections(self._max_connections)
                .gzip(False)
            )
            if read_timeout:
                builder = builder.read_timeout(timedelta(seconds=read_timeout))
            client = self._clients[read_timeout] = builder.build()
        return client

    async def post(self, url: str, headers: dict[str, str], body: bytes, timeout: float,
                   limit: int | None = None) -> UpstreamReply:
        """One request, the whole answer read.  An answer over ``limit`` bytes is refused (502) before
        anything parses it: one comparison, so the read itself stays the fast fully-buffered one."""
        target = self._target(url)
        if target is not None:
            return await self._plain(target, target.post, headers, body, timeout, limit)
        request = (
            self._client(None).post(url).headers(headers).body_bytes(body)
            .timeout(self._timeout(timeout)).build()
        )
        self.policy.enter()
        try:
            resp = await request.send()
            data = await resp.bytes()
        except PyreqwestError as exc:
            raise _map(exc) from None
        finally:
            self.policy.leave()
        if limit is not None and len(data) > limit:
            raise too_large(limit)
        return UpstreamReply(resp.status, resp.headers, data.to_bytes())

    def _target(self, url: str) -> Target | None:
        """Where a plain-HTTP ``url`` goes on the loop's client; None: pyreqwest takes it."""
        return None if self.plain is None else self.plain.target(url)

    async def _plain(self, target: Target, head: str, headers: dict[str, str], body: bytes | None,
                     timeout: float, limit: int | None) -> UpstreamReply:
        try:
            conn = await target.exchange(head, headers, body, timeout, limit, False)
        except ResponseTooLarge:
            raise too_large(limit or 0) from None
        reply = UpstreamReply(conn.status, conn.headers(), conn.body())
        conn.release()
        return reply

    async def get(self, url: str, headers: dict[str, str], timeout: float) -> UpstreamReply:
        target = self._target(url)
        if target is not None:
            return await self._plain(target, target.get, headers, None, timeout, None)
        request = self._client(None).get(url).headers(headers).timeout(timedelta(seconds=timeout)).build()
        try:
            resp = await request.send()
            data = await resp.bytes()
        except PyreqwestError as exc:
            raise _map(exc) from None
        return UpstreamReply(resp.status, resp.headers, data.to_bytes())

    @asynccontextmanager
    async def stream(
        self, url: str, headers: dict[str, str], body: bytes, idle_timeout: float
    ) -> AsyncIterator[UpstreamStream]:
        target = self._target(url)
        if target is not None:
            conn = await target.exchange(target.post, headers, body, idle_timeout, None, True)
            stream = PlainStream(conn, idle_timeout)
            try:
                yield stream
            finally:
                conn.release()  # back to the pool only if the answer was read to its end
            return
        request = (
            self._client(idle_timeout).post(url).headers(headers).body_bytes(body)
            .streamed_read_buffer_limit(1).build_streamed()
        )
        self.policy.enter()
        try:
            try:
                resp = await request.__aenter__()
            except PyreqwestError as exc:
                raise _map(exc) from None
            try:
                yield ReqwestStream(resp.status, resp.headers, resp.body_reader)
            finally:
                await request.__aexit__(None, None, None)
        finally:
            self.policy.leave()

    async def close(self) -> None:
        self.policy.close()
        if self.plain is not None:
            self.plain.close()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def _map(exc: PyreqwestError) -> Exception:
    if isinstance(exc, RequestTimeoutError):
        return timed_out()
    if isinstance(exc, ConnectError):
        return unreachable()
    return broken()


def too_large(limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"the provider's answer exceeds the gateway's limit of {limit / (1024 * 1024):g} MB "
                            "(general_settings.max_response_size_mb)")
