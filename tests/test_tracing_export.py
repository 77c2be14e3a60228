"""Span export: OTLP/HTTP JSON (``OTEL_EXPORTER_OTLP_PROTOCOL=http/json``) decoded per the OTLP/JSON spec by
a receiver in the test process (hex ids, integer enums, lowerCamelCase), and the export counters
(``lockgate_trace_spans_exported_total``, ``lockgate_trace_spans_dropped_total{reason}``): a live collector
received as many spans as were counted exported; a dead collector behind a tiny queue has its drops
counted while requests stay as fast as without tracing."""

from __future__ import annotations

import json
import re
import statistics
import time
import uuid

import httpx
import openai
import pytest
from aiohttp import web

from tests.conftest import MASTER_KEY, MockHost, free_port, gateway_config, start_gateway
from tests.test_tracing import Collector


class JsonCollector(Collector):
    """The same receiver for ``http/json`` exports (OTLP/JSON)."""

    async def receive(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if request.content_type != "application/json":
            return web.Response(status=415)
        body = json.loads(await request.read())
        for resource_spans in body["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                self.spans.extend(scope_spans["spans"])
        return web.json_response({})


def attrs(span: dict) -> dict:
    """OTLP/JSON attributes: ``[{"key": ..., "value": {"stringValue" | "intValue" (a string) | ...: v}}]``."""
    out = {}
    for kv in span.get("attributes", ()):
        (kind, value), = kv["value"].items()
        if kind == "intValue":
            value = int(value)
        elif kind == "arrayValue":
            value = [next(iter(v.values())) for v in value.get("values", ())]
        out[kv["key"]] = value
    return out


def scrape(gw, name: str) -> float:
    text = httpx.get(gw.url + "/metrics").text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def json_traced(mocks, tmp_path_factory):
    collector = JsonCollector()
    host = MockHost()
    server = host.start("otlp-json", collector.app)
    config = gateway_config(mocks)
    config["litellm_settings"] = {"drop_params": True, "callbacks": ["otel"]}
    gw = start_gateway(config, tmp_path_factory.mktemp("json"), env_extra={
        "OTEL_EXPORTER_OTLP_ENDPOINT": server.url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=json"})
    yield gw, collector
    gw.process.terminate()
    gw.process.wait(10)
    host.stop()


def test_http_json_exports_spans_per_the_otlp_json_spec(json_traced):
    gw, collector = json_traced
    trace_id = uuid.uuid4().hex
    parent = uuid.uuid4().hex[:16]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    reply = client.chat.completions.with_raw_response.create(
        model="openai-model", messages=[{"role": "user", "content": "json trace"}],
        extra_headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    rid = reply.headers["x-request-id"]
    server = collector.wait(lambda s: attrs(s).get("lockgate.request_id") == rid)[0]
    assert server["traceId"] == trace_id and server["parentSpanId"] == parent  # hex, not base64
    assert re.fullmatch(r"[0-9a-f]{16}", server["spanId"])
    assert server["kind"] == 2 and server["name"] == "chat openai-model"  # SPAN_KIND_SERVER, as an integer
    a = attrs(server)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "openai-model"
    assert a["gen_ai.response.model"] == "gpt-4o-mini" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["http.response.status_code"] == 200
    assert int(server["endTimeUnixNano"]) >= int(server["startTimeUnixNano"]) > 0
    attempt = collector.wait(lambda s: s.get("parentSpanId") == server["spanId"])[0]
    assert attempt["traceId"] == trace_id and attempt["kind"] == 3  # SPAN_KIND_CLIENT
    assert attrs(attempt)["lockgate.deployment.id"] == reply.headers["x-lockgate-deployment"]
    sent = collector.headers[-1]
    assert sent["Content-Type"] == "application/json" and sent.get("x-collector-token") == "json"
    assert "json trace" not in str(collector.spans)


def test_a_live_collector_received_every_span_counted_exported(json_traced):
    gw, collector = json_traced
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    for _ in range(10):
        client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "count"}])
    deadline = time.monotonic() + 10
    exported = -1.0
    while time.monotonic() < deadline:
        exported = scrape(gw, "lockgate_trace_spans_exported_total")
        if exported == len(collector.spans) and exported >= 20:
            break
        time.sleep(0.1)
    assert exported == len(collector.spans) and exported >= 20  # 2 spans per request
    text = httpx.get(gw.url + "/metrics").text
    assert 'lockgate_trace_spans_dropped_total{reason="queue_full"} 0.0' in text  # both series from the start
    assert 'lockgate_trace_spans_dropped_total{reason="export_failed"} 0.0' in text


def _p50(gw, n: int = 40) -> float:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    took = []
    for _ in range(n):
        started = time.perf_counter()
        client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hi"}])
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def test_a_dead_collector_with_a_tiny_queue_counts_its_drops_and_never_slows_requests(mocks, tmp_path):
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    plain = start_gateway(gateway_config(mocks), tmp_path / "off")
    gateways = [plain]
    try:
        config = gateway_config(mocks)
        config["litellm_settings"] = {"callbacks": ["otel"]}
        dead = start_gateway(config, tmp_path / "on", env_extra={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_BSP_MAX_QUEUE_SIZE": "4", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1"})
        gateways.append(dead)
        _p50(plain, 5), _p50(dead, 5)  # warm both
        off = _p50(plain)
        on = _p50(dead)
        assert on < off * 2 + 0.01, (on, off)  # 80 spans into a queue of 4, the exporter failing behind them
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            queue_full = scrape(dead, 'lockgate_trace_spans_dropped_total{reason="queue_full"}')
            failed = scrape(dead, 'lockgate_trace_spans_dropped_total{reason="export_failed"}')
            if queue_full and failed:
                break
            time.sleep(0.2)
        assert queue_full > 0 and failed > 0
        assert scrape(dead, "lockgate_trace_spans_exported_total") == 0
        # each span is counted once at most: dropped from the queue, failed, or still queued / exporting
        assert queue_full + failed <= 2 * 50
    finally:
        for gw in gateways:
            gw.process.terminate()
            gw.process.wait(10)


def test_the_counts_add_up_to_every_span_ended():
    """In process: a slow exporter failing one batch in three behind a queue of 8: every span ended is
    counted exactly once, exported, export_failed or queue_full (the queue is drained at shutdown)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from lockgate.observability.metrics import Metrics
    from lockgate.observability.tracing import _CountingProcessor

    class Slow(SpanExporter):
        def __init__(self) -> None:
            self.seen = self.batches = 0

        def export(self, spans):
            time.sleep(0.02)
            self.seen += len(spans)
            self.batches += 1
            return SpanExportResult.FAILURE if self.batches % 3 == 0 else SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    metrics, exporter = Metrics(), Slow()
    provider = TracerProvider()
    provider.add_span_processor(_CountingProcessor(exporter, metrics, 8, 4))
    tracer = provider.get_tracer("test")
    for i in range(300):
        tracer.start_span("s").end()
        if i % 10 == 0:
            time.sleep(0.005)
    provider.shutdown()

    def value(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    exported = value("lockgate_trace_spans_exported_total")
    failed = value("lockgate_trace_spans_dropped_total", reason="export_failed")
    queue_full = value("lockgate_trace_spans_dropped_total", reason="queue_full")
    assert exported > 0 and failed > 0 and queue_full > 0
    assert exported + failed == exporter.seen and exported + failed + queue_full == 300
