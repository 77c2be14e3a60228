"""Graceful shutdown and readiness (src/lockgate/shutdown.py), with real processes and signals.

On SIGTERM: readiness 503 at once, liveness 200, still serving for ``shutdown_grace_seconds``; then no new
connection, requests in flight finish, streams still open at ``graceful_shutdown_timeout`` end with an error
event in their client's dialect and keep their spend row; the process exits 0.  The same in each worker of
``serve --workers N``.  Readiness also names a dependency that stopped answering (Redis here: the gateway
refuses to start without it, so the realistic failure is Redis going away later).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from lockgate.config import ConfigError, from_dict
from tests.conftest import MASTER_KEY, free_port, gateway_config, start_gateway, start_redis_server

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
ANTHROPIC = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}
GRACE, TIMEOUT = 2.0, 3.0
MARGIN = 4.0  # start-up of the close, spend flush, interpreter exit


class Stream(threading.Thread):
    """One streamed request read to its end in a thread: the raw SSE text, its request id, when it ended."""

    def __init__(self, url: str, path: str, headers: dict[str, str], body: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.path, self.headers, self.body = url, path, headers, body
        self.text = ""
        self.request_id: str | None = None
        self.started = threading.Event()
        self.ended_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("POST", self.url + self.path, headers=self.headers, json=self.body,
                              timeout=60) as resp:
                assert resp.status_code == 200, resp.read()
                self.request_id = resp.headers["x-request-id"]
                for chunk in resp.iter_text():
                    self.text += chunk
                    self.started.set()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.started.set()


def _events(text: str) -> list[tuple[str | None, str]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((event, "\n".join(data)))
    return out


def _ready(url: str) -> httpx.Response:
    return httpx.get(url + "/health/readiness", timeout=5)


def _wait_readiness(url: str, status: int, within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        resp = _ready(url)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def _spend_rows(db: Path, ids: list[str]) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    try:
        marks = ",".join("?" * len(ids))
        rows = conn.execute(f"SELECT request_id, status, route FROM spend_logs WHERE request_id IN ({marks})", ids)
        return {r[0]: r for r in rows}
    finally:
        conn.close()


def _wait_exit(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return None


# ------------------------------------------------------------------ one process


def test_sigterm_drains_serves_then_ends_open_streams_and_exits_0(mocks, tmp_path):
    config = gateway_config(mocks)
    config["general_settings"].update(shutdown_grace_seconds=GRACE, graceful_shutdown_timeout=TIMEOUT)
    gw = start_gateway(config, tmp_path)
    url = gw.url
    try:
        assert _ready(url).status_code == 200
        long = [{"role": "user", "content": "TRIGGER_LONGSTREAM please"}]  # 200 chunks 50 ms apart: 10 s
        streams = {
            "openai": Stream(url, "/v1/chat/completions", AUTH,
                             {"model": "openai-model", "stream": True, "messages": long}),  # passthrough
            "anthropic": Stream(url, "/v1/messages", ANTHROPIC,  # the Anthropic door, translated
                                {"model": "openai-model", "stream": True, "max_tokens": 50, "messages": long}),
            "anthropic-native": Stream(url, "/v1/messages", ANTHROPIC,  # Anthropic passthrough
                                       {"model": "claude-model", "stream": True, "max_tokens": 50,
                                        "messages": long}),
        }
        slow: dict = {}

        def slow_request() -> None:  # the mock waits 3 s before answering: it finishes after SIGTERM
            r = httpx.post(url + "/v1/chat/completions", headers=AUTH, timeout=30, json={
                "model": "openai-model", "messages": [{"role": "user", "content": "TRIGGER_SLOW"}]})
            slow.update(status=r.status_code, body=r.json(), at=time.monotonic())

        slow_thread = threading.Thread(target=slow_request, daemon=True)
        slow_thread.start()
        for s in streams.values():
            s.start()
        for s in streams.values():
            assert s.started.wait(10) and s.error is None, s.error
        time.sleep(0.3)

        gw.process.send_signal(signal.SIGTERM)
        t0 = time.monotonic()

        # draining: readiness 503 at once, liveness 200, requests still served during the grace
        ready = _wait_readiness(url, 503, within=0.5)
        assert ready.status_code == 503, ready.text
        assert ready.json()["status"] == "draining" and "shutting_down" in ready.json()["failed"]
        assert httpx.get(url + "/health/liveliness", timeout=5).status_code == 200
        served = httpx.post(url + "/v1/chat/completions", headers=AUTH, timeout=10, json={
            "model": "mock-model", "messages": [{"role": "user", "content": "hi"}]})
        assert served.status_code == 200 and served.json()["choices"][0]["message"]["content"]
        assert time.monotonic() - t0 < GRACE

        # the slow request sent before SIGTERM completes
        slow_thread.join(10)
        assert slow["status"] == 200 and slow["body"]["choices"][0]["message"]["content"], slow

        # after the grace: no new connection
        time.sleep(max(0.0, t0 + GRACE + 0.6 - time.monotonic()))
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health/liveliness", timeout=2)

        code = _wait_exit(gw.process, GRACE + TIMEOUT + MARGIN + 10)
        elapsed = time.monotonic() - t0
        assert code == 0, gw.log_path.read_text()[-3000:]
        assert GRACE + TIMEOUT - 0.5 < elapsed < GRACE + TIMEOUT + MARGIN, elapsed
        for s in streams.values():
            s.join(10)
            assert s.error is None, s.error
            assert s.ended_at is not None and abs(s.ended_at - t0 - GRACE - TIMEOUT) < 1.5

        # the streams still open at the deadline ended with an error event in their client's dialect
        openai_events = _events(streams["openai"].text)
        assert len(openai_events) > 20  # it was well under way
        assert all(data != "[DONE]" for _, data in openai_events)
        last = json.loads(openai_events[-1][1])
        assert last["error"]["code"] == "shutting_down" and "shutting down" in last["error"]["message"]
        for name in ("anthropic", "anthropic-native"):
            events = _events(streams[name].text)
            assert len(events) > 20, name
            event, data = events[-1]
            assert event == "error", (name, events[-3:])
            body = json.loads(data)
            assert body["type"] == "error" and "shutting down" in body["error"]["message"], body
            assert not any(e == "message_stop" for e, _ in events), name

        # their spend was recorded (the process is gone: the SQLite file next to the config)
        ids = [s.request_id for s in streams.values() if s.request_id]
        rows = _spend_rows(gw.config_path.parent / "lockgate.db", ids)
        assert set(rows) == set(ids), (rows, ids)
        log = gw.log_path.read_text()
        assert "ended 3 open stream(s)" in log and '"error":"shutting_down"' in log
    finally:
        if gw.process.poll() is None:
            gw.process.kill()
            gw.process.wait(10)


def test_second_sigint_forces_the_exit(tmp_path):
    """Ctrl-C twice: no waiting for the grace nor for the stream in flight."""
    config = {"model_list": [{"model_name": "m", "litellm_params": {
        "model": "mock/m", "mock_response": " ".join(["w"] * 50), "mock_latency_ms": 60_000}}],
        "general_settings": {"master_key": MASTER_KEY, "shutdown_grace_seconds": 30,
                             "graceful_shutdown_timeout": 30}}
    gw = start_gateway(config, tmp_path)
    try:
        stream = Stream(gw.url, "/v1/chat/completions", AUTH,
                        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        stream.start()
        assert stream.started.wait(10)
        gw.process.send_signal(signal.SIGINT)
        assert _wait_readiness(gw.url, 503, within=1).status_code == 503
        t0 = time.monotonic()
        gw.process.send_signal(signal.SIGINT)
        assert _wait_exit(gw.process, 15) is not None
        assert time.monotonic() - t0 < 5
    finally:
        if gw.process.poll() is None:
            gw.process.kill()
            gw.process.wait(10)


# ------------------------------------------------------------------ serve --workers 2


def test_each_worker_drains_and_the_supervisor_exits_0(tmp_path):
    grace, timeout = 1.0, 2.0
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "m", "litellm_params": {
            "model": "mock/m", "mock_response": " ".join(["word"] * 100), "mock_latency_ms": 60_000}}],
        "general_settings": {"master_key": MASTER_KEY, "shutdown_grace_seconds": grace,
                             "graceful_shutdown_timeout": timeout}}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    log_path = tmp_path / "gateway.log"
    proc = subprocess.Popen([sys.executable, "-m", "lockgate.cli", "serve", "--config", str(path), "--port",
                             str(port), "--workers", "2"], stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                            env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _ready(url).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        # enough streams that both workers almost certainly hold some (the kernel spreads the accepts)
        streams = [Stream(url, "/v1/chat/completions" if i % 2 else "/v1/messages",
                          AUTH if i % 2 else ANTHROPIC,
                          {"model": "m", "stream": True, "max_tokens": 10,
                           "messages": [{"role": "user", "content": f"stream {i}"}]}) for i in range(6)]
        for s in streams:
            s.start()
        for s in streams:
            assert s.started.wait(10) and s.error is None
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        # the supervisor forwards SIGTERM within 0.5 s: every answer is then 503, from whichever worker
        ready = _wait_readiness(url, 503, within=1.5)
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        answers = {_ready(url).status_code for _ in range(10)}
        assert answers == {503}
        assert httpx.get(url + "/health/liveliness", timeout=5).status_code == 200

        code = _wait_exit(proc, grace + timeout + MARGIN + 10)
        assert code == 0, log_path.read_text()[-3000:]
        assert time.monotonic() - t0 < 0.5 + grace + timeout + MARGIN
        for s in streams:
            s.join(10)
            events = _events(s.text)
            assert events and all(d != "[DONE]" for _, d in events)
            event, data = events[-1]
            assert "shutting down" in data and (event == "error" if s.path == "/v1/messages" else True), s.text[-300:]
        ids = [s.request_id for s in streams if s.request_id]
        assert set(_spend_rows(tmp_path / "lockgate.db", ids)) == set(ids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# ------------------------------------------------------------------ readiness follows the dependencies


def test_readiness_names_redis_when_it_stops_answering(tmp_path):
    """The gateway does not start with Redis unreachable, so the realistic failure is Redis going away."""
    redis_proc, port = start_redis_server(tmp_path)
    gw = None
    try:
        gw = start_gateway({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m", "mock_response": "ok"}}],
            "general_settings": {"master_key": MASTER_KEY, "redis_url": f"redis://127.0.0.1:{port}/0",
                                 "shutdown_grace_seconds": 0, "graceful_shutdown_timeout": 5}}, tmp_path)
        ok = _ready(gw.url)
        assert ok.status_code == 200, ok.text
        assert ok.json()["db"] == "connected" and ok.json()["redis"] == "connected"

        redis_proc.kill()
        redis_proc.wait(10)
        failed = _wait_readiness(gw.url, 503, within=5)  # the checks are cached for about a second
        assert failed.status_code == 503, failed.text
        body = failed.json()
        assert body["status"] == "unhealthy" and body["failed"] == ["redis"], body
        assert body["redis"] == "disconnected" and body["db"] == "connected"
        assert httpx.get(gw.url + "/health/liveliness", timeout=5).status_code == 200
    finally:
        if redis_proc.poll() is None:
            redis_proc.kill()
            redis_proc.wait(10)
        if gw is not None and gw.process.poll() is None:
            gw.process.terminate()
            if _wait_exit(gw.process, 20) is None:
                pytest.fail("the gateway did not exit on SIGTERM with Redis gone")


def test_readiness_checks_are_cached_shared_and_bounded():
    """A burst of probes costs one check per second; a check slower than PROBE_TIMEOUT is a failure."""
    from lockgate import shutdown

    class Dep:
        def __init__(self, delay: float) -> None:
            self.calls, self.delay = 0, delay

        async def ping(self) -> bool:
            self.calls += 1
            await asyncio.sleep(self.delay)
            return True

    store, redis = Dep(0.05), Dep(0.05)
    probe = shutdown.Readiness(SimpleNamespace(store=store, redis=redis, groups={"m": []}))  # type: ignore[arg-type]

    async def scenario() -> None:
        answers = await asyncio.gather(*(probe.answer() for _ in range(50)))
        assert {status for status, _ in answers} == {200} and store.calls == redis.calls == 1
        assert answers[0][1]["db"] == "connected" and answers[0][1]["redis"] == "connected"
        await probe.answer()
        assert store.calls == 1
        await asyncio.sleep(shutdown.PROBE_TTL + 0.05)
        await probe.answer()
        assert store.calls == 2
        redis.delay = shutdown.PROBE_TIMEOUT + 1  # hangs: not ready, answered within the bound
        await asyncio.sleep(shutdown.PROBE_TTL + 0.05)
        started = time.monotonic()
        status, body = await probe.answer()
        assert status == 503 and body["failed"] == ["redis"] and body["db"] == "connected"
        assert time.monotonic() - started < shutdown.PROBE_TIMEOUT + 0.5
        probe.draining = True
        calls = store.calls
        status, body = await probe.answer()
        assert status == 503 and body["status"] == "draining" and store.calls == calls

    asyncio.run(scenario())


# ------------------------------------------------------------------ configuration


def test_shutdown_settings_defaults_and_validation():
    base = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]}
    settings = from_dict(base)
    assert settings.shutdown_grace_seconds == 5 and settings.graceful_shutdown_timeout == 30
    settings = from_dict({**base, "general_settings": {"shutdown_grace_seconds": 0, "graceful_shutdown_timeout": 2.5}})
    assert settings.shutdown_grace_seconds == 0 and settings.graceful_shutdown_timeout == 2.5
    assert not any("shutdown" in w for w in settings.warnings)
    for bad in (-1, "soon", None):
        with pytest.raises(ConfigError, match="shutdown_grace_seconds"):
            from_dict({**base, "general_settings": {"shutdown_grace_seconds": bad}})
