"""``generic_guardrail_api``: LiteLLM's Generic Guardrail API, a service anyone implements.

POST ``{api_base}/beta/litellm_basic_guardrail_api`` (the path is appended unless ``api_base`` ends with
it; ``GENERIC_GUARDRAIL_API_BASE`` when ``api_base`` is unset) with headers ``Content-Type``, the
configured ``headers`` and ``x-api-key: <api_key>``, and the body::

    {"texts": [text], "request_data": {}, "input_type": "request" | "response",
     "litellm_call_id": null, "litellm_trace_id": null,
     "additional_provider_specific_params": {...}}

The answer: ``{"action": "BLOCKED" | "NONE" | "GUARDRAIL_INTERVENED", "blocked_reason"?, "texts"?}``.
BLOCKED blocks (the reason is the message); returned ``texts`` that differ from the text mask it (LiteLLM
applies them whatever the action); an action outside the three is an unreadable answer.
Reference: LiteLLM docs "Generic Guardrail API" and its ``generic_guardrail_api.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..config import GuardrailConfigError
from ..types import Verdict
from .base import JSON, base_url, joined, mapping_param, post_json, text_param, timeout_of, unreadable, where, whole

if TYPE_CHECKING:
    from ...transport.client import Upstream
    from ..config import GuardrailSpec

PATH = "/beta/litellm_basic_guardrail_api"
FIELDS = frozenset({"headers", "additional_provider_specific_params", "timeout"})
SERVICE = "generic guardrail API"
REASON_LIMIT = 300  # the service's own words, shortened


class GenericGuardrailApi:
    def __init__(self, spec: GuardrailSpec, http: Upstream) -> None:
        base = text_param(spec, "api_base") or os.environ.get("GENERIC_GUARDRAIL_API_BASE")
        if not base:
            raise GuardrailConfigError(f"{where(spec)}: litellm_params.api_base is required "
                                       "(or GENERIC_GUARDRAIL_API_BASE)")
        self.http = http
        self.url = joined(base_url(spec, base), PATH)
        self.timeout = timeout_of(spec)
        self.headers = {**JSON, **{k: str(v) for k, v in mapping_param(spec, "headers").items()}}
        api_key = text_param(spec, "api_key")
        if api_key:
            self.headers["x-api-key"] = api_key
        self.extra = mapping_param(spec, "additional_provider_specific_params")

    async def acheck(self, text: str, *, source: str) -> Verdict:
        if not text.strip():
            return Verdict("pass", text)
        payload = {
            "texts": [text],
            "request_data": {},
            "input_type": "response" if source == "output" else "request",
            "litellm_call_id": None,
            "litellm_trace_id": None,
            "additional_provider_specific_params": self.extra,
        }
        answer = await post_json(self.http, SERVICE, self.url, self.headers, payload, self.timeout)
        return verdict(answer, text)


def verdict(answer: Any, text: str) -> Verdict:
    if not isinstance(answer, dict):
        raise unreadable(SERVICE)
    action = answer.get("action") or "NONE"
    if action == "BLOCKED":
        reason = answer.get("blocked_reason")
        message = reason[:REASON_LIMIT] if isinstance(reason, str) and reason else "content violates policy"
        return Verdict("block", text, [whole(text, "guardrail_blocked", "block")], message=message)
    if action not in ("NONE", "GUARDRAIL_INTERVENED"):
        raise unreadable(SERVICE)
    texts = answer.get("texts")
    if not texts:  # absent or empty: nothing changed (as LiteLLM reads it)
        return Verdict("pass", text)
    if not isinstance(texts, list) or len(texts) != 1 or not isinstance(texts[0], str):
        raise unreadable(SERVICE)
    if texts[0] == text:
        return Verdict("pass", text)
    return Verdict("mask", texts[0], [whole(text, "guardrail_modified", "mask")])
