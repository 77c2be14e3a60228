"""Shared mode (PostgreSQL + Redis): an instance killed with -9 and replaced by a fresh process on an
empty disk loses no spend record of an answer a client received (state/spend_stream.py).

Two instances share a fresh database and a unique Redis key prefix; clients load both with streamed
and non-streamed requests; one instance is killed with -9 mid-load and a replacement starts in a new,
empty directory (what Kubernetes does when it reschedules a pod).  The spend writers gather batches
for 2 s, so the killed instance certainly held records it had not written to the database: they must
come through Redis (entries it never read, and entries it read but never applied, which another
instance claims).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
import time
import uuid

import httpx
import pytest
import redis

from tests.conftest import MASTER_KEY, start_gateway
from tests.test_governance_e2e import PG_ADMIN, REDIS_URL, _create_db, _drop_db

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICE = 1e-3


@pytest.fixture
def shared(tmp_path):
    db = "lockgate_failover_" + uuid.uuid4().hex[:10]
    asyncio.run(_create_db(db))
    prefix = f"lockgate-test-{uuid.uuid4().hex[:10]}:"
    config = {
        "model_list": [{"model_name": "priced", "litellm_params": {"model": "mock/priced", "mock_response": "ok then",
                                                                   "mock_latency_ms": 5},
                        "model_info": {"input_cost_per_token": PRICE, "output_cost_per_token": PRICE}}],
        "general_settings": {"master_key": MASTER_KEY, "redis_url": REDIS_URL,
                             "database_url": f"postgresql://postgres@127.0.0.1:5432/{db}"},
        "lockgate_settings": {"governance": {"redis_key_prefix": prefix, "spend_batch_interval_ms": 2000,
                                             "spend_stream_claim_idle_s": 2}},
    }
    gateways: list = []
    yield config, tmp_path, gateways, db, prefix
    for gw in gateways:
        if gw.process.poll() is None:
            gw.process.terminate()
            gw.process.wait(10)
    asyncio.run(_drop_db(db))
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + "*"))
    if keys:
        r.delete(*keys)


async def _rows(db: str) -> list[tuple[str, str, float]]:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + db)
    try:
        return [tuple(r) for r in await conn.fetch("SELECT request_id, api_key, spend FROM spend_logs")]
    finally:
        await conn.close()


def test_a_replaced_instance_loses_no_spend_record(shared):
    config, tmp, gateways, db, prefix = shared
    a = start_gateway(config, _dir(tmp / "a"))
    b = start_gateway(config, _dir(tmp / "b"))
    gateways += [a, b]
    r = httpx.post(a.url + "/key/generate", headers=ADMIN, json={"max_budget": 1000}, timeout=10)
    key = r.json()["key"]
    probe = httpx.post(a.url + "/v1/chat/completions", headers=ADMIN, timeout=10,
                       json={"model": "priced", "messages": [{"role": "user", "content": "which process?"}]})
    a_ids = probe.headers["x-request-id"][:16]  # the request ids of instance a start with it
    targets = [a.url, b.url]
    completed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            url = targets[n % len(targets)]
            body = {"model": "priced", "messages": [{"role": "user", "content": f"c{i} r{n}"}]}
            stream = n % 3 == 0
            if stream:
                body["stream"] = True
            try:
                with httpx.Client(timeout=10) as http, http.stream(
                        "POST", url + "/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {key}"}) as resp:
                    data = resp.read()  # raises when the answer was cut
                    if resp.status_code == 200 and (not stream or b"[DONE]" in data):
                        with lock:
                            completed.append(resp.headers["x-request-id"])
            except httpx.HTTPError:
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.kill(a.process.pid, signal.SIGKILL)  # mid-load, with unwritten records in its batch
    a.process.wait(5)
    with lock:
        done_by_a = sum(1 for rid in completed if rid.startswith(a_ids))
    replacement = start_gateway(config, _dir(tmp / "fresh-disk"))  # a new, empty directory
    gateways.append(replacement)
    targets[0] = replacement.url
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(completed) > 50 and done_by_a > 0
    deadline = time.monotonic() + 30  # claim after 2 s idle, batches gathered 2 s
    while True:
        rows = asyncio.run(_rows(db))
        ids = {row[0] for row in rows}
        if set(completed) <= ids or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    missing = set(completed) - ids
    assert not missing, f"{len(missing)} of {len(completed)} fully received answers have no spend record"
    assert len(ids) == len(rows)  # one row per request id
    # the budgets agree: the key's spend in the database is the sum of its rows, and the running spend
    # Redis admits against is the same (each record was carried in the call that settled its cost)
    info = httpx.get(b.url + "/key/info", headers=ADMIN, params={"key": key}, timeout=10).json()
    spend = (info.get("info") or info)["spend"]
    token_hash = hashlib.sha256(key.encode()).hexdigest()
    assert spend == pytest.approx(sum(row[2] for row in rows if row[1] == token_hash), rel=1e-9)
    running = [float(v) for k in redis.Redis.from_url(REDIS_URL).scan_iter(match=prefix + "k:*:spend:*")
               if (v := redis.Redis.from_url(REDIS_URL).get(k)) is not None]
    assert running == [pytest.approx(spend, rel=1e-9)]
    assert redis.Redis.from_url(REDIS_URL).xlen(prefix + "spend") == 0  # applied, acknowledged, deleted


def _dir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path

