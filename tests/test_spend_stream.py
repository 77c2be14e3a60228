"""The Redis spend stream (shared mode), against the real Redis: the record travels in the settle call,
consumers apply, acknowledge and delete, take over what a dead consumer left, and an outage loses nothing."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis

from lockgate.config import Deployment, Settings
from lockgate.context import RequestContext
from lockgate.dialects import openai_chat
from lockgate.governance.enforcement import Governance, Grant
from lockgate.state.counters import BUDGET_KIND, SPEND_STREAM, Item, RedisCounters
from lockgate.state.spend_stream import GROUP, SpendStream
from tests.conftest import free_port
from tests.test_spend_journal import FakeStore, record

REDIS_URL = "redis://127.0.0.1:6379/0"
DEP = Deployment(model_name="m", provider="openai", model="gpt-4o", id="d1",
                 model_info={"input_cost_per_token": 1e-3, "output_cost_per_token": 1e-3})


class Journal:
    def __init__(self) -> None:
        self.records: list = []

    def append(self, rec) -> None:
        self.records.append(rec)


@pytest.fixture
async def prefix():
    name = f"lockgate-test-{uuid.uuid4().hex[:10]}:"
    yield name
    client = aioredis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=name + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _governance(counters, stream) -> tuple[Governance, Journal]:
    gw = SimpleNamespace(settings=Settings(deployments=[DEP], master_key="sk-master"), groups={})
    gov = Governance(gw)  # type: ignore[arg-type]
    gov.counters, gov.remote, gov.spend_stream = counters, True, stream
    journal = Journal()
    gov.writer = journal
    return gov, journal


def _answered(gov: Governance) -> tuple[RequestContext, Grant]:
    ctx = RequestContext(request_id=uuid.uuid4().hex, route="chat", dialect=openai_chat, headers={})
    ctx.principal, ctx.model, ctx.body, ctx.deployment, ctx.status = "master", "m", {}, DEP, 200
    ctx.usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
    return ctx, Grant(gov)


async def test_the_record_travels_in_the_call_that_settles_the_counters(prefix):
    counters = RedisCounters(REDIS_URL, prefix)
    gov, journal = _governance(counters, object())
    ctx, grant = _answered(gov)
    budget = Item(BUDGET_KIND, "k:x:spend:0", 100.0, 0.5, "key budget")
    grant.items = [budget]
    grant.admission = await counters.admit(grant.items, ctx.request_id, 60)
    pending = gov.finish(ctx, grant)
    assert pending is not None  # the caller awaits it before the answer's last bytes
    await pending
    assert grant.settled and journal.records == []  # not journaled locally: it is in Redis
    entries = await counters.client.xrange(prefix + SPEND_STREAM)
    assert len(entries) == 1
    from lockgate.state.journal import decode

    carried = decode(entries[0][1][b"r"])
    assert carried.request_id == ctx.request_id and carried.spend == pytest.approx(0.03)
    assert float(await counters.client.get(prefix + "k:x:spend:0")) == pytest.approx(0.53)
    await gov.account(ctx)  # nothing left to settle: the spend is not added twice
    assert float(await counters.client.get(prefix + "k:x:spend:0")) == pytest.approx(0.53)
    await counters.close()


async def test_without_redis_at_the_end_the_record_falls_back_to_the_local_journal(prefix):
    counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0", prefix)  # nothing listens there
    gov, journal = _governance(counters, object())
    ctx, grant = _answered(gov)
    await gov.finish(ctx, grant)
    assert [r.request_id for r in journal.records] == [ctx.request_id]
    await counters.close()


async def test_consumers_apply_acknowledge_and_delete(prefix):
    client = aioredis.from_url(REDIS_URL)
    key = prefix + SPEND_STREAM
    store = FakeStore()
    stream = SpendStream(client, store, key, interval=0.01)
    await stream.start()
    records = [record() for _ in range(30)]
    from lockgate.state.journal import encode

    for r in records:
        await client.xadd(key, {"r": encode(r)})
    for _ in range(300):
        if len(store.rows) == 30 and await client.xlen(key) == 0:
            break
        await asyncio.sleep(0.02)
    assert set(store.rows) == {r.request_id for r in records}
    assert await client.xlen(key) == 0  # acknowledged and deleted: the stream holds only what waits
    await stream.close()
    await client.aclose()


async def test_what_a_dead_consumer_read_is_taken_over(prefix):
    client = aioredis.from_url(REDIS_URL)
    key = prefix + SPEND_STREAM
    await client.xgroup_create(key, GROUP, id="0", mkstream=True)
    from lockgate.state.journal import encode

    records = [record() for _ in range(5)]
    for r in records:
        await client.xadd(key, {"r": encode(r)})
    # a consumer reads them and is killed before it applies them
    read = await client.xreadgroup(GROUP, "dead-instance", {key: ">"}, count=10)
    assert len(read[0][1]) == 5
    store = FakeStore()
    survivor = SpendStream(client, store, key, interval=0.01, claim_idle=0.3)
    await survivor.start()  # new entries only: the dead one's are pending, not new
    await asyncio.sleep(0.4)
    assert await survivor.claim_once() == 5
    assert set(store.rows) == {r.request_id for r in records}
    assert await client.xlen(key) == 0
    await survivor.close()
    await client.aclose()


async def test_a_database_outage_only_delays(prefix):
    client = aioredis.from_url(REDIS_URL)
    key = prefix + SPEND_STREAM
    store = FakeStore()
    store.fail = 3
    stream = SpendStream(client, store, key, interval=0.01, max_backoff=0.05)
    await stream.start()
    from lockgate.state.journal import encode

    records = [record() for _ in range(10)]
    for r in records:
        await client.xadd(key, {"r": encode(r)})
    for _ in range(300):
        if len(store.rows) == 10:
            break
        await asyncio.sleep(0.02)
    assert set(store.rows) == {r.request_id for r in records} and stream.failures == 3
    await stream.close()
    await client.aclose()
