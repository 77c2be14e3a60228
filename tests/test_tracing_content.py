"""Spans: ``gen_ai.response.finish_reasons`` always; prompt and answer text only when opted in
(``lockgate_settings.otel_export_content``), never with ``litellm_settings.turn_off_message_logging``,
and then as the guardrails left them: a presidio guardrail masks an email, the exported prompt holds
the placeholder, never the email.  An OTLP/HTTP receiver in the test process decodes what is exported."""

from __future__ import annotations

import json
import uuid

import anthropic
import openai
import pytest

from tests.conftest import MASTER_KEY, MockHost, gateway_config, start_gateway
from tests.test_tracing import Collector, attrs

EMAIL = "jane.doe@example.com"
MASK = {"guardrail_name": "pii", "litellm_params": {
    "guardrail": "presidio", "mode": "pre_call", "default_on": True,
    "pii_entities_config": {"EMAIL_ADDRESS": "MASK", "CREDIT_CARD": "BLOCK"}}}
CARD = "4111 1111 1111 1111"
RESTORE = {"guardrail_name": "pii-restore", "litellm_params": {
    "guardrail": "presidio", "mode": "pre_call", "output_parse_pii": True,
    "pii_entities_config": {"EMAIL_ADDRESS": "MASK"}}}


def _traced(mocks, tmp, collector_url: str, litellm: dict | None = None, ours: dict | None = None):
    config = gateway_config(mocks)
    config["litellm_settings"] = {"drop_params": True, "callbacks": ["otel"], **(litellm or {})}
    config["lockgate_settings"] = ours or {}
    config["guardrails"] = [MASK, RESTORE]
    return start_gateway(config, tmp, env_extra={
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector_url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100"})


@pytest.fixture(scope="module")
def receiver():
    collector = Collector()
    host = MockHost()
    server = host.start("otlp", collector.app)
    yield collector, server.url
    host.stop()


@pytest.fixture(scope="module")
def plain(mocks, receiver, tmp_path_factory):
    gw = _traced(mocks, tmp_path_factory.mktemp("plain"), receiver[1])
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


@pytest.fixture(scope="module")
def content(mocks, receiver, tmp_path_factory):
    gw = _traced(mocks, tmp_path_factory.mktemp("content"), receiver[1], ours={"otel_export_content": True})
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


def _server_span(collector, rid: str):
    return attrs(collector.wait(lambda s: attrs(s).get("lockgate.request_id") == rid)[0])


def _chat(gw, text: str, stream: bool = False, **extra):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    if stream:
        with client.chat.completions.with_streaming_response.create(
                model="openai-model", stream=True, messages=[{"role": "user", "content": text}], **extra) as resp:
            for _ in resp.iter_lines():
                pass
            return resp.headers["x-request-id"]
    raw = client.chat.completions.with_raw_response.create(
        model="openai-model", messages=[{"role": "user", "content": text}], **extra)
    return raw.headers["x-request-id"]


@pytest.mark.parametrize("stream", [False, True])
def test_finish_reasons_without_content_by_default(plain, receiver, stream):
    collector, _ = receiver
    tag = uuid.uuid4().hex[:8]
    rid = _chat(plain, f"finish {tag}", stream)
    server = collector.wait(lambda s: attrs(s).get("lockgate.request_id") == rid)[0]
    a = attrs(server)
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    attempt = collector.wait(lambda s: s.parent_span_id == server.span_id)[0]  # the CLIENT span has them too
    assert attrs(attempt)["gen_ai.response.finish_reasons"] == ["stop"]
    assert tag not in str(collector.spans)  # no prompt text anywhere


def test_finish_reasons_in_the_anthropic_dialect(plain, receiver):
    collector, _ = receiver
    client = anthropic.Anthropic(base_url=plain.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    raw = client.messages.with_raw_response.create(model="claude-model", max_tokens=50,
                                                   messages=[{"role": "user", "content": "why stop"}])
    a = _server_span(collector, raw.headers["x-request-id"])
    assert a["gen_ai.response.finish_reasons"] == ["end_turn"]


@pytest.mark.parametrize("stream", [False, True])
def test_content_opt_in_exports_the_masked_prompt(content, receiver, stream):
    collector, _ = receiver
    tag = uuid.uuid4().hex[:8]
    rid = _chat(content, f"TRIGGER_ECHO {tag} write to {EMAIL} today", stream)
    a = _server_span(collector, rid)
    prompt = json.loads(a["gen_ai.input.messages"])
    assert prompt[0]["role"] == "user"
    text = prompt[0]["parts"][0]["content"]
    assert tag in text and "<EMAIL_ADDRESS" in text and EMAIL not in text
    answer = json.loads(a["gen_ai.output.messages"])
    assert answer[0]["role"] == "assistant" and answer[0]["finish_reason"] == "stop"
    assert tag in answer[0]["parts"][0]["content"]  # the mock echoes the (masked) prompt
    assert EMAIL not in str(collector.spans)


def test_content_withholds_an_answer_with_restored_values(content, receiver):
    """output_parse_pii puts the original email back into the client's answer: that answer is not exported."""
    collector, _ = receiver
    tag = uuid.uuid4().hex[:8]
    rid = _chat(content, f"TRIGGER_ECHO {tag} write to {EMAIL}", extra_body={"guardrails": ["pii-restore"]})
    a = _server_span(collector, rid)
    assert EMAIL not in a["gen_ai.input.messages"] and tag in a["gen_ai.input.messages"]
    assert "gen_ai.output.messages" not in a
    assert EMAIL not in str(collector.spans)


def test_content_of_a_blocked_request_is_withheld(content, receiver):
    collector, _ = receiver
    client = openai.OpenAI(base_url=content.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="openai-model", messages=[{"role": "user", "content": f"pay {CARD}"}])
    a = _server_span(collector, err.value.response.headers["x-request-id"])
    assert a["lockgate.content_withheld"] == "guardrail_blocked" and "gen_ai.input.messages" not in a
    spans = str(collector.spans)  # the card's digits, not "4111" alone (a timestamp may hold that)
    assert CARD not in spans and CARD.replace(" ", "") not in spans and "1111 1111" not in spans


def test_turn_off_message_logging_wins(mocks, receiver, tmp_path):
    collector, url = receiver
    gw = _traced(mocks, tmp_path, url, litellm={"turn_off_message_logging": True}, ours={"otel_export_content": True})
    try:
        tag = uuid.uuid4().hex[:8]
        rid = _chat(gw, f"secret {tag}")
        a = _server_span(collector, rid)
        assert a["gen_ai.response.finish_reasons"] == ["stop"]
        assert "gen_ai.input.messages" not in a and tag not in str(collector.spans)
    finally:
        gw.process.terminate()
        gw.process.wait(10)
