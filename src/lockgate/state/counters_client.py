"""``ServiceCounters``: the ``Counters`` protocol over the counters service's Unix socket.

One persistent connection per worker; requests are pipelined on it and answered in order, so a
waiting request costs one future in a queue.  ``admit`` and ``settle`` are one round trip each.
Messages from other workers (``[EVENT, message]`` frames) go to ``listeners``; after a reconnection
the listeners get ``None`` (messages may have been missed: drop what was cached).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import LockgateError
from ..transport.turn_writes import TurnWrites
from .counters import Admission, Item
from .counters_wire import ADMIT, EVENT, FORGET, PUBLISH, RESET, SETTLE, FrameBuffer, encode_items, frame

log = logging.getLogger("lockgate.counters")

SOCKET_ENV = "LOCKGATE_COUNTERS_SOCKET"  # set by ``serve --workers N`` for its workers


class CountersUnavailable(LockgateError):
    status = 503
    type = "api_error"
    code = "counters_unavailable"


class ServiceCounters:
    def __init__(self, path: str) -> None:
        self.path = path
        self.listeners: list[Callable[[Any], None]] = []
        self._transport: asyncio.Transport | None = None
        self._waiting: deque[asyncio.Future[list[Any]]] = deque()
        self._connecting: asyncio.Lock | None = None
        self._connected_once = False
        self._out = TurnWrites()  # the frames of this turn of the loop: one write at its end

    # ------------------------------------------------------------------ connection

    async def connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is not None:
                return
            loop = asyncio.get_running_loop()
            try:
                transport, _ = await loop.create_unix_connection(lambda: _Protocol(self), self.path)
            except OSError as exc:
                raise CountersUnavailable(
                    f"the counters service of this gateway is not reachable ({type(exc).__name__})") from None
            self._out = TurnWrites()  # nothing of a former connection's turn goes out on this one
            self._transport = self._out.transport = transport  # uvloop's are not asyncio.Transport subclasses
            if self._connected_once:
                log.warning("counters service: reconnected")
                self._event(None)
            self._connected_once = True

    def _lost(self) -> None:
        self._transport = self._out.transport = None
        waiting, self._waiting = self._waiting, deque()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(CountersUnavailable("the counters service of this gateway went away"))

    def _reply(self, message: list[Any]) -> None:
        if message[0] == EVENT:
            self._event(message[1])
            return
        fut = self._waiting.popleft()
        if not fut.done():
            fut.set_result(message)

    def _event(self, message: Any) -> None:
        for listener in self.listeners:
            try:
                listener(message)
            except Exception:
                log.exception("counters service: a listener failed")

    async def _call(self, message: list[Any]) -> list[Any]:
        if self._transport is None:
            await self.connect()
        assert self._transport is not None
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._out.write(frame(message))
        return await fut

    # ------------------------------------------------------------------ Counters

    async def admit(self, items: list[Item], request_id: str, lease: float) -> Admission:
        _, ok, failed, values, reset, window = await self._call([ADMIT, request_id, lease, encode_items(items)])
        return Admission(ok, failed, values, reset, window)

    async def settle(
        self, items: list[Item], admission: Admission, request_id: str, token_delta: float, cost: float
    ) -> None:
        await self._call([SETTLE, request_id, admission.window, token_delta, cost, encode_items(items)])

    async def forget(self, keys: list[str]) -> None:
        if keys:
            await self._call([FORGET, keys])

    async def reset(self, key: str, value: float) -> None:
        await self._call([RESET, key, float(value)])

    def publish(self, message: Any) -> None:
        """To every other worker (best effort: not connected, not sent)."""
        if self._transport is not None:
            self._transport.write(frame([PUBLISH, message]))  # rare: not worth the turn's batch

    async def close(self) -> None:
        self._out.transport = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: ServiceCounters) -> None:
        self.owner = owner
        self.frames = FrameBuffer()

    def data_received(self, data: bytes) -> None:
        for message in self.frames.feed(data):
            self.owner._reply(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost()


class RoutingShare:
    """``router.shared`` for the workers of one ``serve``: cooldowns go to the other workers."""

    def __init__(self, counters: ServiceCounters) -> None:
        self.counters = counters

    def publish_cooldown(self, deployment_id: str, until: float) -> None:
        self.counters.publish(["cooldown", deployment_id, until])

    async def close(self) -> None:
        pass
