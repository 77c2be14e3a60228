"""The key cache: fresh hits, stale-while-refresh, coalesced misses, invalidation wins over a refresh."""

from __future__ import annotations

import asyncio

import pytest

from lockgate.governance import cache as cache_module
from lockgate.governance.cache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    def __init__(self) -> None:
        self.calls = 0
        self.value = "v1"
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, ident: str) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("database down")
        return f"{ident}:{self.value}"


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(cache_module, "monotonic", c)
    return c


async def test_fresh_entries_are_answered_without_a_lookup(clock):
    loader = Loader()
    cache = TTLCache(loader, ttl=5)
    assert await cache.get("k") == "k:v1"
    clock.now += 4.9
    assert await cache.get("k") == "k:v1" and loader.calls == 1


async def test_a_stale_entry_is_answered_while_one_refresh_runs(clock):
    loader = Loader()
    cache = TTLCache(loader, ttl=5)
    await cache.get("k")
    loader.value, loader.gate = "v2", asyncio.Event()
    clock.now += 6  # past the ttl, within the grace
    assert await cache.get("k") == "k:v1"  # no wait for the database
    assert await cache.get("k") == "k:v1"
    await asyncio.sleep(0)
    assert await cache.get("k") == "k:v1" and loader.calls == 2  # one refresh in flight, not two
    loader.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await cache.get("k") == "k:v2" and loader.calls == 2


async def test_past_the_grace_the_caller_waits_for_the_lookup(clock):
    loader = Loader()
    cache = TTLCache(loader, ttl=5)
    await cache.get("k")
    loader.value = "v2"
    clock.now += 10.1  # ttl + grace
    assert await cache.get("k") == "k:v2" and loader.calls == 2


async def test_concurrent_misses_share_one_lookup(clock):
    loader = Loader()
    loader.gate = asyncio.Event()
    cache = TTLCache(loader, ttl=5)
    waiting = [asyncio.ensure_future(cache.get("k")) for _ in range(5)]
    await asyncio.sleep(0)
    loader.gate.set()
    assert await asyncio.gather(*waiting) == ["k:v1"] * 5 and loader.calls == 1


async def test_invalidation_drops_the_entry_and_beats_a_refresh_in_flight(clock):
    loader = Loader()
    cache = TTLCache(loader, ttl=5)
    await cache.get("k")
    loader.gate = asyncio.Event()
    clock.now += 6
    assert await cache.get("k") == "k:v1"  # refresh started
    cache.invalidate("k")  # e.g. the key was blocked meanwhile
    loader.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert "k" not in cache._entries  # the refresh's (older) answer was not stored
    loader.value = "blocked"
    assert await cache.get("k") == "k:blocked"  # looked up again, never answered stale


async def test_a_failed_refresh_keeps_the_stale_entry_until_its_grace_ends(clock):
    loader = Loader()
    cache = TTLCache(loader, ttl=5)
    await cache.get("k")
    loader.fail = True
    clock.now += 6
    assert await cache.get("k") == "k:v1"
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await cache.get("k") == "k:v1"  # still within the grace
    clock.now += 5
    with pytest.raises(ConnectionError):
        await cache.get("k")


async def test_after_an_invalidation_nobody_joins_a_lookup_that_started_before_it(clock):
    loader = Loader()
    loader.gate = asyncio.Event()
    cache = TTLCache(loader, ttl=5)
    first = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0)  # the lookup runs, reading the old state
    cache.invalidate("k")
    loader.value = "blocked"
    second = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0)
    assert loader.calls == 2  # a new lookup, not the one in flight
    loader.gate.set()
    await first  # its own caller gets its answer; it is not stored (older than the invalidation)
    assert await second == "k:blocked"
    assert await cache.get("k") == "k:blocked" and loader.calls == 2
