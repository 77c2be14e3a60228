"""OTLP/HTTP with JSON bodies (``OTEL_EXPORTER_OTLP_PROTOCOL=http/json``): the OpenTelemetry SDK ships no
such span exporter, so this one subclasses its OTLP/HTTP protobuf exporter and changes only the body.

The batch is encoded by the SDK's own encoder (``encode_spans``: the same ``ExportTraceServiceRequest``
the protobuf exporter sends), then written per the OTLP/JSON rules: lowerCamelCase field names, enums as
integers, 64-bit integers as decimal strings (the protobuf JSON mapping's form, which the spec allows), and
``traceId`` / ``spanId`` / ``parentSpanId`` (of spans and links) as lowercase hex instead of base64.  It is
POSTed with ``Content-Type: application/json`` to the same endpoint (``.../v1/traces``) with the same
headers (``OTEL_EXPORTER_OTLP_HEADERS``), compression, timeout, retries and request size limit: the
parent's HTTP client (``_client``, the SDK's retrying sender: an internal attribute, checked at start; without
it tracing.py falls back to ``http/protobuf`` with a warning) sends the bytes.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

log = logging.getLogger("lockgate.tracing")

_HEX_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(item: dict[str, Any]) -> None:
    for name in _HEX_FIELDS:
        value = item.get(name)
        if isinstance(value, str):
            item[name] = base64.b64decode(value).hex()


def to_json(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP/JSON body of a batch (``ExportTraceServiceRequest``)."""
    body = MessageToDict(encode_spans(spans), preserving_proto_field_name=False, use_integers_for_enums=True)
    for resource_spans in body.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex_ids(span)
                for link in span.get("links", ()):
                    _hex_ids(link)
    return json.dumps(body, separators=(",", ":")).encode()


class OTLPJsonSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, sending JSON."""

    def __init__(self, headers: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(headers={**(headers or {}), "content-type": "application/json"}, **kwargs)
        if not callable(getattr(getattr(self, "_client", None), "export", None)):
            raise RuntimeError("this OpenTelemetry SDK's OTLP/HTTP exporter has no retrying client to reuse")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            log.warning("OTLP/JSON exporter already shut down: batch dropped")
            return SpanExportResult.FAILURE
        try:
            data = to_json(spans)
        except Exception as exc:  # noqa: BLE001 - the SDK's exporters report, never raise
            log.error("OTLP/JSON: failed to encode a span batch: %s", exc)
            return SpanExportResult.FAILURE
        limit = getattr(self, "_max_request_size", 0)  # the protobuf exporter's limit (64 MiB by default)
        if isinstance(limit, int) and 0 < limit < len(data):
            log.warning("OTLP/JSON: dropping a span batch of %d bytes: over max_request_size %d", len(data), limit)
            return SpanExportResult.FAILURE
        result = self._client.export(data)  # compression, timeout and retries: the SDK's client
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE
