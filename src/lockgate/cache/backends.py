"""Storage backends of the exact response cache (LiteLLM's ``cache_params.type: local | redis``).

Callers pass keys ``<scope>/<digest>`` (scope: ``global``, ``team:<id>``, ``key:<hash>``; digest: hex) and
values as bytes; a backend prefixes its namespace.  Two backends, one protocol (``CacheBackend``), one
registry (``BACKENDS``, built by ``make_backend``):

- ``LocalBackend(max_bytes)``: in process, an LRU bounded in bytes (``len(key) + len(value) +
  ENTRY_OVERHEAD`` per entry) with a per-entry expiry on the monotonic clock.  O(1) per call but ``flush``.
  An entry larger than ``max_bytes`` is not stored; an expired one is dropped when read, or evicted as the
  least recently used.
- ``RedisBackend(client, namespace)``: ``<namespace><scope>/<digest>`` string keys, ``SET PX`` and one
  ``MGET`` per ``get_many``.  The request path fails open: a Redis error in ``get``, ``get_many`` or
  ``set`` is a miss or a no-op, counted in ``stats()["errors"]`` and logged once per outage (a warning at
  the first failure, an info line at the first success after it).  The admin calls ``delete``, ``flush``
  and ``ping`` raise ``CacheError`` instead, with the Redis error as its cause (their failures are counted
  and open or close an outage too).  ``flush`` walks the namespace (or one scope of it) with ``SCAN
  MATCH`` (the prefix glob-escaped) and ``UNLINK``s what it finds: never ``FLUSHDB``, the same Redis holds
  counters, cooldowns and spend.  How long a call may wait is the client's ``socket_timeout`` /
  ``socket_connect_timeout`` and ``retry``: configure them small.

A non-positive TTL stores nothing and removes the key (the entry expired at once).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:  # redis is imported when a Redis client is made (not by the local cache or the management API)
    from redis.asyncio import Redis

log = logging.getLogger("lockgate.cache")

DEFAULT_NAMESPACE = "lockgate:cache:"
# rough CPython cost of one LocalBackend entry beyond its key and value characters: the str and bytes
# headers, the (value, expiry) tuple and its float, the dict slot and the OrderedDict link
ENTRY_OVERHEAD = 200
SCAN_COUNT = 1000  # keys asked of each SCAN call; also the largest UNLINK batch


@functools.cache
def redis_errors() -> tuple[type[Exception], ...]:
    """What a Redis call can raise when the server is away, slow or refuses the command (builtin TimeoutError
    and ConnectionError are OSErrors).  A function, evaluated in ``except`` clauses only when a call failed:
    redis is imported only where a Redis client exists."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)


class CacheError(Exception):
    """An admin operation (``delete``, ``flush``, ``ping``) could not reach the cache's storage."""


class CacheBackend(Protocol):
    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def delete(self, keys: list[str]) -> int: ...

    async def flush(self, scope: str | None = None) -> int: ...

    async def ping(self) -> bool: ...

    def stats(self) -> dict[str, int]: ...


class LocalBackend:
    def __init__(self, max_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0:
            raise ValueError(f"cache max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # key -> (value, expires at)
        self._bytes = 0

    @classmethod
    def from_options(cls, *, max_bytes: int, redis_client: Redis | None, namespace: str) -> LocalBackend:
        return cls(max_bytes)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    async def get(self, key: str) -> bytes | None:
        return self._get(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._remove(key)
        size = len(key) + len(value) + ENTRY_OVERHEAD
        if ttl_s <= 0 or size > self.max_bytes:
            return
        self._entries[key] = (value, self._clock() + ttl_s)
        self._bytes += size
        while self._bytes > self.max_bytes:
            oldest, (old_value, _) = self._entries.popitem(last=False)
            self._bytes -= len(oldest) + len(old_value) + ENTRY_OVERHEAD

    async def delete(self, keys: list[str]) -> int:
        return sum(self._remove(key) for key in keys)

    async def flush(self, scope: str | None = None) -> int:
        if scope is None:
            now = self._clock()
            count = sum(1 for _, expires in self._entries.values() if expires > now)
            self._entries.clear()
            self._bytes = 0
            return count
        prefix = scope + "/"
        return sum(self._remove(key) for key in [k for k in self._entries if k.startswith(prefix)])

    async def ping(self) -> bool:
        return True

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "bytes": self._bytes, "max_bytes": self.max_bytes}

    def _get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def _remove(self, key: str) -> bool:
        """Drop ``key``; True when it held a live (not expired) entry."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= len(key) + len(entry[0]) + ENTRY_OVERHEAD
        return entry[1] > self._clock()


class RedisBackend:
    # the client is checked to return bytes (decode_responses=False): the casts narrow redis' ``bytes | str``
    def __init__(self, client: Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not namespace:
            raise ValueError("the Redis cache needs a non-empty namespace (flush would delete every key)")
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the Redis cache needs a client with decode_responses=False (values are bytes)")
        self.client = client
        self.namespace = namespace
        self._errors = 0
        self._down = False  # an outage is being reported: warned once, not yet recovered

    @classmethod
    def from_options(cls, *, max_bytes: int, redis_client: Redis | None, namespace: str) -> RedisBackend:
        if redis_client is None:
            raise ValueError("cache type 'redis' needs a Redis connection (redis_host / redis_url)")
        return cls(redis_client, namespace)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            values = cast(list[bytes | None], await self.client.mget([self.namespace + key for key in keys]))
        except redis_errors() as e:
            self._failed("get", e)
            return [None] * len(keys)
        self._succeeded()
        return values

    async def get(self, key: str) -> bytes | None:
        try:
            value = cast(bytes | None, await self.client.get(self.namespace + key))
        except redis_errors() as e:
            self._failed("get", e)
            return None
        self._succeeded()
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            if ttl_s <= 0:
                await self.client.unlink(self.namespace + key)
            else:
                await self.client.set(self.namespace + key, value, px=max(1, math.ceil(ttl_s * 1000)))
        except redis_errors() as e:
            self._failed("set", e)
            return
        self._succeeded()

    async def delete(self, keys: list[str]) -> int:
        """UNLINK the keys, in batches; how many existed.  Raises ``CacheError``."""
        count = 0
        try:
            for i in range(0, len(keys), SCAN_COUNT):
                count += await self.client.unlink(*[self.namespace + key for key in keys[i:i + SCAN_COUNT]])
        except redis_errors() as e:
            raise self._admin_error("delete", e) from e
        self._succeeded()
        return count

    async def flush(self, scope: str | None = None) -> int:
        """Remove every key of the namespace, or of one scope of it; how many.  Raises ``CacheError``.

        SCAN may return a key twice (when the keyspace is resized meanwhile): UNLINK counts it once.
        """
        prefix = self.namespace if scope is None else f"{self.namespace}{scope}/"
        match = glob_escape(prefix) + "*"
        count = 0
        cursor = 0
        try:
            while True:
                cursor, found = await self.client.scan(cursor, match=match, count=SCAN_COUNT)
                if found:
                    count += await self.client.unlink(*found)
                if cursor == 0:
                    break
        except redis_errors() as e:
            raise self._admin_error("flush", e) from e
        self._succeeded()
        return count

    async def ping(self) -> bool:
        """True when Redis answers; raises ``CacheError`` (with the reason) when it does not."""
        try:
            await self.client.ping()
        except redis_errors() as e:
            raise self._admin_error("ping", e) from e
        self._succeeded()
        return True

    def stats(self) -> dict[str, int]:
        return {"errors": self._errors}

    def _failed(self, operation: str, error: Exception) -> None:
        self._errors += 1
        if not self._down:
            self._down = True
            log.warning("response cache: Redis %s failed, serving without the cache until it answers again (%s: %s)",
                        operation, type(error).__name__, error)

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            log.info("response cache: Redis answers again (%d failed calls so far)", self._errors)

    def _admin_error(self, operation: str, error: Exception) -> CacheError:
        self._failed(operation, error)
        return CacheError(f"response cache: Redis {operation} under {self.namespace!r} failed: "
                          f"{type(error).__name__}: {error}")


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern (``*?[]\\`` escaped with a backslash)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


BACKENDS: dict[str, type[LocalBackend] | type[RedisBackend]] = {"local": LocalBackend, "redis": RedisBackend}


def make_backend(kind: str, *, max_bytes: int, redis_client: Redis | None = None,
                 namespace: str = DEFAULT_NAMESPACE) -> CacheBackend:
    """The backend named by ``cache_params.type``; ValueError for an unknown type or a missing client."""
    backend = BACKENDS.get(kind)
    if backend is None:
        raise ValueError(f"cache type {kind!r} is not supported (supported: {', '.join(BACKENDS)})")
    return backend.from_options(max_bytes=max_bytes, redis_client=redis_client, namespace=namespace)
