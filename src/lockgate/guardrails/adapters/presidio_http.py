"""``presidio`` with ``presidio_analyzer_api_base``: a Presidio analyzer server.

POST ``{presidio_analyzer_api_base}/analyze`` with ``{"text", "language": <presidio_language, default
en>, "entities"?: <the keys of pii_entities_config>, "score_threshold"?: <presidio_score_thresholds.ALL>}``.
The answer is a list of ``{"entity_type", "start", "end", "score", "analysis_explanation",
"recognition_metadata"}`` (an error is ``{"error": "..."}`` with 400 or 500).

Each result above its threshold (``presidio_score_thresholds``: per entity, else ``ALL``) takes the
action of ``pii_entities_config`` (``MASK`` | ``BLOCK``; without a config every entity is masked).
Overlapping results keep the higher score (then the longer span), as Presidio's anonymizer does.  Any
BLOCK blocks; otherwise the masked text has ``<ENTITY_TYPE>`` in place of each value (the engine makes
reversible tokens of its own from the detections).
Reference: Presidio analyzer REST API (``/analyze``); LiteLLM ``guardrail_hooks/presidio.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import GuardrailConfigError
from ..types import Detection, Verdict
from .base import base_url, mapping_param, post_json, text_param, timeout_of, unreadable, where

if TYPE_CHECKING:
    from ...transport.client import Upstream
    from ..config import GuardrailSpec

FIELDS = frozenset({"presidio_analyzer_api_base", "pii_entities_config", "presidio_language",
                    "presidio_score_thresholds", "timeout"})
SERVICE = "Presidio analyzer"
HEADERS = {"accept": "application/json", "content-type": "application/json"}


class PresidioAnalyzer:
    def __init__(self, spec: GuardrailSpec, http: Upstream) -> None:
        base = text_param(spec, "presidio_analyzer_api_base")
        if not base:
            raise GuardrailConfigError(f"{where(spec)}: litellm_params.presidio_analyzer_api_base is required")
        if not base.startswith(("http://", "https://")):  # LiteLLM assumes a private network
            base = "http://" + base
        self.http = http
        self.url = base_url(spec, base) + "/analyze"
        self.timeout = timeout_of(spec)
        self.language = text_param(spec, "presidio_language") or "en"
        self.actions: dict[str, str] = {}
        for entity, action in mapping_param(spec, "pii_entities_config").items():
            if not isinstance(action, str) or action.upper() not in ("MASK", "BLOCK"):
                raise GuardrailConfigError(f"{where(spec)}: pii_entities_config.{entity} is MASK or BLOCK")
            self.actions[entity] = action.upper()
        self.thresholds: dict[str, float] = {}
        for entity, value in mapping_param(spec, "presidio_score_thresholds").items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise GuardrailConfigError(f"{where(spec)}: presidio_score_thresholds.{entity} is a number "
                                           "from 0 to 1")
            self.thresholds[entity] = float(value)

    async def acheck(self, text: str, *, source: str) -> Verdict:
        if not text.strip():  # Presidio answers an error for an empty text
            return Verdict("pass", text)
        payload: dict[str, Any] = {"text": text, "language": self.language}
        if self.actions:
            payload["entities"] = list(self.actions)
        if "ALL" in self.thresholds:
            payload["score_threshold"] = self.thresholds["ALL"]
        answer = await post_json(self.http, SERVICE, self.url, HEADERS, payload, self.timeout)
        return self.verdict(answer, text)

    def verdict(self, answer: Any, text: str) -> Verdict:
        if not isinstance(answer, list):
            raise unreadable(SERVICE)
        try:
            found = [self._detection(item, len(text)) for item in answer]
        except (TypeError, KeyError, AttributeError, ValueError):
            raise unreadable(SERVICE) from None
        valid = [d for d in found if d is not None]
        if not valid:
            return Verdict("pass", text)
        blocked = [d.type for d in valid if d.action == "block"]  # before overlaps: a BLOCK entity always counts
        if blocked:
            return Verdict("block", text, valid, message=f"PII not allowed: {', '.join(dict.fromkeys(blocked))}")
        kept = _without_overlaps(valid)
        parts: list[str] = []
        cursor = 0
        for d in kept:
            parts += [text[cursor:d.start], f"<{d.type}>"]
            cursor = d.end
        parts.append(text[cursor:])
        return Verdict("mask", "".join(parts), kept)

    def _detection(self, item: dict[str, Any], size: int) -> Detection | None:
        entity = str(item["entity_type"])
        start, end, score = int(item["start"]), int(item["end"]), float(item.get("score", 1.0))
        if not 0 <= start < end <= size:
            return None
        if self.actions and entity not in self.actions:  # not asked for
            return None
        if score < self.thresholds.get(entity, self.thresholds.get("ALL", 0.0)):
            return None
        return Detection(entity, start, end, score, "block" if self.actions.get(entity) == "BLOCK" else "mask")


def _without_overlaps(found: list[Detection]) -> list[Detection]:
    """Higher score first, then the longer span; a result overlapping one kept is dropped; in text order."""
    kept: list[Detection] = []
    for d in sorted(found, key=lambda d: (-d.score, -(d.end - d.start), d.start)):
        if all(d.end <= k.start or d.start >= k.end for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: d.start)
