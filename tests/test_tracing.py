"""OpenTelemetry traces (litellm_settings.callbacks: ["otel"]): an OTLP/HTTP receiver in the test process
decodes what the gateway exports: GenAI span names and attributes, the caller's traceparent continued,
an attempt span per retry, never a key; a dead collector never slows or breaks requests."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import MASTER_KEY, MockHost, free_port, gateway_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


class Collector:
    """An OTLP/HTTP receiver (protobuf); ``receive`` decodes one export (test_tracing_export's JSON one
    overrides it)."""

    def __init__(self) -> None:
        self.spans: list = []
        self.headers: list[dict[str, str]] = []

    async def receive(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        self.headers.append(dict(request.headers))
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def app(self, _recorder) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self.receive)
        return app

    def wait(self, predicate, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError("no such span arrived")


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind)
        out[kv.key] = [x.string_value for x in value.values] if kind == "array_value" else value
    return out


@pytest.fixture(scope="module")
def traced(mocks, tmp_path_factory):
    collector = Collector()
    host = MockHost()
    server = host.start("otlp", collector.app)
    config = gateway_config(mocks)
    config["litellm_settings"] = {"drop_params": True, "callbacks": ["otel"]}
    config["lockgate_settings"] = {"otel_forward_traceparent": True}
    gw = start_gateway(config, tmp_path_factory.mktemp("traced"), env_extra={
        "OTEL_EXPORTER_OTLP_ENDPOINT": server.url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "lockgate-test", "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=abc"})
    yield gw, collector
    gw.process.terminate()
    gw.process.wait(10)
    host.stop()


def test_spans_follow_the_genai_conventions_and_continue_the_callers_trace(traced, mocks):
    gw, collector = traced
    trace_id = uuid.uuid4().hex
    parent = uuid.uuid4().hex[:16]
    key = httpx.post(gw.url + "/key/generate", headers=ADMIN, json={"key_alias": "tracer-" + trace_id[:6]}).json()["key"]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.with_raw_response.create(
        model="openai-model", messages=[{"role": "user", "content": "trace me"}],
        extra_headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    rid = reply.headers["x-request-id"]
    server = collector.wait(lambda s: attrs(s).get("lockgate.request_id") == rid)[0]
    assert server.trace_id.hex() == trace_id and server.parent_span_id.hex() == parent  # continued
    assert server.kind == server.SPAN_KIND_SERVER and server.name == "chat openai-model"
    a = attrs(server)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "openai-model"
    assert a["gen_ai.response.model"] == "gpt-4o-mini" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["http.response.status_code"] == 200 and a["lockgate.key_alias"].startswith("tracer-")
    attempt = collector.wait(lambda s: s.parent_span_id == server.span_id)[0]
    assert attempt.kind == attempt.SPAN_KIND_CLIENT and attempt.name == "chat openai-model"
    assert attrs(attempt)["lockgate.deployment.id"] == reply.headers["x-lockgate-deployment"]
    # the provider received the attempt's context as its parent
    sent = next(r for r in mocks["openai"].recorder.requests if r.headers.get("traceparent", "").startswith(
        f"00-{trace_id}-{attempt.span_id.hex()}"))
    assert sent is not None
    dumped = str(collector.spans)
    assert key not in dumped and "trace me" not in dumped  # never a key, never the prompt
    assert collector.headers[-1].get("x-collector-token") == "abc"  # OTEL_EXPORTER_OTLP_HEADERS


def test_a_failed_request_and_its_attempts(traced):
    gw, collector = traced
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="openai-model", messages=[{"role": "user", "content": "TRIGGER_500"}])
    rid = err.value.response.headers["x-request-id"]
    server = collector.wait(lambda s: attrs(s).get("lockgate.request_id") == rid)[0]
    assert attrs(server)["http.response.status_code"] == 502 and "error.type" in attrs(server)
    attempts = collector.wait(lambda s: s.parent_span_id == server.span_id)
    assert attempts and all(attrs(s).get("error.type") for s in attempts)
    assert len({s.span_id for s in attempts}) == 1 + attrs(server)["lockgate.retries"]


def test_a_dead_collector_never_slows_requests(mocks, tmp_path):
    config = gateway_config(mocks)
    config["litellm_settings"] = {"callbacks": ["otel"]}
    gw = start_gateway(config, tmp_path, env_extra={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_BSP_SCHEDULE_DELAY": "50"})
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
        started = time.monotonic()
        for _ in range(30):
            client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hi"}])
        assert time.monotonic() - started < 5  # 30 answers, the exporter failing behind them
    finally:
        gw.process.terminate()
        gw.process.wait(10)


def test_langfuse_otel_sends_to_its_endpoint_with_basic_auth_and_its_attributes(mocks, tmp_path):
    import base64

    collector = Collector()
    paths: list[str] = []

    def app(_recorder) -> web.Application:
        async def traces(request: web.Request) -> web.Response:
            paths.append(request.path)
            export = ExportTraceServiceRequest()
            export.ParseFromString(await request.read())
            collector.headers.append(dict(request.headers))
            for rs in export.resource_spans:
                for ss in rs.scope_spans:
                    collector.spans.extend(ss.spans)
            return web.Response(body=b"")

        application = web.Application()
        application.router.add_post("/api/public/otel/v1/traces", traces)
        return application

    host = MockHost()
    server = host.start("langfuse", app)
    config = gateway_config(mocks)
    config["litellm_settings"] = {"callbacks": ["langfuse_otel"]}
    gw = start_gateway(config, tmp_path, env_extra={
        "LANGFUSE_HOST": server.url, "LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
        reply = client.chat.completions.with_raw_response.create(
            model="mock-model", messages=[{"role": "user", "content": "hi"}], user="end-user-7",
            extra_body={"metadata": {"session_id": "sess-1", "tags": ["prod", "checkout"]}})
        rid = reply.headers["x-request-id"]
        server_span = collector.wait(lambda s: attrs(s).get("lockgate.request_id") == rid)[0]
        a = attrs(server_span)
        assert a["user.id"] == "end-user-7" and a["session.id"] == "sess-1"
        assert a["langfuse.trace.tags"] == ["prod", "checkout"]
        gen = collector.wait(lambda s: s.parent_span_id == server_span.span_id)[0]
        assert attrs(gen)["langfuse.observation.type"] == "generation"
        expected = "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test").decode()
        assert collector.headers[-1]["Authorization"] == expected and paths[-1] == "/api/public/otel/v1/traces"
    finally:
        gw.process.terminate()
        gw.process.wait(10)
        host.stop()
