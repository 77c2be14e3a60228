"""A Redis channel listened to for good: key invalidations (governance) and cooldowns (routing).

``listen`` subscribes on a connection of its own, named ``<name>`` (``CLIENT LIST`` shows it), and when
that connection drops (server restart, failover, ``CLIENT KILL``, network) it reconnects with back-off
(0.1 s doubling up to 5 s).  After every subscription, the first one included, ``resync()`` runs: messages
published while the connection was down are lost, so the caller re-reads or drops whatever they could
have changed.  Nothing here is on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("lockgate.state")

FIRST_DELAY, MAX_DELAY = 0.1, 5.0


def listener_client(client: Any, name: str) -> Any:
    """A client for the server and credentials of ``client`` whose connections carry ``name``."""
    import redis.asyncio as aioredis

    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "client_name": re.sub(r"\s", "_", name), "socket_keepalive": True}
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=2, **kwargs))


async def listen(client: Any, channel: str, on_message: Callable[[bytes], None],
                 resync: Callable[[], Awaitable[None]], what: str) -> None:
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
            async for message in pubsub.listen():
                data = message.get("data")
                if isinstance(data, bytes):
                    try:
                        on_message(data)
                    except Exception as exc:  # noqa: BLE001 - one bad message never stops the listener
                        log.warning("%s: a message could not be applied (%s)", what, type(exc).__name__)
            raise ConnectionError("subscription ended")
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
            except Exception:  # noqa: BLE001
                pass
