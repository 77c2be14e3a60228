"""Enforcement end to end: real gateway processes, real SDK clients, the provider mocks.

Every test runs on the embedded default (SQLite + in-process counters, one gateway) and on
PostgreSQL + Redis (a fresh database and Redis key prefix per run, TWO gateway processes sharing
them).  PostgreSQL and Redis must be reachable: these tests fail, never skip, when they are not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, gateway_config, start_gateway

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICE = 1e-3  # USD per token of the priced mock deployments


def config(mocks, extra_general=None, governance=None) -> dict:
    cfg = gateway_config(mocks)
    priced = {"input_cost_per_token": PRICE, "output_cost_per_token": PRICE}
    cfg["model_list"] += [
        {"model_name": "priced-mock", "litellm_params": {"model": "mock/priced", "mock_response": "ok then"},
         "model_info": priced},
        {"model_name": "slow-mock", "litellm_params": {"model": "mock/slow", "mock_response": "slow answer",
                                                       "mock_latency_ms": 400}, "model_info": priced},
        # long enough that six requests overlap even on a loaded machine (the parallel-slot test)
        {"model_name": "slower-mock", "litellm_params": {"model": "mock/slower", "mock_response": "slower answer",
                                                         "mock_latency_ms": 1500}, "model_info": priced},
    ]
    cfg["general_settings"].update(extra_general or {})
    cfg["lockgate_settings"] = {"governance": {"budget_reset_interval": 1, **(governance or {})}}
    return cfg


async def _create_db(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_db(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class Backend:
    def __init__(self, name: str, mocks, tmp: Path) -> None:
        self.name = name
        self.mocks = mocks
        self.tmp = tmp
        self.general: dict = {}
        self.governance: dict = {}
        self.db = None
        self.gateways = []
        if name == "pg_redis":
            self.db = "lockgate_gov_" + uuid.uuid4().hex[:10]
            asyncio.run(_create_db(self.db))
            self.prefix = f"lockgate-test-{uuid.uuid4().hex[:10]}:"
            self.general = {"database_url": f"postgresql://postgres@127.0.0.1:5432/{self.db}", "redis_url": REDIS_URL}
            self.governance = {"redis_key_prefix": self.prefix}

    def start(self, label: str, **cfg_extra):
        path = self.tmp / label
        path.mkdir(exist_ok=True)
        gw = start_gateway(config(self.mocks, self.general, self.governance), path)
        self.gateways.append(gw)
        return gw

    def close(self) -> None:
        for gw in self.gateways:
            if gw.process.poll() is None:
                gw.process.terminate()
                gw.process.wait(10)
        if self.db:
            asyncio.run(_drop_db(self.db))
            import redis

            r = redis.Redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(match=self.prefix + "*"))
            if keys:
                r.delete(*keys)


@pytest.fixture(scope="module", params=["embedded", "pg_redis"])
def env(request, mocks, tmp_path_factory):
    backend = Backend(request.param, mocks, tmp_path_factory.mktemp(f"gov-{request.param}"))
    try:
        a = backend.start("a")
        b = backend.start("b") if request.param == "pg_redis" else a
        backend.a, backend.b = a, b
        yield backend
    finally:
        backend.close()


def gen_key(gw, **fields) -> str:
    r = httpx.post(gw.url + "/key/generate", headers=ADMIN, json=fields, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["key"]


def chat(gw, key, model="priced-mock", **body) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "hello"}], **body}
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=payload,
                      timeout=30)


def spend_logs(gw, key) -> list[dict]:
    rows, page = [], 1
    while True:
        data = httpx.get(gw.url + "/spend/logs", headers=ADMIN, timeout=10,
                         params={"api_key": key, "page_size": 1000, "page": page}).json()["data"]
        rows += data
        if len(data) < 1000:
            return rows
        page += 1


def wait_window_start() -> None:
    """Fixed 60 s windows: keep a burst inside one window."""
    if time.time() % 60 > 45:
        time.sleep(60 - time.time() % 60 + 0.2)


# ---------------------------------------------------------------------------------------------- rate limits


def test_rpm_limit_is_exact_across_instances(env):
    n = 20
    key = gen_key(env.a, rpm_limit=n)
    wait_window_start()
    targets = [env.a, env.b] * 40

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda gw: chat(gw, key, "mock-model"), targets))
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(ok) == n
    assert len(limited) == len(targets) - n
    for r in limited:
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert "key rpm limit" in r.json()["error"]["message"]
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
    for r in ok:  # headers on every response of a key with limits
        assert r.headers["x-ratelimit-limit-requests"] == str(n)
        assert 0 <= int(r.headers["x-ratelimit-remaining-requests"]) < n
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    # the master key has no limits: no rate-limit headers
    master = chat(env.a, MASTER_KEY, "mock-model")
    assert master.status_code == 200 and "x-ratelimit-limit-requests" not in master.headers


def test_tpm_reserves_then_corrects(env):
    key = gen_key(env.a, tpm_limit=100)
    wait_window_start()
    first = chat(env.a, key, max_tokens=95)  # reserves ~8 + 95: alone in an empty window, it passes
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-tokens"] == "100"
    time.sleep(0.3)
    second = chat(env.b, key, max_tokens=95)  # real usage of the first (a few tokens) + ~103 reserved > 100
    assert second.status_code == 429
    assert "key tpm limit" in second.json()["error"]["message"]
    third = chat(env.b, key, max_tokens=5)  # fits only because the first reservation was corrected
    assert third.status_code == 200, third.text


def test_parallel_limit_and_release(env):
    key = gen_key(env.a, max_parallel_requests=2)
    targets = [env.a, env.b] * 3
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda gw: chat(gw, key, "slower-mock"), targets))
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429, 429, 429]
    assert any("key parallel request limit" in r.json()["error"]["message"]
               for r in responses if r.status_code == 429)
    # released at the end: the next two run again
    with ThreadPoolExecutor(2) as pool:
        again = list(pool.map(lambda gw: chat(gw, key, "slower-mock"), [env.a, env.b]))
    assert [r.status_code for r in again] == [200, 200]


def test_stream_disconnect_releases_the_slot(env):
    key = gen_key(env.a, max_parallel_requests=1)
    body = {"model": "openai-model", "stream": True, "messages": [{"role": "user", "content": "TRIGGER_LONGSTREAM"}]}
    started, leave = threading.Event(), threading.Event()
    seen: list[int] = []

    def reader() -> None:  # a client that keeps reading a 10 s stream, then hangs up midway
        with httpx.stream("POST", env.a.url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as resp:
            seen.append(resp.status_code)
            for _ in resp.iter_bytes():
                started.set()
                if leave.is_set():
                    return

    thread = threading.Thread(target=reader)
    thread.start()
    assert started.wait(10) and seen == [200]
    time.sleep(0.2)
    busy = chat(env.b, key, "mock-model")
    assert busy.status_code == 429, "the stream's parallel slot was not held while it ran"
    leave.set()
    thread.join(10)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        r = chat(env.b, key, "mock-model")
        if r.status_code == 200:
            break
        time.sleep(0.05)
    assert r.status_code == 200, "the slot of the abandoned stream was not released"


def test_per_model_limits(env):
    key = gen_key(env.a, model_rpm_limit={"priced-mock": 1})
    wait_window_start()
    assert chat(env.a, key).status_code == 200
    refused = chat(env.b, key)
    assert refused.status_code == 429 and "key rpm limit for model priced-mock" in refused.json()["error"]["message"]
    assert chat(env.b, key, "mock-model").status_code == 200  # other models are not limited

    key = gen_key(env.a, model_max_budget={"priced-mock": 1e-6})
    assert chat(env.a, key).status_code == 200
    time.sleep(0.3)
    refused = chat(env.b, key)
    assert refused.status_code == 429
    assert "key budget for model priced-mock exceeded" in refused.json()["error"]["message"]
    assert chat(env.b, key, "mock-model").status_code == 200


# ---------------------------------------------------------------------------------------------- budgets


def test_budget_exceeded_in_both_dialects(env):
    key = gen_key(env.a, max_budget=1e-6)
    oa = openai.OpenAI(base_url=env.a.url + "/v1", api_key=key, max_retries=0)
    first = oa.chat.completions.with_raw_response.create(model="priced-mock",
                                                         messages=[{"role": "user", "content": "hi"}])
    cost = float(first.headers["x-lockgate-response-cost"])
    assert cost > 0 and float(first.headers["x-lockgate-key-spend"]) == pytest.approx(cost)
    time.sleep(0.3)
    with pytest.raises(openai.RateLimitError) as exc:
        openai.OpenAI(base_url=env.b.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="priced-mock", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.code == "insufficient_quota" and "key budget exceeded" in str(exc.value)
    an = anthropic.Anthropic(base_url=env.b.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as aexc:
        an.messages.create(model="priced-mock", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert "key budget exceeded" in str(aexc.value)

    team = httpx.post(env.a.url + "/team/new", headers=ADMIN, json={"max_budget": 1e-6}, timeout=10).json()
    tkey = gen_key(env.a, team_id=team["team_id"])
    assert chat(env.a, tkey).status_code == 200
    time.sleep(0.3)
    refused = chat(env.b, tkey)
    assert refused.status_code == 429 and "team budget exceeded" in refused.json()["error"]["message"]
    assert refused.json()["error"]["type"] == "insufficient_quota"


def test_end_user_budget_and_block(env):
    end_user = "customer-" + uuid.uuid4().hex[:8]
    r = httpx.post(env.a.url + "/customer/new", headers=ADMIN, json={"user_id": end_user, "max_budget": 1e-6},
                   timeout=10)
    assert r.status_code == 200, r.text
    assert chat(env.a, MASTER_KEY, user=end_user).status_code == 200
    time.sleep(0.3)
    refused = chat(env.b, MASTER_KEY, user=end_user)
    assert refused.status_code == 429 and "end user budget exceeded" in refused.json()["error"]["message"]
    assert chat(env.b, MASTER_KEY, user="someone-else").status_code == 200


def test_budget_overshoot_bounded_by_requests_in_flight(env):
    probe = chat(env.a, MASTER_KEY, "slow-mock")
    cost = float(probe.headers["x-lockgate-response-cost"])
    budget = 5.5 * cost
    key = gen_key(env.a, max_budget=budget)
    concurrency = 6
    with ThreadPoolExecutor(concurrency) as pool:
        responses = list(pool.map(lambda gw: chat(gw, key, "slow-mock"), [env.a, env.b] * 15))
    ok = sum(r.status_code == 200 for r in responses)
    assert ok * cost <= budget + concurrency * cost  # overshoot at most the requests already in flight
    assert ok >= 6  # and the budget is usable up to its end
    assert all(r.status_code in (200, 429) for r in responses)


# ---------------------------------------------------------------------------------------------- access


def test_model_access_ip_allowlist_and_expiry(env):
    key = gen_key(env.a, models=["mock-model"])
    with pytest.raises(openai.PermissionDeniedError) as exc:
        openai.OpenAI(base_url=env.b.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="openai-model", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.code == "model_access_denied"
    assert chat(env.b, key, "mock-model").status_code == 200
    # /v1/models lists only what the key may call, as LiteLLM does; the master key sees everything
    client = openai.OpenAI(base_url=env.b.url + "/v1", api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["mock-model"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("openai-model")
    everything = openai.OpenAI(base_url=env.b.url + "/v1", api_key=MASTER_KEY, max_retries=0).models.list()
    assert {"mock-model", "openai-model"} <= {m.id for m in everything}

    elsewhere = gen_key(env.a, allowed_ips=["10.0.0.0/8"])
    r = chat(env.b, elsewhere, "mock-model")
    assert r.status_code == 403 and r.json()["error"]["code"] == "ip_not_allowed"
    assert chat(env.b, gen_key(env.a, allowed_ips=["127.0.0.0/8"]), "mock-model").status_code == 200

    short = gen_key(env.a, duration="1s")
    assert chat(env.b, short, "mock-model").status_code == 200
    time.sleep(1.2)
    r = chat(env.b, short, "mock-model")
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_expired"

    r = chat(env.b, "sk-not-a-key-" + uuid.uuid4().hex, "mock-model")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_block_takes_effect_on_another_instance_within_one_second(env):
    key = gen_key(env.a)
    assert chat(env.b, key, "mock-model").status_code == 200  # cached on b now
    r = httpx.post(env.a.url + "/key/block", headers=ADMIN, json={"key": key}, timeout=10)
    assert r.status_code == 200, r.text
    blocked_at = time.monotonic()
    while True:
        status = chat(env.b, key, "mock-model").status_code
        if status == 401:
            break
        assert time.monotonic() - blocked_at < 1.0, "block not effective on the other instance within 1 s"
        time.sleep(0.02)
    httpx.post(env.a.url + "/key/unblock", headers=ADMIN, json={"key": key}, timeout=10)
    deadline = time.monotonic() + 1
    while chat(env.b, key, "mock-model").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- kill -9


def test_kill_9_loses_no_spend_record_and_counts_none_twice(env):
    gw = env.start("killed")
    key = gen_key(gw)
    completed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(i: int) -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"model": "priced-mock", "messages": [{"role": "user", "content": f"w{i} r{n}"}]}
                stream = n % 2 == 0
                if stream:
                    body["stream"] = True
                try:
                    with client.stream("POST", gw.url + "/v1/chat/completions", json=body,
                                       headers={"Authorization": f"Bearer {key}"}) as resp:
                        data = resp.read()  # raises if the answer was cut
                        if resp.status_code == 200 and (not stream or b"[DONE]" in data):
                            with lock:
                                completed.append(resp.headers["x-request-id"])
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.kill(gw.process.pid, signal.SIGKILL)
    gw.process.wait(5)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(completed) > 50
    restarted = start_gateway(config(env.mocks, env.general, env.governance), gw.config_path.parent)
    env.gateways.append(restarted)
    deadline = time.monotonic() + 10
    while True:
        logs = spend_logs(restarted, key)
        ids = [row["request_id"] for row in logs]
        if set(completed) <= set(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    missing = set(completed) - set(ids)
    assert not missing, f"{len(missing)} of {len(completed)} fully received answers have no spend record ({len(ids)} logged)"
    assert len(ids) == len(set(ids))
    info = httpx.get(restarted.url + "/key/info", headers=ADMIN, params={"key": key}, timeout=10).json()
    spend = (info.get("info") or info)["spend"]
    assert spend == pytest.approx(sum(row["spend"] for row in logs), rel=1e-9)  # nothing counted twice


def test_spend_rows_carry_time_to_first_token_and_tags(env):
    """A streamed answer's row has metadata.ttft_ms; a request's tags (metadata.tags, tags, x-lockgate-tags) are
    in metadata.tags: the admin UI's overview TTFT and usage by tag read them (ui/data/, state/rollup.py)."""
    key = gen_key(env.a)
    streamed = chat(env.a, key, stream=True)
    assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
    plain = chat(env.a, key, metadata={"tags": ["team-x", "batch"]}, tags=["extra"])
    assert plain.status_code == 200
    deadline = time.time() + 10
    while time.time() < deadline:
        rows = {r["request_id"]: r for r in spend_logs(env.a, key)}
        if len(rows) == 2:
            break
        time.sleep(0.2)
    by_stream = {bool(r["metadata"].get("stream")): r["metadata"] for r in rows.values()}
    ttft = by_stream[True].get("ttft_ms")
    assert isinstance(ttft, float | int) and 0 < ttft < 30_000
    assert "ttft_ms" not in by_stream[False]
    assert by_stream[False]["tags"] == ["batch", "extra", "team-x"]
    assert "tags" not in by_stream[True]
