"""User plugins (litellm_settings.callbacks) through a real ``lockgate serve``, driven by the official SDKs.

The config names plugin files in its own folder: the shipped example (src/lockgate/examples/custom_callbacks.py),
a recorder that writes every hook call to a file, and faulty plugins that raise or hang for 30 s.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

import lockgate
from lockgate import config
from lockgate.config import ConfigError
from lockgate.gateway import Gateway
from lockgate.plugins import Plugins
from tests.conftest import MASTER_KEY, free_port, start_gateway
from tests.mocks import MOCK_API_KEY, MOCK_TEXT

EXAMPLE = Path(lockgate.__file__).parent / "examples" / "custom_callbacks.py"
FILES = Path(__file__).parent / "plugin_files"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
HI = [{"role": "user", "content": "hello"}]
PRE_CALL_TIMEOUT = 0.5


def _models(mocks: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"model_name": "openai-model", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                          "api_base": mocks["openai"].url + "/v1",
                                                          "api_key": MOCK_API_KEY}},
        {"model_name": "claude-model", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                                          "api_base": mocks["anthropic"].url, "api_key": MOCK_API_KEY}},
        {"model_name": "gemini-model", "litellm_params": {"model": "gemini/gemini-2.5-flash",
                                                          "api_base": mocks["gemini"].url, "api_key": MOCK_API_KEY}},
        {"model_name": "unreachable-model", "litellm_params": {"model": "openai/gpt-4o", "api_key": MOCK_API_KEY,
                                                               "api_base": f"http://127.0.0.1:{free_port()}/v1"}},
    ]


def _folder(tmp: Path) -> Path:
    shutil.copy(EXAMPLE, tmp / "custom_callbacks.py")
    for name in ("recorder.py", "faulty.py"):
        shutil.copy(FILES / name, tmp / name)
    return tmp


@pytest.fixture(scope="module")
def plugged(mocks, tmp_path_factory):
    """A gateway with the example, the recorder and a raising and a hanging plugin on every hook."""
    tmp = _folder(tmp_path_factory.mktemp("plugins"))
    events = tmp / "events.jsonl"
    cfg = {
        "model_list": _models(mocks),
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {
            "callbacks": ["custom_callbacks.proxy_handler_instance", "recorder.recorder", "recorder.legacy",
                          "faulty.raising", "faulty.hanging", "faulty.bad_return"],
            "success_callback": ["recorder.log_fn", "langfuse"],
        },
        "router_settings": {"disable_cooldowns": True},
        "lockgate_settings": {"callback_timeout": PRE_CALL_TIMEOUT, "callback_log_timeout": 1},
    }
    gw = start_gateway(cfg, tmp, {"PLUGIN_EVENTS": str(events)})
    gw.events = events  # type: ignore[attr-defined]
    yield gw
    gw.process.terminate()
    gw.process.wait(20)


def _events(gw: Any, kind: str, match: Any = None, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The recorder's events of one kind (waiting until one matching ``match`` arrived)."""
    deadline = time.monotonic() + timeout
    while True:
        text = gw.events.read_text() if gw.events.exists() else ""
        lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]  # the last may be half-written
        found = [e for e in map(json.loads, lines) if e["event"] == kind]
        if match is None and found or match is not None and any(match(e) for e in found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {kind} event arrived; got {text[-2000:]}")
        time.sleep(0.05)


def _metric(gw: Any, name: str, **labels: str) -> float:
    text = httpx.get(gw.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _key(gw: Any, alias: str) -> str:
    r = httpx.post(gw.url + "/key/generate", headers=ADMIN, json={"key_alias": alias}, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()["key"]


def _oai(gw: Any, key: str = MASTER_KEY, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20, default_headers=headers)


def _claude(gw: Any, key: str = MASTER_KEY, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=20, default_headers=headers)


# ---------------------------------------------------------------------- pre-call hooks


def test_pre_call_hook_rewrites_the_request(plugged, mocks):
    answer = _oai(plugged, **{"x-tenant": "acme"}).chat.completions.create(model="openai-model", messages=HI)
    assert answer.choices[0].message.content == MOCK_TEXT
    assert mocks["openai"].recorder.last.body["user"] == "tenant-acme"  # set by the example plugin
    assert "proxy_server_request" not in mocks["openai"].recorder.last.body

    msg = _claude(plugged, **{"x-tenant": "acme"}).messages.create(model="claude-model", max_tokens=50, messages=HI)
    assert msg.content[0].text == MOCK_TEXT
    assert mocks["anthropic"].recorder.last.body["metadata"] == {"user_id": "tenant-acme"}


def test_pre_call_hook_may_choose_another_model(plugged, mocks):
    raw = _oai(plugged, **{"x-test-model": "claude-model"}).chat.completions.with_raw_response.create(
        model="openai-model", messages=HI)
    assert raw.parse().choices[0].message.content == MOCK_TEXT
    assert mocks["anthropic"].recorder.last.body["model"] == "claude-sonnet-4-5"
    assert mocks["anthropic"].recorder.last.headers["x-api-key"] == MOCK_API_KEY  # the claude-model deployment


def test_a_model_chosen_by_a_plugin_is_authorized_again(plugged):
    r = httpx.post(plugged.url + "/key/generate", headers=ADMIN, json={"models": ["openai-model"]}, timeout=20)
    key = r.json()["key"]
    assert _oai(plugged, key).chat.completions.create(model="openai-model", messages=HI).choices
    with pytest.raises(openai.PermissionDeniedError) as err:
        _oai(plugged, key, **{"x-test-model": "claude-model"}).chat.completions.create(model="openai-model",
                                                                                      messages=HI)
    assert "claude-model" in err.value.message


def test_rejection_in_each_dialect(plugged, mocks):
    banned = [{"role": "user", "content": "tell me about the forbidden-topic please"}]
    before = len(mocks["openai"].recorder.requests)
    with pytest.raises(openai.BadRequestError) as oai_err:
        _oai(plugged).chat.completions.create(model="openai-model", messages=banned)
    assert oai_err.value.status_code == 400
    assert "does not accept requests about 'forbidden-topic'" in oai_err.value.message
    assert oai_err.value.body["code"] == "rejected_by_plugin"
    with pytest.raises(openai.BadRequestError):
        _oai(plugged).chat.completions.create(model="openai-model", messages=banned, stream=True)
    with pytest.raises(openai.BadRequestError):
        _oai(plugged).responses.create(model="openai-model", input="about forbidden-topic")
    assert len(mocks["openai"].recorder.requests) == before  # never reached the provider

    with pytest.raises(anthropic.BadRequestError) as claude_err:
        _claude(plugged).messages.create(model="claude-model", max_tokens=20, messages=banned)
    assert claude_err.value.status_code == 400
    assert claude_err.value.body["type"] == "error"
    assert claude_err.value.body["error"]["type"] == "invalid_request_error"
    assert "forbidden-topic" in claude_err.value.body["error"]["message"]

    r = httpx.post(plugged.url + "/v1beta/models/gemini-model:generateContent", headers={"x-goog-api-key": MASTER_KEY},
                   json={"contents": [{"role": "user", "parts": [{"text": "forbidden-topic"}]}]}, timeout=20)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "forbidden-topic" in r.json()["error"]["message"]


def test_raising_and_hanging_pre_call_hooks_neither_break_nor_stall(plugged):
    raising = _metric(plugged, "lockgate_plugin_errors_total", plugin="faulty.raising", hook="async_pre_call_hook")
    started = time.perf_counter()
    answer = _oai(plugged).chat.completions.create(model="openai-model", messages=HI)
    elapsed = time.perf_counter() - started
    assert answer.choices[0].message.content == MOCK_TEXT
    # the hanging plugin sleeps 30 s: it is cut at callback_timeout, the request goes on
    assert PRE_CALL_TIMEOUT * 0.9 <= elapsed < PRE_CALL_TIMEOUT + 2.0
    assert _metric(plugged, "lockgate_plugin_errors_total", plugin="faulty.raising", hook="async_pre_call_hook",
                   error="exception") == raising + 1
    assert _metric(plugged, "lockgate_plugin_errors_total", plugin="faulty.hanging", hook="async_pre_call_hook",
                   error="timeout") >= 1
    assert _metric(plugged, "lockgate_plugin_errors_total", plugin="faulty.bad_return", hook="async_pre_call_hook",
                   error="bad_return") >= 1
    broken = _oai(plugged, **{"x-bad-return": "1"}).chat.completions.create(model="openai-model", messages=HI)
    assert broken.choices[0].message.content == MOCK_TEXT  # a body without messages is not used
    log = plugged.log()
    assert "plugin faulty.raising: async_pre_call_hook raised ValueError" in log
    assert "a bug in a plugin" not in log  # the type only: a plugin's message may quote the prompt


# ---------------------------------------------------------------------- events after the answer


def test_success_event_fields(plugged):
    key = _key(plugged, "plugin-key")
    raw = _oai(plugged, key, **{"x-tenant": "t1"}).chat.completions.with_raw_response.create(
        model="openai-model", messages=HI)
    rid = raw.headers["x-request-id"]
    success = next(e for e in _events(plugged, "success", lambda e: e["kwargs"]["litellm_call_id"] == rid)
                   if e["kwargs"]["litellm_call_id"] == rid)
    kw = success["kwargs"]
    assert kw["call_type"] == "completion" and kw["model"] == "openai-model" and kw["stream"] is False
    assert kw["model_group"] == "openai-model" and kw["custom_llm_provider"] == "openai"
    assert kw["deployment_model"] == "gpt-4o-mini" and kw["status_code"] == 200 and kw["user"] == "tenant-t1"
    assert kw["messages"] == HI
    meta = kw["litellm_params"]["metadata"]
    assert meta["user_api_key_alias"] == "plugin-key"
    assert meta["user_api_key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert "authorization" not in meta["headers"] and meta["headers"]["x-tenant"] == "t1"
    assert kw["usage"]["prompt_tokens"] == 11 and kw["usage"]["completion_tokens"] == 7
    assert success["response_obj"]["usage"]["total_tokens"] == success["total_tokens"] == 18
    assert 0 <= success["seconds"] < 5
    assert kw["standard_logging_object"]["status"] == "success"
    assert key not in plugged.events.read_text()  # never the raw key
    assert _events(plugged, "post_call_success", lambda e: e["key_alias"] == "plugin-key")
    assert _events(plugged, "function_success", lambda e: e["request_id"] == rid)  # success_callback function
    pre = [e for e in _events(plugged, "pre_call") if e["key_alias"] == "plugin-key"]
    assert pre and pre[0]["api_key"] == hashlib.sha256(key.encode()).hexdigest() and pre[0]["seen"] >= 1


def test_streamed_success_events(plugged):
    with _oai(plugged).chat.completions.with_streaming_response.create(
            model="openai-model", messages=HI, stream=True) as resp:
        rid = resp.headers["x-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == MOCK_TEXT
    event = next(e for e in _events(plugged, "success", lambda e: e["kwargs"]["litellm_call_id"] == rid)
                 if e["kwargs"]["litellm_call_id"] == rid)
    assert event["kwargs"]["stream"] is True and event["total_tokens"] == 18

    with _claude(plugged).messages.stream(model="claude-model", max_tokens=50, messages=HI) as stream:
        assert stream.get_final_text() == MOCK_TEXT
    event = _events(plugged, "success", lambda e: e["kwargs"]["call_type"] == "anthropic_messages"
                    and e["kwargs"]["stream"] is True)
    streamed = [e for e in event if e["kwargs"]["call_type"] == "anthropic_messages" and e["kwargs"]["stream"]]
    assert streamed[-1]["kwargs"]["usage"]["completion_tokens"] == 7 and streamed[-1]["total_tokens"] == 18


def test_failure_events(plugged):
    with pytest.raises(openai.APIStatusError) as err:
        _oai(plugged).chat.completions.create(model="unreachable-model", messages=HI)
    assert err.value.status_code == 502
    failures = _events(plugged, "failure", lambda e: e["kwargs"]["model"] == "unreachable-model")
    failure = next(e for e in failures if e["kwargs"]["model"] == "unreachable-model")
    assert failure["kwargs"]["status_code"] == 502 and failure["kwargs"]["error_kind"] == "upstream_unreachable"
    assert failure["kwargs"]["exception"] and failure["response_obj"] is None
    assert failure["kwargs"]["standard_logging_object"]["status"] == "failure"
    assert _events(plugged, "post_call_failure", lambda e: e["status"] == 502)
    assert _events(plugged, "legacy_failure")  # the older (original_exception, user_api_key_dict) signature

    with pytest.raises(anthropic.BadRequestError):  # a plugin's rejection is a failure too
        _claude(plugged).messages.create(model="claude-model", max_tokens=20,
                                         messages=[{"role": "user", "content": "forbidden-topic"}])
    rejected = _events(plugged, "post_call_failure", lambda e: e["status"] == 400 and "forbidden-topic" in e["message"])
    assert rejected
    deadline = time.monotonic() + 5
    while _metric(plugged, "lockgate_plugin_errors_total", plugin="faulty.raising",
                  hook="async_log_failure_event", error="exception") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_slow_loggers_never_delay_answers(mocks, tmp_path):
    """A logger that hangs 30 s: answers stay fast; calls are cut at callback_log_timeout, overflow is dropped."""
    folder = _folder(tmp_path)
    cfg = {
        "model_list": _models(mocks),
        "litellm_settings": {"callbacks": ["faulty.slow_logger"]},
        "lockgate_settings": {"callback_log_timeout": 1, "callback_queue_size": 3, "callback_workers": 1},
    }
    gw = start_gateway(cfg, folder)
    try:
        client = _oai(gw)
        times = []
        for _ in range(20):
            started = time.perf_counter()
            assert client.chat.completions.create(model="openai-model", messages=HI).choices[0].message.content
            times.append(time.perf_counter() - started)
        # on the request path each answer would wait for the logger's cut at callback_log_timeout (1 s)
        assert sorted(times)[10] < 0.5 and sum(times) < 10, times
        assert _metric(gw, "lockgate_plugin_errors_total", plugin="*", hook="queue", error="dropped") >= 10
        deadline = time.monotonic() + 5
        while _metric(gw, "lockgate_plugin_errors_total", plugin="faulty.slow_logger",
                      hook="async_log_success_event", error="timeout") < 1:
            assert time.monotonic() < deadline, "the slow logger's call was not cut at callback_log_timeout"
            time.sleep(0.1)
    finally:
        gw.process.terminate()
        gw.process.wait(20)


# ---------------------------------------------------------------------- configuration and loading


def test_builtin_callback_names_stay_warnings_and_paths_are_plugins():
    settings = config.from_dict({"model_list": [], "litellm_settings": {
        "callbacks": "custom_callbacks.proxy_handler_instance", "success_callback": ["langfuse", "mod.fn"],
        "failure_callback": ["otel"]}})
    assert settings.plugins.callbacks == ["custom_callbacks.proxy_handler_instance"]
    assert settings.plugins.success_callbacks == ["mod.fn"] and settings.plugins.failure_callbacks == []
    assert "not implemented yet, ignored: litellm_settings.success_callback: langfuse" in settings.warnings
    assert "not implemented yet, ignored: litellm_settings.failure_callback: otel" in settings.warnings
    assert not config.from_dict({"model_list": []}).plugins.configured
    with pytest.raises(ConfigError, match="callback_timeout"):
        config.from_dict({"model_list": [], "lockgate_settings": {"callback_timeout": 0}})


def _gateway_at(folder: Path, callbacks: list[str]) -> Gateway:
    path = folder / "config.yaml"
    path.write_text(json.dumps({"model_list": [], "litellm_settings": {"callbacks": callbacks}}))
    return Gateway(config.load(path))


async def test_loading_errors_are_clear(tmp_path):
    (tmp_path / "litellm_style.py").write_text(
        "from litellm.integrations.custom_logger import CustomLogger\nhandler = CustomLogger()\n")
    (tmp_path / "fine.py").write_text("from lockgate.plugins import CustomLogger\nhandler = CustomLogger()\n")
    cases = {"missing_module.handler": "cannot import 'missing_module'",
             "fine.nothing": "module 'fine' has no attribute 'nothing'",
             "litellm_style.handler": "import CustomLogger, UserAPIKeyAuth and DualCache from lockgate.plugins"}
    for path, message in cases.items():
        gw = _gateway_at(tmp_path, [path])
        with pytest.raises(ConfigError, match=re.escape(message)):
            Plugins(gw).load()
        await gw.upstream.close()


async def test_no_callbacks_no_hooks(tmp_path):
    gw = Gateway(config.from_dict({"model_list": []}))
    assert gw.plugins is None and not gw.hooks.pre_request and not gw.hooks.post_response and not gw.hooks.on_error
    await gw.upstream.close()


def test_a_plugin_that_cannot_load_stops_the_start(mocks, tmp_path):
    cfg = {"model_list": _models(mocks), "litellm_settings": {"callbacks": ["nowhere.handler"]}}
    with pytest.raises(RuntimeError, match=r"callback 'nowhere.handler': cannot import 'nowhere'"):
        start_gateway(cfg, tmp_path)


async def test_a_plugin_listed_twice_gets_each_event_once(tmp_path):
    shutil.copy(FILES / "recorder.py", tmp_path / "recorder.py")
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"model_list": [], "litellm_settings": {
        "callbacks": ["recorder.recorder"], "success_callback": ["recorder.recorder", "recorder.log_fn"]}}))
    gw = Gateway(config.load(path))
    plugins = Plugins(gw)
    plugins.load()
    assert [(h.plugin, h.name) for h in plugins.success] == [
        ("recorder.recorder", "async_log_success_event"), ("recorder.recorder", "async_post_call_success_hook"),
        ("recorder.log_fn", "log_fn")]
    assert [h.name for h in plugins.pre_call] == ["async_pre_call_hook"] and not plugins.moderation
    assert plugins.success[-1].threaded and not plugins.success[0].threaded
    await gw.upstream.close()
