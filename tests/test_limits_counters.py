"""Counters: the same semantics on the in-process and the Redis implementation, the latter through its own
connection (state/resp.py) and through redis-py (rediss:// URLs) (Redis must be reachable)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lockgate.state.counters import BUDGET_KIND, PARALLEL_KIND, WINDOW_KIND, Item, LocalCounters, RedisCounters

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["local", "redis", "redis-py"])
async def counters(request):
    if request.param == "local":
        c = LocalCounters()
        yield c
    else:
        prefix = f"lockgate-test-{uuid.uuid4().hex[:12]}:"
        c = RedisCounters(REDIS_URL, prefix)
        assert c.pipe is not None
        if request.param == "redis-py":  # the scripts through redis-py, as for rediss:// URLs
            c.pipe.close()
            c.pipe = None
        await c.ping()  # fails (not skips) when Redis is unreachable
        yield c
        keys = [k async for k in c.client.scan_iter(match=prefix + "*")]
        if keys:
            await c.client.delete(*keys)
        await c.close()


def rid() -> str:
    return uuid.uuid4().hex


async def test_window_allows_exactly_the_limit(counters):
    items = [Item(WINDOW_KIND, "k:a:rpm", 3, 1, "key rpm limit", "requests")]
    results = [await counters.admit(items, rid(), 60) for _ in range(5)]
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert results[2].values == [3]
    assert results[3].failed == 0 and results[3].values == [3]
    assert 0 < results[0].reset <= 60


async def test_rejection_increments_nothing(counters):
    a = Item(WINDOW_KIND, "k:b:rpm", 10, 1, "key rpm limit", "requests")
    full = Item(WINDOW_KIND, "t:b:rpm", 1, 1, "team rpm limit", "requests")
    assert (await counters.admit([full], rid(), 60)).ok
    refused = await counters.admit([a, full], rid(), 60)
    assert not refused.ok and refused.failed == 1
    # the key window was not touched by the refused request
    after = await counters.admit([a], rid(), 60)
    assert after.ok and after.values == [1]


async def test_tokens_reserve_then_correct(counters):
    tpm = Item(WINDOW_KIND, "k:c:tpm", 100, 60, "key tpm limit", "tokens")
    first = await counters.admit([tpm], rid(), 60)
    assert first.ok and first.values == [60]
    assert not (await counters.admit([tpm], rid(), 60)).ok  # 60 + 60 > 100: the reservation counts
    await counters.settle([tpm], first, "x", token_delta=-50, cost=0)  # real usage was 10 tokens
    second = await counters.admit([tpm], rid(), 60)
    assert second.ok and second.values == [70]


async def test_oversized_request_passes_an_empty_token_window(counters):
    tpm = Item(WINDOW_KIND, "k:d:tpm", 10, 500, "key tpm limit", "tokens")
    assert (await counters.admit([tpm], rid(), 60)).ok
    assert not (await counters.admit([tpm], rid(), 60)).ok


async def test_parallel_slots_release_and_expire(counters):
    par = Item(PARALLEL_KIND, "k:e:par", 2, 0, "key parallel request limit")
    r1, r2 = rid(), rid()
    a1 = await counters.admit([par], r1, 60)
    a2 = await counters.admit([par], r2, 60)
    assert a1.ok and a2.ok
    assert not (await counters.admit([par], rid(), 60)).ok
    await counters.settle([par], a1, r1, 0, 0)
    await counters.settle([par], a1, r1, 0, 0)  # a second release of the same request changes nothing
    assert (await counters.admit([par], rid(), 0.2)).ok
    assert not (await counters.admit([par], rid(), 60)).ok
    await asyncio.sleep(0.35)  # the 0.2 s lease ran out: a crashed holder does not leak its slot
    assert (await counters.admit([par], rid(), 60)).ok


async def test_budget_starts_from_stored_spend_and_accumulates(counters):
    budget = Item(BUDGET_KIND, "k:f:spend:0", 1.0, 0.75, "key budget")
    a = await counters.admit([budget], rid(), 60)
    assert a.ok and a.values == [0.75]
    await counters.settle([budget], a, "r", 0, 0.3)
    b = await counters.admit([budget], rid(), 60)
    assert not b.ok and b.values[0] == pytest.approx(1.05)
    # a new budget period is a new counter, loaded from the (reset) stored spend
    fresh = Item(BUDGET_KIND, "k:f:spend:123", 1.0, 0.0, "key budget")
    assert (await counters.admit([fresh], rid(), 60)).ok


async def test_concurrent_admissions_are_exact(counters):
    items = [Item(WINDOW_KIND, "k:g:rpm", 25, 1, "key rpm limit", "requests"),
             Item(PARALLEL_KIND, "k:g:par", 1000, 0, "key parallel request limit")]
    results = await asyncio.gather(*(counters.admit(items, rid(), 60) for _ in range(200)))
    assert sum(r.ok for r in results) == 25


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0"])  # our connection; redis-py's
async def test_an_unreachable_redis_refuses_the_admission_with_a_clear_503(url):
    from lockgate.state.counters_client import CountersUnavailable

    c = RedisCounters(url, "lockgate-test-down:")
    assert (c.pipe is None) == url.startswith("rediss://")
    try:
        with pytest.raises(CountersUnavailable) as caught:
            await c.admit([Item(WINDOW_KIND, "k", 5, 1)], rid(), 60)
        assert caught.value.status == 503 and "not reachable" in str(caught.value)
    finally:
        await c.close()
