"""One pipelined Redis connection for the counters' two scripts (``admit``, ``settle``): the hot path.

redis-py's asyncio client costs ~100 µs of CPU per command on the event loop (a pool checkout and
release, a stream writer, a timeout context, its retry wrapper; docs/performance.md, session 14), and the
shared mode (``redis_url``) pays two commands per request.  This connection is an asyncio protocol
instead: the commands issued in one turn of the event loop go out in one write at its end (at 32
connections that is several requests' commands per system call), replies are parsed by hiredis (already
a dependency of redis-py's fast path) and handed to the callers' futures in order, so concurrent
requests share one connection without waiting for each other (Redis answers a connection's commands in
order).

* ``redis://`` and ``unix://`` URLs (with user, password and database); ``rediss://`` keeps redis-py
  (``RespConnection.supports``).
* Connected lazily, in the running loop; a lost connection fails the commands in flight with
  redis-py's ``ConnectionError`` and the next command connects again.  A command whose connection broke
  after it was written is not sent again: it may have run (an ``admit`` counted twice would not be exact).
* ``EVALSHA``, and on ``NOSCRIPT`` (a restarted or flushed Redis) ``SCRIPT LOAD`` then ``EVALSHA``
  once more: a script that was not found did not run.
* Replies are raw (bytes, ints, lists), as redis-py gives them without ``decode_responses``.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections import deque
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from ..transport.turn_writes import TurnWrites

Arg = bytes | str | int | float


def encode(args: tuple[Arg, ...] | list[Arg]) -> bytes:
    """One command as a RESP array of bulk strings (ints as decimal, floats as ``repr``, as redis-py)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(arg).encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.lost = False
        self.out = TurnWrites()  # the commands of this turn of the loop: one write at its end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self.out.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's classes
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step, start over
                self._fail(RedisConnectionError("Redis sent an unexpected reply"))
                if self.transport is not None:
                    self.transport.close()
                return
            fut = waiting.popleft()
            if fut.done():  # its caller was cancelled: the reply is read and dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                fut.set_exception(NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.out.transport = None
        self._fail(RedisConnectionError(f"connection to Redis lost{f': {exc}' if exc else ''}"))

    def _fail(self, error: Exception) -> None:
        self.lost = True
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(error)


class RespConnection:
    def __init__(self, url: str) -> None:
        self.options: dict[str, Any] = dict(parse_url(url))
        self._protocol: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None

    @staticmethod
    def supports(url: str) -> bool:
        return url.startswith(("redis://", "unix://"))

    async def _connected(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        if protocol is not None and not protocol.lost and self._loop is loop:
            return protocol
        if self._connecting is None or self._loop is not loop:
            self.close()  # a connection of another event loop cannot serve this one
            self._connecting = asyncio.Lock()
            self._loop = loop
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and not protocol.lost:
                return protocol
            self.close()
            self._protocol = protocol = await self._open(loop)
            return protocol

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        o = self.options
        try:
            if "path" in o:
                _, protocol = await loop.create_unix_connection(_Protocol, o["path"])
            else:
                _, protocol = await loop.create_connection(_Protocol, o.get("host", "localhost"), o.get("port", 6379))
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        setup: list[tuple[Arg, ...]] = []
        if o.get("password") is not None:
            setup.append(("AUTH", o["username"], o["password"]) if o.get("username") else ("AUTH", o["password"]))
        if o.get("db"):
            setup.append(("SELECT", int(o["db"])))
        try:
            for command in setup:
                await self._send(protocol, command)
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.close()
            raise
        return protocol

    @staticmethod
    def _send(protocol: _Protocol, args: tuple[Arg, ...] | list[Arg]) -> asyncio.Future[Any]:
        if protocol.lost or protocol.transport is None:
            raise RedisConnectionError("connection to Redis lost")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(fut)
        protocol.out.write(encode(args))
        return fut

    async def execute(self, *args: Arg) -> Any:
        return await self._send(await self._connected(), args)

    async def evalsha(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        command: list[Arg] = ["EVALSHA", script.sha, len(keys), *keys, *args]
        try:
            return await self.execute(*command)
        except NoScriptError:  # not run: load it and run it once more
            await self.execute("SCRIPT", "LOAD", script.source)
            return await self.execute(*command)

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            try:
                protocol.transport.close()
            except RuntimeError:  # its event loop is closed already (the transport went with it)
                pass


class Script:
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
