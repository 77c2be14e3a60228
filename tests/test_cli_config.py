"""The CLI (version, check-config, serve --workers) and config loading."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from lockgate import __version__
from lockgate.config import ConfigError, from_dict, load
from lockgate.transport.sse import SSEParser
from tests.conftest import MASTER_KEY, free_port


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lockgate.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_check_config_prints_models_with_secrets_masked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o",
                                                              "api_key": "os.environ/MY_PROVIDER_KEY"}}],
        "general_settings": {"master_key": "sk-very-secret-master-key"},
        "litellm_settings": {"some_future_key": 1},
    }))
    out = run_cli("check-config", str(path), env={"MY_PROVIDER_KEY": "sk-provider-secret-value"})
    assert out.returncode == 0, out.stderr
    assert '"model_name": "m"' in out.stdout and '"provider": "openai"' in out.stdout
    assert "sk-provider-secret-value" not in out.stdout + out.stderr
    assert "sk-very-secret-master-key" not in out.stdout + out.stderr
    assert "litellm_settings.some_future_key" in out.stderr  # reported, not fatal


def test_check_config_rejects_broken_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: x\n    litellm_params: {model: nosuchprovider/abc}\n")
    out = run_cli("check-config", str(bad))
    assert out.returncode == 1 and "nosuchprovider" in out.stderr
    missing = tmp_path / "missing.yaml"
    missing.write_text("general_settings: {master_key: os.environ/NOT_SET_ANYWHERE_123}\n")
    out = run_cli("check-config", str(missing))
    assert out.returncode == 1 and "master_key" in out.stderr


def test_env_references_and_defaults():
    os.environ["LG_TEST_BASE"] = "http://127.0.0.1:9/v1"
    settings = from_dict({"model_list": [
        {"model_name": "a", "litellm_params": {"model": "groq/llama", "api_base": "os.environ/LG_TEST_BASE",
                                               "temperature": 0.1, "rpm": 5, "weight": 2}},
        {"model_name": "b", "litellm_params": {"model": "gpt-4o-mini"}},
    ]})
    a, b = settings.deployments
    assert a.provider == "groq" and a.model == "llama" and a.api_base == "http://127.0.0.1:9/v1"
    assert a.defaults == {"temperature": 0.1} and a.rpm == 5 and a.weight == 2
    assert b.provider == "openai" and b.model == "gpt-4o-mini"
    with pytest.raises(ConfigError):
        from_dict({"model_list": [{"model_name": "x", "litellm_params": {}}]})


def test_example_config_loads():
    settings = load(os.path.join(os.path.dirname(__file__), "..", "src", "lockgate", "examples", "config.yaml"))
    assert {d.model_name for d in settings.deployments} >= {"demo-model"}


def test_sse_parser_handles_split_events_crlf_and_comments():
    parser = SSEParser()
    assert parser.feed(b"event: a\r\ndata: {\"x\"") == []
    assert parser.feed(b": 1}\r\n\r\n: keep-alive\n\ndata: line1\ndata: line2\n\n") == [
        ("a", b'{"x": 1}'), (None, b"line1\nline2")]
    assert parser.feed(b"data: tail") == []
    assert parser.flush() == [(None, b"tail")]


def test_serve_with_two_workers_aggregates_metrics(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m", "mock_response": "ok"}}],
        "general_settings": {"master_key": MASTER_KEY}}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "lockgate.cli", "serve", "--config", str(path), "--port",
                             str(port), "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health/liveliness").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        for _ in range(20):
            resp = httpx.post(url + "/v1/chat/completions", headers={"authorization": "Bearer " + MASTER_KEY},
                              json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
            assert resp.json()["choices"][0]["message"]["content"] == "ok"
        # both workers' requests, whichever answers /metrics: each worker writes its numbers to the
        # shared files within a second (observations are batched, see observability/metrics.py)
        deadline = time.monotonic() + 5
        while True:
            text = httpx.get(url + "/metrics").text
            line = next(ln for ln in text.splitlines() if ln.startswith('lockgate_requests_total{model="m"'))
            if float(line.rsplit(" ", 1)[1]) == 20.0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert float(line.rsplit(" ", 1)[1]) == 20.0
    finally:
        proc.terminate()
        proc.wait(20)
