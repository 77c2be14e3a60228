"""Shared fixtures: provider mock servers on loopback and a real gateway process.

The mocks run in one background thread with its own event loop, so tests can
drive the gateway with the official (synchronous) SDK clients.  The gateway is
started as ``lockgate serve`` in a child process, exactly as users run it; its
log goes to a file that tests read (for example to prove no secret is logged).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests.mocks import MOCK_API_KEY, Recorder

MASTER_KEY = "sk-test-master-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MockServer:
    name: str
    url: str
    recorder: Recorder


class MockHost:
    """Runs aiohttp apps in a background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def start(self, name: str, create_app) -> MockServer:  # noqa: ANN001
        recorder = Recorder()
        port = free_port()

        async def run() -> None:
            runner = web.AppRunner(create_app(recorder), handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)

        asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)
        return MockServer(name, f"http://127.0.0.1:{port}", recorder)

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="session")
def mocks():
    from tests.mocks import anthropic_api, gemini_api, openai_api

    host = MockHost()
    servers = {
        "openai": host.start("openai", openai_api.create_app),
        "anthropic": host.start("anthropic", anthropic_api.create_app),
        "gemini": host.start("gemini", gemini_api.create_app),
    }
    yield servers
    host.stop()


def gateway_config(mocks: dict[str, MockServer]) -> dict:
    openai_base = mocks["openai"].url + "/v1"
    return {
        "model_list": [
            {"model_name": "openai-model",
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": openai_base,
                                "api_key": "os.environ/TEST_PROVIDER_KEY"}},
            {"model_name": "claude-model",
             "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_base": mocks["anthropic"].url,
                                "api_key": MOCK_API_KEY}},
            {"model_name": "gemini-model",
             "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": mocks["gemini"].url,
                                "api_key": MOCK_API_KEY}},
            {"model_name": "groq-model",
             "litellm_params": {"model": "groq/llama-3.1-8b-instant", "api_base": openai_base,
                                "api_key": MOCK_API_KEY}},
            {"model_name": "mock-model",
             "litellm_params": {"model": "mock/mock-model", "mock_response": "Mocked answer here."}},
            {"model_name": "openai-embed",
             "litellm_params": {"model": "openai/text-embedding-3-small", "api_base": openai_base,
                                "api_key": MOCK_API_KEY}},
            {"model_name": "gemini-embed",
             "litellm_params": {"model": "gemini/text-embedding-004", "api_base": mocks["gemini"].url,
                                "api_key": MOCK_API_KEY}},
            {"model_name": "unreachable-model",
             "litellm_params": {"model": "openai/gpt-4o", "api_base": f"http://127.0.0.1:{free_port()}/v1",
                                "api_key": MOCK_API_KEY}},
            {"model_name": "timeout-model",
             "litellm_params": {"model": "openai/gpt-4o", "api_base": openai_base, "api_key": MOCK_API_KEY,
                                "timeout": 1, "stream_timeout": 1}},
            {"model_name": "wrong-key-model",
             "litellm_params": {"model": "openai/gpt-4o", "api_base": openai_base, "api_key": "sk-wrong"}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"drop_params": True, "success_callback": ["langfuse"]},
        # these tests provoke provider failures on purpose: keep deployments out of cooldown
        "router_settings": {"routing_strategy": "simple-shuffle", "disable_cooldowns": True},
    }


def start_redis_server(directory: Path) -> tuple[subprocess.Popen, int]:
    """A redis-server of the test's own (the test may kill it), on a free port, once it answers PING."""
    import redis

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


@dataclass
class RunningGateway:
    url: str
    process: subprocess.Popen
    log_path: Path
    config_path: Path

    def log(self) -> str:
        time.sleep(0.4)  # the access log is flushed in batches every 0.2 s
        return self.log_path.read_text()


def start_gateway(config: dict, tmp: Path, env_extra: dict[str, str] | None = None) -> RunningGateway:
    # tests stop their gateways with SIGTERM: no drain grace unless the test sets one (tests/test_shutdown.py)
    general = config.setdefault("general_settings", {})
    if isinstance(general, dict):
        general.setdefault("shutdown_grace_seconds", 0)
    config_path = tmp / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp / "gateway.log"
    env = {**os.environ, "TEST_PROVIDER_KEY": MOCK_API_KEY, **(env_extra or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "lockgate.cli", "serve", "--config", str(config_path), "--port", str(port)],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gateway exited:\n" + log_path.read_text())
        try:
            with urllib.request.urlopen(url + "/health/liveliness", timeout=1) as resp:
                if resp.status == 200:
                    return RunningGateway(url, process, log_path, config_path)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("gateway did not start:\n" + log_path.read_text())


@pytest.fixture(scope="session")
def gateway(mocks, tmp_path_factory):
    gw = start_gateway(gateway_config(mocks), tmp_path_factory.mktemp("gateway"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


@pytest.fixture(scope="session")
def openai_client(gateway):
    import openai

    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)


@pytest.fixture(scope="session")
def anthropic_client(gateway):
    import anthropic

    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
