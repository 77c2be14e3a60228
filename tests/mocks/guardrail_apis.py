"""Fakes of the external guardrail services (aiohttp), on their real paths, auth headers, bodies and
error shapes.  Each ``create_<service>_app(recorder)`` records every request (path, headers lower-cased,
JSON body) in ``recorder.requests``.

What they answer is chosen by the text they are given:

  * ``TRIGGER_500``  -> the service's 500 error shape
  * ``TRIGGER_SLOW`` -> waits ``SLOW_SECONDS`` first (for timeouts)
  * an e-mail address (``EMAIL``) -> PII found: masked by the services that mask (generic API,
    Lakera ``pii/email`` with its span, Bedrock ``{EMAIL}`` ANONYMIZED, Presidio ``EMAIL_ADDRESS``)
  * generic API: ``badword`` -> BLOCKED;  OpenAI moderation: ``kill`` -> flagged (violence,
    harassment/threatening);  Lakera: ``ignore previous instructions`` -> ``prompt_attack``;
    Bedrock: ``stock tips`` -> the denied topic ``Investment Advice`` (BLOCKED);
    Presidio: also phone numbers (``555-123-4567``) and US SSNs (``123-45-6789``).

Shapes, from each service's documentation (and LiteLLM's clients of them):
generic API (LiteLLM docs "Generic Guardrail API": ``POST /beta/litellm_basic_guardrail_api``, FastAPI
errors), OpenAI ``POST /v1/moderations`` (``{"error": {message, type, param, code}}``), Lakera
``POST /v2/guard`` (Bearer; ``payload`` / ``breakdown`` / ``dev_info`` only when asked), Bedrock
``POST /guardrail/{id}/version/{version}/apply`` (SigV4 checked with botocore by
``bedrock_api.check_signature``; AWS REST-JSON errors with ``x-amzn-ErrorType``), Presidio analyzer
``POST /analyze`` (a list of results; errors ``{"error": ...}``).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from . import Received, Recorder
from . import bedrock_api as bmock

GENERIC_API_KEY = "generic-guardrail-key-0123456789"
OPENAI_API_KEY = "sk-moderation-test-key-0123456789"
LAKERA_API_KEY = "lakera-test-key-0123456789"
BEDROCK_GUARDRAIL_ID = "gr-abc123xyz789"
BEDROCK_GUARDRAIL_ARN = f"arn:aws:bedrock:us-east-1:123456789012:guardrail/{BEDROCK_GUARDRAIL_ID}"
BEDROCK_VERSION = "1"
BEDROCK_BLOCKED_MESSAGE = "Sorry, the model cannot answer this question."
SLOW_SECONDS = 2.0
RECORDER = web.AppKey("recorder", Recorder)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
MODERATION_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                         "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
                         "sexual/minors", "violence", "violence/graphic")
MODERATION_MODELS = ("omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest",
                     "text-moderation-stable")


def _app(recorder: Recorder, handler: Any) -> web.Application:
    app = web.Application()
    app[RECORDER] = recorder

    async def dispatch(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        request.app[RECORDER].requests.append(Received(
            path=request.raw_path, query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()}, body=body))
        return await handler(request, raw, body)

    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


async def _slow(text: str) -> None:
    if "TRIGGER_SLOW" in text:
        await asyncio.sleep(SLOW_SECONDS)


def _fastapi_422(field: str, message: str = "Field required") -> web.Response:
    return _json({"detail": [{"type": "missing", "loc": ["body", field], "msg": message, "input": None}]}, 422)


# ---------------------------------------------------------------- LiteLLM Generic Guardrail API


def create_generic_app(recorder: Recorder) -> web.Application:
    return _app(recorder, _generic)


async def _generic(request: web.Request, raw: bytes, body: Any) -> web.Response:
    if request.method != "POST" or request.path != "/beta/litellm_basic_guardrail_api":
        return _json({"detail": "Not Found"}, 404)
    if request.headers.get("x-api-key") != GENERIC_API_KEY:
        return _json({"detail": "Invalid API key"}, 401)
    if not isinstance(body, dict):
        return _fastapi_422("body", "JSON decode error")
    texts = body.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return _fastapi_422("texts")
    if body.get("input_type") not in ("request", "response"):
        return _fastapi_422("input_type", "Input should be 'request' or 'response'")
    for field in ("request_data", "additional_provider_specific_params"):
        if not isinstance(body.get(field), dict):
            return _fastapi_422(field)
    joined = "\n".join(texts)
    await _slow(joined)
    if "TRIGGER_500" in joined:  # an unhandled exception in a FastAPI app
        return web.Response(status=500, text="Internal Server Error")
    if "badword" in joined.lower():
        return _json({"action": "BLOCKED", "blocked_reason": "Content contains prohibited terms",
                      "texts": None, "images": None})
    if EMAIL.search(joined):
        return _json({"action": "GUARDRAIL_INTERVENED", "blocked_reason": None,
                      "texts": [EMAIL.sub("[REDACTED_EMAIL]", t) for t in texts], "images": None})
    return _json({"action": "NONE", "blocked_reason": None, "texts": None, "images": None})


# ---------------------------------------------------------------- OpenAI moderation


def _openai_error(status: int, message: str, kind: str, code: str | None = None, param: str | None = None
                  ) -> web.Response:
    return _json({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def create_openai_moderation_app(recorder: Recorder) -> web.Application:
    return _app(recorder, _moderation)


async def _moderation(request: web.Request, raw: bytes, body: Any) -> web.Response:
    if request.method != "POST" or request.path != "/v1/moderations":
        return _openai_error(404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error")
    if request.headers.get("authorization") != f"Bearer {OPENAI_API_KEY}":
        return _openai_error(401, "Incorrect API key provided. You can find your API key at "
                             "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                             "invalid_api_key")
    if not isinstance(body, dict) or "input" not in body:
        return _openai_error(400, "'input' is a required property", "invalid_request_error", param="input")
    model = body.get("model", "omni-moderation-latest")
    if model not in MODERATION_MODELS:
        return _openai_error(400, f"Invalid value for 'model' = {model}.", "invalid_request_error", param="model")
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if not all(isinstance(i, str) for i in inputs):
        return _openai_error(400, "Invalid type for 'input'.", "invalid_request_error", param="input")
    await _slow("".join(inputs))
    if any("TRIGGER_500" in i for i in inputs):
        return _openai_error(500, "The server had an error while processing your request. Sorry about that!",
                             "server_error")
    results = []
    for text in inputs:
        violent = "kill" in text.lower()
        scores = {c: 0.0001 for c in MODERATION_CATEGORIES}
        if violent:
            scores.update({"violence": 0.9132, "harassment/threatening": 0.6021, "harassment": 0.4410})
        flags = {c: scores[c] > 0.5 for c in MODERATION_CATEGORIES}
        results.append({"flagged": any(flags.values()), "categories": flags, "category_scores": scores,
                        "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES}})
    return _json({"id": f"modr-{uuid.uuid4().hex[:24]}", "model": f"{model.removesuffix('-latest')}-2024-09-26"
                  if model.endswith("-latest") else model, "results": results})


# ---------------------------------------------------------------- Lakera Guard v2

LAKERA_DETECTORS = ("prompt_attack", "moderated_content/hate", "pii/email", "pii/credit_card", "unknown_links")


def create_lakera_app(recorder: Recorder) -> web.Application:
    return _app(recorder, _lakera)


async def _lakera(request: web.Request, raw: bytes, body: Any) -> web.Response:
    if request.method != "POST" or request.path != "/v2/guard":
        return _json({"detail": "Not Found"}, 404)
    if request.headers.get("authorization") != f"Bearer {LAKERA_API_KEY}":
        return _json({"detail": "Unauthorized: invalid API key"}, 401)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and m.get("role") in ("system", "user", "assistant", "tool")
            and isinstance(m.get("content"), str) for m in messages):
        return _fastapi_422("messages", "messages must be a non-empty list of {role, content}")
    for flag in ("payload", "breakdown", "dev_info"):
        if flag in body and not isinstance(body[flag], bool):
            return _fastapi_422(flag, "Input should be a valid boolean")
    everything = "\n".join(m["content"] for m in messages)
    await _slow(everything)
    if "TRIGGER_500" in everything:
        return _json({"detail": "Internal Server Error"}, 500)
    spans = [{"start": m.start(), "end": m.end(), "text": m.group(), "detector_type": "pii/email",
              "labels": ["pii", "pii/email"], "message_id": index}
             for index, message in enumerate(messages) for m in EMAIL.finditer(message["content"])]
    detected = {"prompt_attack": "ignore previous instructions" in everything.lower(), "pii/email": bool(spans)}
    answer: dict[str, Any] = {"flagged": any(detected.values()),
                              "metadata": {"request_uuid": str(uuid.uuid4())}}
    if body.get("payload"):
        answer["payload"] = spans
    if body.get("breakdown"):
        answer["breakdown"] = [{"project_id": body.get("project_id", "project-default"),
                                "policy_id": "policy-lakera-default", "detector_id": f"detector-{kind}",
                                "detector_type": kind, "detected": detected.get(kind, False),
                                "message_id": len(messages) - 1} for kind in LAKERA_DETECTORS]
    if body.get("dev_info"):
        answer["dev_info"] = {"git_revision": "0f1e2d3c", "git_timestamp": "2025-01-01T00:00:00+00:00",
                              "model_version": "lakera-guard-1", "version": "2.0.0"}
    return _json(answer)


# ---------------------------------------------------------------- Bedrock ApplyGuardrail

_APPLY = re.compile(r"^/guardrail/([^/]+)/version/([^/]+)/apply$")


def create_bedrock_app(recorder: Recorder) -> web.Application:
    return _app(recorder, _bedrock)


async def _bedrock(request: web.Request, raw: bytes, body: Any) -> web.Response:
    route = _APPLY.match(request.raw_path)
    if request.method != "POST" or route is None:
        return bmock.aws_error(404, "UnknownOperationException", "Unknown operation")
    denied = bmock.check_signature(request, raw)
    if denied is not None:
        return denied
    identifier, version = unquote(route.group(1)), unquote(route.group(2))
    if identifier not in (BEDROCK_GUARDRAIL_ID, BEDROCK_GUARDRAIL_ARN) or version not in (BEDROCK_VERSION, "DRAFT"):
        return bmock.aws_error(404, "ResourceNotFoundException",
                               "The guardrail identifier or version provided in the request does not exist.")
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(body, dict) or body.get("source") not in ("INPUT", "OUTPUT"):
        return bmock.aws_error(400, "ValidationException", "1 validation error detected: Value at 'source' "
                               "failed to satisfy constraint: Member must satisfy enum value set: [INPUT, OUTPUT]")
    if not isinstance(content, list) or not content or not all(
            isinstance(c, dict) and isinstance(c.get("text"), dict) and isinstance(c["text"].get("text"), str)
            for c in content):
        return bmock.aws_error(400, "ValidationException", "1 validation error detected: Value at 'content' "
                               "failed to satisfy constraint: Member must not be null")
    texts = [c["text"]["text"] for c in content]
    everything = "\n".join(texts)
    await _slow(everything)
    if "TRIGGER_500" in everything:
        return bmock.aws_error(500, "InternalServerException", "The request processing has failed because of "
                               "an unknown error, exception or failure.")
    assessment: dict[str, Any] = {}
    emails = [m.group() for t in texts for m in EMAIL.finditer(t)]
    topic = "stock tips" in everything.lower()
    if topic:
        assessment["topicPolicy"] = {"topics": [{"name": "Investment Advice", "type": "DENY", "action": "BLOCKED",
                                                 "detected": True}]}
    if emails:
        assessment["sensitiveInformationPolicy"] = {"piiEntities": [
            {"match": e, "type": "EMAIL", "action": "ANONYMIZED", "detected": True} for e in emails]}
    characters = sum(len(t) for t in texts)
    coverage = {"textCharacters": {"guarded": characters, "total": characters}}
    assessment["invocationMetrics"] = {"guardrailProcessingLatency": 87, "guardrailCoverage": coverage,
                                       "usage": {"topicPolicyUnits": 1, "contentPolicyUnits": 1}}
    intervened = topic or bool(emails)
    if topic:
        outputs = [{"text": BEDROCK_BLOCKED_MESSAGE}]
    elif emails:
        outputs = [{"text": EMAIL.sub("{EMAIL}", t)} for t in texts]
    else:
        outputs = []
    answer = {
        "usage": {"topicPolicyUnits": 1, "contentPolicyUnits": 1, "wordPolicyUnits": 1,
                  "sensitiveInformationPolicyUnits": 1, "sensitiveInformationPolicyFreeUnits": 0,
                  "contextualGroundingPolicyUnits": 0},
        "action": "GUARDRAIL_INTERVENED" if intervened else "NONE",
        "actionReason": "Guardrail blocked." if topic else ("Guardrail masked." if emails else "No action."),
        "outputs": outputs,
        "assessments": [assessment],
        "guardrailCoverage": coverage,
    }
    return _json(answer, headers={"x-amzn-RequestId": str(uuid.uuid4())})


# ---------------------------------------------------------------- Presidio analyzer

_PRESIDIO = (  # entity, pattern, score, recognizer
    ("EMAIL_ADDRESS", EMAIL, 1.0, "EmailRecognizer"),
    ("PHONE_NUMBER", re.compile(r"\b\d{3}-\d{3}-\d{4}\b"), 0.75, "PhoneRecognizer"),
    ("US_SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), 0.85, "UsSsnRecognizer"),
)


def create_presidio_app(recorder: Recorder) -> web.Application:
    return _app(recorder, _presidio)


def _presidio_result(entity: str, start: int, end: int, score: float, recognizer: str) -> dict[str, Any]:
    return {"analysis_explanation": None, "end": end, "entity_type": entity,
            "recognition_metadata": {"recognizer_identifier": f"{recognizer}_140245", "recognizer_name": recognizer},
            "score": score, "start": start}


async def _presidio(request: web.Request, raw: bytes, body: Any) -> web.Response:
    if request.method != "POST" or request.path != "/analyze":
        return _json({"error": "Not Found"}, 404)
    if not isinstance(body, dict):
        return _json({"error": "Invalid request json"}, 400)
    text, language = body.get("text"), body.get("language")
    if not text:
        return _json({"error": "No text provided"}, 500)
    if not language:
        return _json({"error": "No language provided"}, 500)
    if language != "en":
        return _json({"error": "No matching recognizers were found to serve the request."}, 500)
    await _slow(text)
    if "TRIGGER_500" in text:
        return _json({"error": "Unexpected error in the analyzer engine"}, 500)
    entities = body.get("entities")
    threshold = float(body.get("score_threshold") or 0.0)
    results = []
    for entity, pattern, score, recognizer in _PRESIDIO:
        for m in pattern.finditer(text):
            results.append(_presidio_result(entity, m.start(), m.end(), score, recognizer))
            if entity == "EMAIL_ADDRESS":  # Presidio's URL recognizer also reports the e-mail's domain
                domain = m.group().split("@", 1)[1]
                at = m.start() + m.group().index("@") + 1
                results.append(_presidio_result("URL", at, at + len(domain), 0.5, "UrlRecognizer"))
    results = [r for r in results if (not entities or r["entity_type"] in entities) and r["score"] >= threshold]
    return web.Response(body=orjson.dumps(sorted(results, key=lambda r: (r["start"], r["end"]))),
                        content_type="application/json")
