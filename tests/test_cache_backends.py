"""The response cache's storage backends: LocalBackend (in process) and RedisBackend (a real Redis).

Redis tests need the server at REDIS_URL and fail (never skip) without it.  Every test writes under its own
base ``lt-<uuid>`` (the cache namespace ``lt-<uuid>:cache:`` and neighbours of it) and removes it after.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from lockgate.cache.backends import (
    BACKENDS,
    ENTRY_OVERHEAD,
    CacheError,
    LocalBackend,
    RedisBackend,
    glob_escape,
    make_backend,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def size(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- local


async def test_local_get_set_and_ttl_expiry() -> None:
    clock = Clock()
    cache = LocalBackend(10_000, clock=clock)
    assert await cache.get("global/aa") is None
    await cache.set("global/aa", b"one", ttl_s=10)
    await cache.set("global/bb", b"two", ttl_s=60)
    assert await cache.get("global/aa") == b"one"
    assert await cache.get_many(["global/aa", "global/zz", "global/bb"]) == [b"one", None, b"two"]
    clock.now += 10
    assert await cache.get("global/aa") is None  # expired at exactly its TTL
    assert await cache.get("global/bb") == b"two"
    assert cache.stats() == {"entries": 1, "bytes": size("global/bb", b"two"), "max_bytes": 10_000}
    await cache.set("global/bb", b"2", ttl_s=0)  # a non-positive TTL stores nothing and drops the old entry
    assert await cache.get("global/bb") is None
    assert cache.stats()["entries"] == 0
    assert cache.stats()["bytes"] == 0


async def test_local_overwrite_keeps_byte_count() -> None:
    cache = LocalBackend(10_000)
    await cache.set("global/aa", b"x" * 100, ttl_s=60)
    await cache.set("global/aa", b"y" * 10, ttl_s=60)
    assert await cache.get("global/aa") == b"y" * 10
    assert cache.stats() == {"entries": 1, "bytes": size("global/aa", b"y" * 10), "max_bytes": 10_000}


async def test_local_lru_eviction_by_bytes() -> None:
    value = b"v" * 100
    one = size("global/k1", value)
    cache = LocalBackend(3 * one)  # room for exactly three entries
    for i in (1, 2, 3):
        await cache.set(f"global/k{i}", value, ttl_s=60)
    assert cache.stats()["bytes"] == 3 * one
    assert await cache.get("global/k1") == value  # k1 is now the most recently used; k2 the least
    await cache.set("global/k4", value, ttl_s=60)
    assert await cache.get_many(["global/k1", "global/k2", "global/k3", "global/k4"]) == [value, None, value, value]
    # a bigger value evicts as many of the least recently used as it needs
    await cache.set("global/big", b"b" * (2 * one - ENTRY_OVERHEAD - len("global/big")), ttl_s=60)
    assert await cache.get_many(["global/k3", "global/k1", "global/k4"]) == [None, None, value]
    assert cache.stats()["entries"] == 2
    assert cache.stats()["bytes"] <= cache.max_bytes


async def test_local_oversized_value_not_stored() -> None:
    cache = LocalBackend(1_000)
    await cache.set("global/small", b"s", ttl_s=60)
    await cache.set("global/huge", b"h" * 1_000, ttl_s=60)
    assert await cache.get("global/huge") is None
    assert await cache.get("global/small") == b"s"  # nothing was evicted for it
    assert cache.stats()["entries"] == 1
    # exactly max_bytes fits
    fits = b"f" * (1_000 - ENTRY_OVERHEAD - len("global/fits"))
    await cache.set("global/fits", fits, ttl_s=60)
    assert await cache.get("global/fits") == fits
    assert cache.stats()["bytes"] == 1_000


async def test_local_delete_counts_existing() -> None:
    clock = Clock()
    cache = LocalBackend(10_000, clock=clock)
    await cache.set("global/a", b"1", ttl_s=60)
    await cache.set("global/b", b"2", ttl_s=60)
    await cache.set("global/c", b"3", ttl_s=1)
    clock.now += 5  # global/c expired: it no longer exists
    assert await cache.delete(["global/a", "global/missing", "global/c"]) == 1
    assert await cache.delete([]) == 0
    assert await cache.get("global/a") is None
    assert await cache.get("global/b") == b"2"
    assert cache.stats() == {"entries": 1, "bytes": size("global/b", b"2"), "max_bytes": 10_000}


async def test_local_flush_by_scope_only() -> None:
    cache = LocalBackend(100_000)
    for scope in ("team:abc", "team:abcd", "key:123", "global"):
        for digest in ("01", "02"):
            await cache.set(f"{scope}/{digest}", b"v", ttl_s=60)
    assert await cache.flush("team:abc") == 2
    assert await cache.get_many(["team:abc/01", "team:abc/02"]) == [None, None]
    assert await cache.get_many(["team:abcd/01", "key:123/02", "global/01"]) == [b"v", b"v", b"v"]
    assert cache.stats()["entries"] == 6
    assert await cache.flush("team:none") == 0
    assert await cache.flush() == 6
    assert cache.stats() == {"entries": 0, "bytes": 0, "max_bytes": 100_000}
    assert await cache.ping() is True


def test_local_rejects_nonpositive_size() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        LocalBackend(0)


# ---------------------------------------------------------------- registry


async def test_registry() -> None:
    assert set(BACKENDS) == {"local", "redis"}
    assert isinstance(make_backend("local", max_bytes=1000), LocalBackend)
    with pytest.raises(ValueError, match="not supported"):
        make_backend("disk", max_bytes=1000)
    with pytest.raises(ValueError, match="needs a Redis connection"):
        make_backend("redis", max_bytes=1000)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        backend = make_backend("redis", max_bytes=1000, redis_client=client, namespace="x:")
        assert isinstance(backend, RedisBackend)
        assert backend.namespace == "x:"
        with pytest.raises(ValueError, match="non-empty namespace"):
            RedisBackend(client, "")
    finally:
        await client.aclose()
    decoding = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisBackend(decoding, "x:")
    finally:
        await decoding.aclose()


def test_glob_escape() -> None:
    assert glob_escape("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert glob_escape("litellm:cache:team:abc/") == "litellm:cache:team:abc/"


# ---------------------------------------------------------------- redis


@pytest.fixture
async def base() -> AsyncIterator[str]:
    """A unique key base for one test; every key under it is removed afterwards."""
    name = f"lt-{uuid.uuid4().hex}"
    yield name
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        leftovers = [key async for key in client.scan_iter(match=name + "*", count=1000)]
        if leftovers:
            await client.unlink(*leftovers)
    finally:
        await client.aclose()


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    assert await c.ping()  # no Redis is a failure, not a skip
    yield c
    await c.aclose()


async def test_redis_get_set_ttl(client: aioredis.Redis, base: str) -> None:
    ns = f"{base}:cache:"
    cache = RedisBackend(client, ns)
    assert await cache.get("global/aa") is None
    await cache.set("global/aa", b"one", ttl_s=60)
    await cache.set("global/bb", b"\x00\xffbinary", ttl_s=0.05)  # 50 ms
    assert await client.get(ns + "global/aa") == b"one"  # the stored key is <namespace><key>
    assert 0 < await client.pttl(ns + "global/aa") <= 60_000  # SET PX
    assert await cache.get("global/aa") == b"one"
    assert await cache.get("global/bb") == b"\x00\xffbinary"
    await asyncio.sleep(0.15)
    assert await cache.get("global/bb") is None
    await cache.set("global/aa", b"gone", ttl_s=0)  # a non-positive TTL removes the key
    assert await client.exists(ns + "global/aa") == 0
    assert cache.stats() == {"errors": 0}
    assert await cache.ping() is True


async def test_redis_get_many_one_round_trip(client: aioredis.Redis, base: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cache = RedisBackend(client, f"{base}:cache:")
    await cache.set("team:abc/01", b"a", ttl_s=60)
    await cache.set("global/02", b"b", ttl_s=60)
    commands: list[str] = []
    original: Callable[..., Awaitable[object]] = client.execute_command

    async def recording(*args: object, **options: object) -> object:
        commands.append(str(args[0]))
        return await original(*args, **options)

    monkeypatch.setattr(client, "execute_command", recording)
    assert await cache.get_many(["team:abc/01", "global/missing", "global/02"]) == [b"a", None, b"b"]
    assert commands == ["MGET"]
    assert await cache.get_many([]) == []
    assert commands == ["MGET"]  # no round trip for nothing


async def test_redis_delete_counts_existing(client: aioredis.Redis, base: str) -> None:
    cache = RedisBackend(client, f"{base}:cache:")
    await cache.set("global/a", b"1", ttl_s=60)
    await cache.set("global/b", b"2", ttl_s=60)
    assert await cache.delete(["global/a", "global/missing"]) == 1
    assert await cache.delete([]) == 0
    assert await cache.get_many(["global/a", "global/b"]) == [None, b"2"]


async def test_redis_flush_stays_inside_namespace(client: aioredis.Redis, base: str) -> None:
    ns = f"{base}:cache:"
    cache = RedisBackend(client, ns)
    for scope in ("team:abc", "team:abcd", "key:123", "global"):
        for digest in ("01", "02"):
            await cache.set(f"{scope}/{digest}", b"v", ttl_s=60)
    neighbour = f"{ns[:-1]}x:other"  # shares the namespace's text but for its last ':'
    rate_limit = f"{base}:rpm:team:abc"  # what the counters keep in the same Redis
    unprefixed = "team:abc/01" + base  # a key that is only the cache key, without namespace
    await client.set(neighbour, b"n")
    await client.set(rate_limit, b"7")
    await client.set(unprefixed, b"u")
    try:
        assert await cache.flush("team:abc") == 2
        assert await cache.get_many(["team:abc/01", "team:abc/02"]) == [None, None]
        assert await cache.get_many(["team:abcd/01", "key:123/01", "global/02"]) == [b"v", b"v", b"v"]
        assert await cache.flush("team:none") == 0
        assert await cache.flush() == 6
        assert [key async for key in client.scan_iter(match=ns + "*")] == []
        assert await client.mget([neighbour, rate_limit, unprefixed]) == [b"n", b"7", b"u"]
    finally:
        await client.unlink(unprefixed)


async def test_redis_flush_in_batches(client: aioredis.Redis, base: str) -> None:
    ns = f"{base}:cache:"
    cache = RedisBackend(client, ns)
    async with client.pipeline(transaction=False) as pipe:
        for i in range(2500):
            pipe.set(f"{ns}global/{i:04x}", b"v", px=60_000)
        await pipe.execute()
    await cache.set("team:t/01", b"v", ttl_s=60)
    assert await cache.flush("global") == 2500
    assert await cache.get("team:t/01") == b"v"
    assert await cache.flush() == 1


async def test_redis_namespace_with_glob_characters(client: aioredis.Redis, base: str) -> None:
    ns = f"{base}:ns[1]*:"
    cache = RedisBackend(client, ns)
    await cache.set("team:a*/01", b"star", ttl_s=60)
    await cache.set("team:ab/01", b"ab", ttl_s=60)
    await cache.set("global/01", b"g", ttl_s=60)
    # keys an unescaped pattern would match: ns[1]*: is "ns1" + anything + ":" as a glob
    lookalikes = [f"{base}:ns1:global/01", f"{base}:ns1xyz:team:a/01", f"{base}:ns1*:global/01"]
    for key in lookalikes:
        await client.set(key, b"keep")
    assert await cache.get("team:a*/01") == b"star"
    assert await cache.flush("team:a*") == 1  # the scope's own '*' is literal too
    assert await cache.get("team:ab/01") == b"ab"
    assert await cache.flush() == 2
    assert await client.mget(lookalikes) == [b"keep"] * 3


async def test_two_backends_share_a_namespace(base: str) -> None:
    ns = f"{base}:cache:"
    one, two = aioredis.Redis.from_url(REDIS_URL), aioredis.Redis.from_url(REDIS_URL)
    try:
        a, b = RedisBackend(one, ns), RedisBackend(two, ns)
        await a.set("global/01", b"from a", ttl_s=60)
        await b.set("team:x/02", b"from b", ttl_s=60)
        assert await b.get("global/01") == b"from a"
        assert await a.get_many(["global/01", "team:x/02"]) == [b"from a", b"from b"]
        assert await b.delete(["global/01"]) == 1
        assert await a.get("global/01") is None
        assert await a.flush("team:x") == 1
        assert await b.get("team:x/02") is None
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_wrong_type_is_a_miss(client: aioredis.Redis, base: str) -> None:
    ns = f"{base}:cache:"
    cache = RedisBackend(client, ns)
    await client.rpush(ns + "global/list", b"x")  # GET on a list: WRONGTYPE (a ResponseError)
    assert await cache.get("global/list") is None
    assert cache.stats() == {"errors": 1}


# ---------------------------------------------------------------- outage


async def test_redis_outage_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # bound then released: nothing listens there
    down = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, socket_timeout=0.2,
                          retry=Retry(NoBackoff(), 0))
    cache = RedisBackend(down, "lockgate:cache:")
    caplog.set_level(logging.INFO, logger="lockgate.cache")
    try:
        assert await cache.get("global/01") is None
        assert await cache.get_many(["global/01", "team:x/02"]) == [None, None]
        await cache.set("global/01", b"v", ttl_s=60)  # a no-op, not an exception
        assert await cache.get("global/01") is None
        assert cache.stats() == {"errors": 4}
        warnings = [r for r in caplog.records if r.name == "lockgate.cache" and r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "Redis get failed" in warnings[0].getMessage()
        # the admin calls say why instead
        for call in (cache.ping(), cache.flush(), cache.flush("global"), cache.delete(["global/01"])):
            with pytest.raises(CacheError, match="ConnectionError"):
                await call
        assert cache.stats() == {"errors": 8}
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    finally:
        await down.aclose()


async def test_redis_recovery_logged_once(client: aioredis.Redis, base: str, caplog: pytest.LogCaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache = RedisBackend(client, f"{base}:cache:")
    caplog.set_level(logging.INFO, logger="lockgate.cache")

    async def broken(*args: object, **options: object) -> object:
        raise RedisConnectionError("connection reset")

    with monkeypatch.context() as patch:
        patch.setattr(client, "execute_command", broken)
        for _ in range(3):
            assert await cache.get("global/01") is None
            await cache.set("global/01", b"v", ttl_s=60)
    await cache.set("global/01", b"v", ttl_s=60)  # works again
    assert await cache.get("global/01") == b"v"
    with monkeypatch.context() as patch:  # a second outage is reported again
        patch.setattr(client, "execute_command", broken)
        assert await cache.get_many(["global/01"]) == [None]
    assert await cache.get("global/01") == b"v"
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "lockgate.cache"]
    assert [level for level, _ in levels] == [logging.WARNING, logging.INFO, logging.WARNING, logging.INFO]
    assert "6 failed calls" in levels[1][1]
    assert cache.stats() == {"errors": 7}
