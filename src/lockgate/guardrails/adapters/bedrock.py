"""``bedrock``: Amazon Bedrock Guardrails, ApplyGuardrail.

POST ``https://bedrock-runtime.{aws_region_name}.amazonaws.com/guardrail/{guardrailIdentifier}/version/
{guardrailVersion}/apply`` (the base is ``api_base`` or ``aws_bedrock_runtime_endpoint`` when set; the
identifier, which may be an ARN, is URL-encoded), SigV4-signed for service ``bedrock`` exactly as the
Bedrock provider signs (``providers/aws_auth.AwsAuth``: ``aws_access_key_id`` / ``aws_secret_access_key``
/ ``aws_session_token``, else ``aws_profile_name``, else botocore's default chain), with
``{"source": "INPUT" | "OUTPUT", "content": [{"text": {"text": text}}]}``.

The answer ``{"action": "NONE" | "GUARDRAIL_INTERVENED", "outputs": [{"text"}], "assessments": [{
"topicPolicy", "contentPolicy", "wordPolicy", "sensitiveInformationPolicy",
"contextualGroundingPolicy"}], "usage", ...}``.  NONE passes.  Intervened: any assessment whose
``action`` is BLOCKED blocks; when every one is ANONYMIZED the outputs' text (the text with
``{EMAIL}``-style masks) is the masked text.  Detections name the policy item (``EMAIL``,
``regex:<name>``, ``topic:<name>``, ``content:<type>``, ``word:custom``, ``word:<list>``,
``grounding:<type>``); matched values only place them (offsets), never leave this module.
Reference: AWS Bedrock API reference "ApplyGuardrail"; LiteLLM ``guardrail_hooks/bedrock_guardrails.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from ...errors import LockgateError
from ..config import GuardrailConfigError
from ..types import Detection, Verdict
from .base import (
    JSON,
    AdapterUnavailable,
    base_url,
    blocked_message,
    locate,
    post,
    text_param,
    timeout_of,
    unreadable,
    where,
)

if TYPE_CHECKING:
    from ...config import Deployment
    from ...providers.aws_auth import AwsAuth
    from ...transport.client import Upstream
    from ..config import GuardrailSpec

AWS_FIELDS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region_name",
              "aws_profile_name")
FIELDS = frozenset({"guardrailIdentifier", "guardrailVersion", "aws_bedrock_runtime_endpoint", "timeout",
                    *AWS_FIELDS})
SERVICE = "Bedrock ApplyGuardrail"
ACTIONS = {"BLOCKED": "block", "ANONYMIZED": "mask"}


class BedrockGuardrail:
    def __init__(self, spec: GuardrailSpec, http: Upstream) -> None:
        from ...config import Deployment
        from ...providers.aws_auth import AwsAuth

        identifier = text_param(spec, "guardrailIdentifier")
        version = spec.params.get("guardrailVersion")
        if not identifier or version is None or version == "":
            raise GuardrailConfigError(f"{where(spec)}: litellm_params.guardrailIdentifier and guardrailVersion "
                                       "are required")
        self.http = http
        self.timeout = timeout_of(spec)
        # the credentials and region are found like a Bedrock deployment's, from the same fields
        self.dep: Deployment = Deployment(
            model_name=f"guardrail {spec.name}", provider="bedrock", model=f"guardrail/{identifier}",
            id=f"guardrail:{spec.name}", extra={k: spec.params[k] for k in AWS_FIELDS if spec.params.get(k)})
        self.auth: AwsAuth = AwsAuth("bedrock")
        try:
            region = self.auth.region(self.dep)
        except LockgateError:
            raise GuardrailConfigError(f"{where(spec)}: no AWS region: set litellm_params.aws_region_name or "
                                       "AWS_REGION") from None
        base = base_url(spec, text_param(spec, "api_base") or text_param(spec, "aws_bedrock_runtime_endpoint")
                        or f"https://bedrock-runtime.{region}.amazonaws.com")
        self.url = f"{base}/guardrail/{quote(identifier, safe='')}/version/{quote(str(version), safe='')}/apply"

    async def acheck(self, text: str, *, source: str) -> Verdict:
        if not text.strip():
            return Verdict("pass", text)
        body = orjson.dumps({"source": "OUTPUT" if source == "output" else "INPUT",
                             "content": [{"text": {"text": text}}]})
        try:
            headers = await self.auth.sign(self.dep, self.url, dict(JSON), body)
        except LockgateError as exc:  # credentials that cannot be loaded: named by kind only
            raise AdapterUnavailable(f"{SERVICE}: {exc.code or 'AWS credentials'}") from None
        answer = await post(self.http, SERVICE, self.url, headers, body, self.timeout)
        return verdict(answer, text)


def verdict(answer: Any, text: str) -> Verdict:
    if not isinstance(answer, dict):
        raise unreadable(SERVICE)
    if answer.get("action") != "GUARDRAIL_INTERVENED":
        return Verdict("pass", text)
    try:
        detections = _detections(answer.get("assessments") or [], text)
        outputs = "".join(o["text"] for o in answer.get("outputs") or [] if isinstance(o.get("text"), str))
    except (TypeError, KeyError, AttributeError, ValueError):
        raise unreadable(SERVICE) from None
    if any(d.action == "block" for d in detections) or not detections:
        detections = detections or [Detection("guardrail_intervened", 0, len(text))]
        kinds = [d.type for d in detections if d.action == "block"]
        return Verdict("block", text, detections, message=blocked_message("Bedrock guardrail", kinds))
    if outputs and outputs != text:
        return Verdict("mask", outputs, detections)
    return Verdict("pass", text, detections)


def _detections(assessments: list[Any], text: str) -> list[Detection]:
    found: list[Detection] = []
    cursors: dict[str, int] = {}

    def add(kind: str, item: dict[str, Any], score: object = None) -> None:
        action = ACTIONS.get(item.get("action", ""))
        if action is None:  # NONE: detected in detect-only mode, or not at all
            return
        start, end = locate(text, item.get("match"), cursors)
        value = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 1.0
        found.append(Detection(kind, start, end, value, "block" if action == "block" else "mask"))

    for assessment in assessments:
        for item in (assessment.get("topicPolicy") or {}).get("topics") or ():
            add(f"topic:{item.get('name')}", item)
        for item in (assessment.get("contentPolicy") or {}).get("filters") or ():
            add(f"content:{item.get('type')}", item)
        words = assessment.get("wordPolicy") or {}
        for item in words.get("customWords") or ():
            add("word:custom", item)
        for item in words.get("managedWordLists") or ():
            add(f"word:{item.get('type')}", item)
        sensitive = assessment.get("sensitiveInformationPolicy") or {}
        for item in sensitive.get("piiEntities") or ():
            add(str(item.get("type")), item)
        for item in sensitive.get("regexes") or ():
            add(f"regex:{item.get('name')}", item)
        for item in (assessment.get("contextualGroundingPolicy") or {}).get("filters") or ():
            add(f"grounding:{item.get('type')}", item, item.get("score"))
    return found
