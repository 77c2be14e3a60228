"""``lakera_v2``: Lakera Guard, ``/v2/guard``.

POST ``{api_base}/v2/guard`` (``api_base`` default ``LAKERA_API_BASE`` or ``https://api.lakera.ai``) with
``Authorization: Bearer <api_key>`` (``LAKERA_API_KEY``; none for a self-hosted Guard without keys) and::

    {"messages": [{"role": "user" | "assistant", "content": text}], "payload": true, "breakdown": true,
     "project_id"?: ..., "metadata"?: {...}, "dev_info"?: bool}

The answer ``{"flagged": bool, "payload": [{"start", "end", "text", "detector_type", "labels",
"message_id"}], "breakdown": [{"detector_type", "detected", ...}], "metadata": {"request_uuid"}}``.
Not flagged: pass.  Flagged with only ``pii/*`` detectors and their spans: the spans are masked as
``[MASKED <TYPE>]`` (what LiteLLM does).  Otherwise ``on_flagged``: ``block`` (default) blocks,
``monitor`` passes and records the detections.
Reference: Lakera API docs "Screen content" (docs.lakera.ai); LiteLLM ``guardrail_hooks/lakera_ai_v2.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..config import GuardrailConfigError
from ..types import Action, Detection, Verdict
from .base import (
    JSON,
    base_url,
    blocked_message,
    flag_param,
    joined,
    mapping_param,
    post_json,
    text_param,
    timeout_of,
    unreadable,
    where,
    whole,
)

if TYPE_CHECKING:
    from ...transport.client import Upstream
    from ..config import GuardrailSpec

FIELDS = frozenset({"project_id", "payload", "breakdown", "metadata", "dev_info", "on_flagged", "timeout"})
DEFAULT_BASE = "https://api.lakera.ai"
SERVICE = "Lakera Guard"


class LakeraGuard:
    def __init__(self, spec: GuardrailSpec, http: Upstream) -> None:
        self.http = http
        base = text_param(spec, "api_base") or os.environ.get("LAKERA_API_BASE") or DEFAULT_BASE
        self.url = joined(base_url(spec, base), "/v2/guard")
        self.timeout = timeout_of(spec)
        api_key = text_param(spec, "api_key") or os.environ.get("LAKERA_API_KEY")
        self.headers = {**JSON, "authorization": f"Bearer {api_key}"} if api_key else dict(JSON)
        self.on_flagged = spec.params.get("on_flagged") or "block"
        if self.on_flagged not in ("block", "monitor"):
            raise GuardrailConfigError(f"{where(spec)}: litellm_params.on_flagged is block or monitor")
        self.options: dict[str, Any] = {"payload": flag_param(spec, "payload", True),
                                        "breakdown": flag_param(spec, "breakdown", True)}
        project = text_param(spec, "project_id")
        if project:
            self.options["project_id"] = project
        metadata = mapping_param(spec, "metadata")
        if metadata:
            self.options["metadata"] = metadata
        if "dev_info" in spec.params:
            self.options["dev_info"] = flag_param(spec, "dev_info", False)

    async def acheck(self, text: str, *, source: str) -> Verdict:
        if not text.strip():
            return Verdict("pass", text)
        role = "assistant" if source == "output" else "user"
        payload = {"messages": [{"role": role, "content": text}], **self.options}
        answer = await post_json(self.http, SERVICE, self.url, self.headers, payload, self.timeout)
        return verdict(answer, text, monitor=self.on_flagged == "monitor")


def verdict(answer: Any, text: str, *, monitor: bool) -> Verdict:
    if not isinstance(answer, dict):
        raise unreadable(SERVICE)
    if answer.get("flagged") is not True:
        return Verdict("pass", text)
    try:
        found = [str(item["detector_type"]) for item in answer.get("breakdown") or () if item.get("detected")]
        spans = _spans(answer.get("payload") or [], len(text))
    except (TypeError, KeyError, AttributeError, ValueError):
        raise unreadable(SERVICE) from None
    if found and spans and all(kind.startswith("pii/") for kind in found):
        return _masked(text, spans)
    action: Action = "pass" if monitor else "block"
    detections = [Detection(kind, start, end, 1.0, action) for kind, start, end in spans]
    spanned = {kind for kind, _, _ in spans}
    detections += [whole(text, kind, action) for kind in dict.fromkeys(found) if kind not in spanned]
    if not detections:
        detections.append(whole(text, "flagged", action))
    if monitor:
        return Verdict("pass", text, detections)
    return Verdict("block", text, detections, message=blocked_message(SERVICE, [d.type for d in detections]))


def _spans(payload: list[Any], size: int) -> list[tuple[str, int, int]]:
    """The payload's matches in the one message sent, as (detector type, start, end), in order."""
    spans = []
    for item in payload:
        if item.get("message_id", 0) != 0 or not item.get("detector_type"):
            continue
        start, end = int(item["start"]), int(item["end"])
        if 0 <= start < end <= size:
            spans.append((str(item["detector_type"]), start, end))
    return sorted(spans, key=lambda s: (s[1], -s[2]))


def _masked(text: str, spans: list[tuple[str, int, int]]) -> Verdict:
    parts: list[str] = []
    detections: list[Detection] = []
    cursor = 0
    for kind, start, end in spans:
        if start < cursor:  # overlaps a span already masked
            continue
        parts += [text[cursor:start], f"[MASKED {kind.split('/')[-1].upper() or 'PII'}]"]
        detections.append(Detection(kind, start, end, 1.0, "mask"))
        cursor = end
    parts.append(text[cursor:])
    return Verdict("mask", "".join(parts), detections)
