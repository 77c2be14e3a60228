"""``openai_moderation``: OpenAI's moderation endpoint.

POST ``{api_base}/v1/moderations`` (``api_base`` default ``https://api.openai.com``; a base that already
ends with ``/v1``, LiteLLM's form, gets ``/moderations`` only) with ``Authorization: Bearer <api_key>``
(``OPENAI_API_KEY`` when unset) and ``{"model": <model, default omni-moderation-latest>, "input": text}``.

The answer ``{"id", "model", "results": [{"flagged", "categories": {name: bool},
"category_scores": {name: float}, ...}]}``: ``results[0].flagged`` blocks; each flagged category is a
detection over the whole text, scored from ``category_scores``.
Reference: OpenAI API reference "Moderations"; LiteLLM ``guardrail_hooks/openai/moderations.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..config import GuardrailConfigError
from ..types import Detection, Verdict
from .base import JSON, base_url, blocked_message, post_json, text_param, timeout_of, unreadable, where, whole

if TYPE_CHECKING:
    from ...transport.client import Upstream
    from ..config import GuardrailSpec

FIELDS = frozenset({"model", "timeout"})
DEFAULT_BASE = "https://api.openai.com"
DEFAULT_MODEL = "omni-moderation-latest"
SERVICE = "OpenAI moderation"


class OpenAIModeration:
    def __init__(self, spec: GuardrailSpec, http: Upstream) -> None:
        api_key = text_param(spec, "api_key") or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise GuardrailConfigError(f"{where(spec)}: litellm_params.api_key is required (or OPENAI_API_KEY)")
        base = base_url(spec, text_param(spec, "api_base") or DEFAULT_BASE)
        self.http = http
        self.url = base + ("/moderations" if base.endswith("/v1") else "/v1/moderations")
        self.model = text_param(spec, "model") or DEFAULT_MODEL
        self.timeout = timeout_of(spec)
        self.headers = {**JSON, "authorization": f"Bearer {api_key}"}

    async def acheck(self, text: str, *, source: str) -> Verdict:
        if not text.strip():
            return Verdict("pass", text)
        answer = await post_json(self.http, SERVICE, self.url, self.headers, {"model": self.model, "input": text},
                                 self.timeout)
        return verdict(answer, text)


def verdict(answer: Any, text: str) -> Verdict:
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise unreadable(SERVICE)
    if not results:
        return Verdict("pass", text)
    result = results[0]
    if not isinstance(result, dict):
        raise unreadable(SERVICE)
    if result.get("flagged") is not True:
        return Verdict("pass", text)
    categories = result.get("categories") or {}
    scores = result.get("category_scores") or {}
    if not isinstance(categories, dict) or not isinstance(scores, dict):
        raise unreadable(SERVICE)
    detections: list[Detection] = []
    for name, hit in categories.items():
        if hit is True:
            score = scores.get(name)
            detections.append(whole(text, name, "block", float(score) if isinstance(score, int | float) else 1.0))
    if not detections:
        detections.append(whole(text, "flagged", "block"))
    return Verdict("block", text, detections, message=blocked_message(SERVICE, [d.type for d in detections]))
