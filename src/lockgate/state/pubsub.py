"""A Redis channel listened to for good: key invalidations (governance) and cooldowns (routing).

``listen`` subscribes on a connection of its own, named ``<name>`` (``CLIENT LIST`` shows it), and when
that connection drops (server restart, failover, ``CLIENT KILL``, network) it reconnects with back-off
(0.1 s doubling up to 5 s).  A connection that goes silent without closing (a half-open TCP connection
after a network partition) is noticed too: when nothing arrived for ``heartbeat`` seconds the listener
sends a PING, and when nothing, not even the PONG, arrived for three heartbeats it reconnects.  After
every subscription, the first one included, ``resync()`` runs: messages published while the connection
was down are lost, so the caller re-reads or drops whatever they could have changed.  Nothing here is on
the request path.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

log = logging.getLogger("lockgate.state")

FIRST_DELAY, MAX_DELAY = 0.1, 5.0
HEARTBEAT = 10.0  # seconds of silence before a PING; three of them without an answer: reconnect


def listener_client(client: Any, name: str) -> Any:
    """A client for the server and credentials of ``client`` whose connections carry ``name``."""
    import redis.asyncio as aioredis

    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "client_name": re.sub(r"\s", "_", name), "socket_keepalive": True,
              "socket_connect_timeout": 5}
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=2, **kwargs))


async def listen(client: Any, channel: str, on_message: Callable[[bytes], None],
                 resync: Callable[[], Awaitable[None]], what: str, heartbeat: float = HEARTBEAT) -> None:
    """Run until cancelled: every message's data goes to ``on_message``; ``resync`` after each subscribe."""
    delay = FIRST_DELAY
    lost = False
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            await resync()
            if lost:
                log.warning("%s channel back", what)
                lost = False
            delay = FIRST_DELAY
            await _receive(pubsub, on_message, what, heartbeat)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reconnect, whatever the failure
            if not lost:
                log.warning("%s channel lost (%s); reconnecting", what, type(exc).__name__)
                lost = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
        finally:
            try:
                await pubsub.aclose()
            except Exception as exc:  # noqa: BLE001 - the connection is being replaced anyway
                log.debug("%s: closing the old connection failed (%s)", what, type(exc).__name__)


async def _receive(pubsub: Any, on_message: Callable[[bytes], None], what: str, heartbeat: float) -> None:
    """Messages until the connection fails (raises) or stays silent through three heartbeats."""
    heard = monotonic()
    while True:
        message = await pubsub.get_message(timeout=heartbeat)
        now = monotonic()
        if message is None:
            if now - heard >= 3 * heartbeat:
                raise TimeoutError("no answer to PING")
            await pubsub.ping()
            continue
        heard = now
        data = message.get("data")
        if message.get("type") == "message" and isinstance(data, bytes):
            try:
                on_message(data)
            except Exception as exc:  # noqa: BLE001 - one bad message never stops the listener
                log.warning("%s: a message could not be applied (%s)", what, type(exc).__name__)
