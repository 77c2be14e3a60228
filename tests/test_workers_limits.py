"""``lockgate serve --workers N`` on the embedded default: limits hold exactly across the workers.

Real ``lockgate serve --workers N`` processes (N = 2 and 4), no Redis: the workers share their
counters through the supervisor's counters service (state/counters_service.py).  Every request opens
a new connection, so the kernel spreads them over the workers; each test checks that more than one
worker answered (the first 16 hex characters of ``x-request-id`` name the worker process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import MASTER_KEY, MockHost, free_port
from tests.mocks import MOCK_API_KEY

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICE = 1e-3
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


class Served:
    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url, self.process, self.log = url, process, log

    def post(self, key: str, body: dict | None = None, path: str = "/v1/chat/completions") -> httpx.Response:
        # a new connection every time: spread over the workers by the kernel
        return httpx.post(self.url + path, headers={"Authorization": f"Bearer {key}"}, json=body or CHAT,
                          timeout=30)

    def key(self, **fields) -> str:
        r = httpx.post(self.url + "/key/generate", headers=ADMIN, json=fields, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["key"]


def serve_workers(config: dict, tmp: Path, workers: int) -> Served:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp / "gateway.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "REDIS_URL", "REDIS_HOST")}
    process = subprocess.Popen([sys.executable, "-m", "lockgate.cli", "serve", "--config", str(path), "--port",
                                str(port), "--workers", str(workers)], stdout=log.open("wb"),
                               stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gateway exited:\n" + log.read_text())
        try:
            if httpx.get(url + "/health/readiness", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("gateway did not start:\n" + log.read_text())
    served = Served(url, process, log)
    _wait_all_workers(served, workers)
    return served


def _wait_all_workers(served: Served, workers: int) -> None:
    """Until every worker answered once (they finish starting one after the other)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < workers and time.monotonic() < deadline:
        r = httpx.post(served.url + "/v1/chat/completions", headers=ADMIN, json=CHAT, timeout=10)
        if r.status_code == 200:
            seen.add(worker_of(r))
        else:
            time.sleep(0.05)


def worker_of(resp: httpx.Response) -> str:
    return resp.headers["x-request-id"][:16]


def stop(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(30)
    except subprocess.TimeoutExpired:
        served.process.kill()


@pytest.fixture(scope="module")
def faulty():
    from tests.mocks import faulty_api

    host = MockHost()
    server = host.start("faulty", faulty_api.create_app)
    yield server
    host.stop()


@pytest.fixture(scope="module", params=[2, 4], ids=["workers2", "workers4"])
def served(request, faulty, tmp_path_factory):
    label = "workers-" + uuid.uuid4().hex[:8]
    priced = {"input_cost_per_token": PRICE, "output_cost_per_token": PRICE}
    config = {
        "model_list": [
            {"model_name": "m", "litellm_params": {"model": "mock/m", "mock_response": "ok"}, "model_info": priced},
            {"model_name": "slow", "litellm_params": {"model": "mock/slow", "mock_response": "slow",
                                                      "mock_latency_ms": 1500}, "model_info": priced},
            {"model_name": "cool", "litellm_params": {"model": "openai/gpt-4o", "api_key": MOCK_API_KEY,
                                                      "api_base": f"{faulty.url}/{label}/429/v1"}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {"cooldown_time": 60, "num_retries": 0},
        "lockgate_settings": {"governance": {"key_cache_ttl": 120}},
    }
    gw = serve_workers(config, tmp_path_factory.mktemp(f"workers{request.param}"), request.param)
    gw.workers = request.param
    gw.faulty_label = label
    yield gw
    stop(gw)


def _inside_one_window(seconds: float = 15) -> None:
    """rpm windows are fixed minutes: start where the next ``seconds`` stay in the same one."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.2)


def _parallel(fn, n: int, workers: int = 8) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: fn(), range(n)))


def test_rpm_limit_is_exact_across_workers(served):
    key = served.key(rpm_limit=5)
    _inside_one_window()
    replies = _parallel(lambda: served.post(key), 20, 4)
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * 5 + [429] * 15, statuses
    assert len({worker_of(r) for r in replies}) >= 2  # the requests really were spread
    refused = next(r for r in replies if r.status_code == 429)
    assert "key rpm limit" in refused.json()["error"]["message"]


def test_parallel_slots_are_exact_across_workers(served):
    for _ in range(5):  # 8 new connections all land on one worker now and then: that proves nothing, again
        key = served.key(max_parallel_requests=2)
        replies = _parallel(lambda: served.post(key, {**CHAT, "model": "slow"}), 8, 8)  # noqa: B023
        statuses = sorted(r.status_code for r in replies)
        assert statuses == [200] * 2 + [429] * 6, statuses
        if len({worker_of(r) for r in replies}) >= 2:
            break
    assert len({worker_of(r) for r in replies}) >= 2
    # the slots are free again once the answers arrived: sequential requests with one slot never collide,
    # whichever worker takes the next one (the slot is released before the answer's last bytes)
    one = served.key(max_parallel_requests=1)
    sequential = _until_spread(lambda: served.post(one))
    assert {r.status_code for r in sequential} == {200}
    assert len({worker_of(r) for r in sequential}) >= 2
    streamed = _until_spread(lambda: served.post(one, {**CHAT, "stream": True}))  # released before the last event
    assert {r.status_code for r in streamed} == {200}
    assert all(r.text.rstrip().endswith("data: [DONE]") for r in streamed)
    assert len({worker_of(r) for r in streamed}) >= 2


def _until_spread(send, at_least: int = 12, at_most: int = 60) -> list:
    """``at_least`` sequential requests, more (up to ``at_most``) until two workers answered: one worker
    can win every accept for a while, which would prove nothing about sharing the slots."""
    replies: list = []
    while len(replies) < at_least or (len({worker_of(r) for r in replies}) < 2 and len(replies) < at_most):
        replies.append(send())
    return replies


def test_budget_is_exact_across_workers(served):
    cost = float(served.post(MASTER_KEY).headers["x-lockgate-response-cost"])
    assert cost > 0
    key = served.key(max_budget=cost * 3.5)
    replies = [served.post(key) for _ in range(10)]
    assert [r.status_code for r in replies] == [200] * 4 + [429] * 6, [r.status_code for r in replies]
    assert len({worker_of(r) for r in replies}) >= 2
    assert "key budget exceeded" in replies[-1].json()["error"]["message"]


def test_a_blocked_key_is_refused_by_every_worker_at_once(served):
    key = served.key()
    warm: list = []  # until every worker has the key cached (ttl 120 s); a loaded machine spreads unevenly,
    # and one worker may win no accept at all for a while: two that cached it are what the test needs
    while len({worker_of(r) for r in warm}) < served.workers and len(warm) < 40 * served.workers:
        warm.append(served.post(key))
    assert all(r.status_code == 200 for r in warm)
    cached = {worker_of(r) for r in warm}
    assert len(cached) >= 2
    r = httpx.post(served.url + "/key/block", headers=ADMIN, json={"key": key}, timeout=30)
    assert r.status_code == 200, r.text
    time.sleep(0.2)
    after: list = []  # until two of the workers that had the key cached answered
    while len({worker_of(r) for r in after} & cached) < 2 and len(after) < 40 * served.workers:
        after.append(served.post(key))
    assert {r.status_code for r in after} <= {401, 403}, [r.status_code for r in after]
    assert len({worker_of(r) for r in after} & cached) >= 2


def test_a_cooldown_reaches_every_worker(served, faulty):
    label = served.faulty_label
    first = served.post(MASTER_KEY, {**CHAT, "model": "cool"})
    assert first.status_code == 429  # the provider's 429: the deployment cools down for 60 s
    assert faulty.recorder.counts[label] == 1
    time.sleep(0.2)
    later = [served.post(MASTER_KEY, {**CHAT, "model": "cool"}) for _ in range(4 * served.workers)]
    assert all("cooling down" in r.json()["error"]["message"] for r in later), [r.text for r in later]
    assert len({worker_of(r) for r in later}) >= 2
    assert faulty.recorder.counts[label] == 1  # no other worker called the provider again


def test_metrics_of_every_worker_are_aggregated(served):
    time.sleep(1.5)  # what earlier tests did is in the shared files (each worker flushes once a second)
    before = _requests_total(served, "m")
    replies = _parallel(lambda: served.post(MASTER_KEY), 30, 4)
    assert all(r.status_code == 200 for r in replies)
    assert len({worker_of(r) for r in replies}) >= 2
    deadline = time.monotonic() + 10
    while _requests_total(served, "m") < before + 30 and time.monotonic() < deadline:
        time.sleep(0.2)  # each worker writes its numbers to the shared files within a second
    assert _requests_total(served, "m") == before + 30


def _requests_total(served: Served, model: str) -> float:
    text = httpx.get(served.url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lockgate_requests_total{") and f'model="{model}"' in line)


def test_a_spend_reset_reaches_every_worker(served):
    cost = float(served.post(MASTER_KEY).headers["x-lockgate-response-cost"])
    key = served.key(max_budget=cost * 5.5)  # six answers, then refusals: ten requests reach both workers
    assert [served.post(key).status_code for _ in range(10)] == [200] * 6 + [429] * 4
    r = httpx.post(served.url + "/key/update", headers=ADMIN, json={"key": key, "spend": 0}, timeout=30)
    assert r.status_code == 200, r.text
    # the running spend lives in the counters service: reset once, for every worker
    after = [served.post(key) for _ in range(10)]
    assert [r.status_code for r in after] == [200] * 6 + [429] * 4
    assert len({worker_of(r) for r in after}) >= 2
