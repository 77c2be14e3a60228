"""Mock of Google Vertex AI (``{location}-aiplatform.googleapis.com``) and Google's OAuth2 token endpoint.

* ``POST /token``: the JWT-bearer grant of service accounts
  (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``).
  The RS256 signature is verified with the public key registered for the
  account (``iss``), as are ``aud`` (Google's token URI), ``scope``, ``iat``/``exp``
  and ``kid``.  Answers ``{access_token, expires_in, token_type}`` or
  ``400 {"error": "invalid_grant", ...}``.
* ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`` and
  ``:streamGenerateContent?alt=sse`` (Gemini answers, see ``gemini_api``).
* ``POST .../publishers/anthropic/models/{m}:rawPredict`` and ``:streamRawPredict``
  (Claude answers, see ``anthropic_api``): ``anthropic_version`` must be
  ``vertex-2023-10-16`` and ``model`` absent.
* ``POST .../publishers/google/models/{m}:predict`` (text embeddings: ``instances[].content``,
  ``parameters.outputDimensionality``; gemini-embedding-* take one instance), ``:countTokens``
  (Vertex's flat body: ``contents``/``systemInstruction``/``tools``, no ``generateContentRequest``),
  and ``.../publishers/anthropic/models/count-tokens:rawPredict`` (``model`` required in the body).

Every model call needs ``Authorization: Bearer <a token this mock issued and
that has not expired>``, else 401 UNAUTHENTICATED.  Vertex's own errors are
Google-shaped (quota: 429 RESOURCE_EXHAUSTED); Claude's are Anthropic-shaped.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from . import PROMPT_TOKENS, Received, Recorder, last_user_text, trigger
from . import anthropic_api, gemini_api

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # the audience Google requires in the assertion
_MODEL_PATH = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/(google|anthropic)/models/([^/:]+):(\w+)$")


@dataclass
class Account:
    public_key: Any  # cryptography RSA public key
    key_id: str
    expires_in: int = 3599


@dataclass
class TokenState:
    accounts: dict[str, Account] = field(default_factory=dict)  # client_email -> account
    issued: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch seconds)
    grants: dict[str, int] = field(default_factory=dict)  # client_email -> tokens issued


def app_factory(state: TokenState):  # noqa: ANN201
    def create_app(recorder: Recorder) -> web.Application:
        app = web.Application()
        app[anthropic_api.RECORDER] = recorder  # anthropic_api's stream writer reports cancellations there

        async def dispatch(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            recorder.requests.append(Received(request.path, dict(request.query),
                                              {k.lower(): v for k, v in request.headers.items()}, _json(raw)))
            if request.path == "/token":
                return _token(state, raw.decode(), f"http://{request.host}/token")
            return await _model_call(request, state, recorder, _json(raw))

        app.router.add_post("/{tail:.*}", dispatch)
        return app

    return create_app


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


# ---------------------------------------------------------------- OAuth2 token endpoint


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _grant_error(description: str) -> web.Response:
    return web.json_response({"error": "invalid_grant", "error_description": description}, status=400)


def _token(state: TokenState, form: str, token_uri: str) -> web.Response:
    fields = {k: v[0] for k, v in parse_qs(form).items()}
    if fields.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or "assertion" not in fields:
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    try:
        header_b64, claims_b64, signature_b64 = fields["assertion"].split(".")
        header, claims = orjson.loads(_b64(header_b64)), orjson.loads(_b64(claims_b64))
    except (KeyError, ValueError):
        return _grant_error("Invalid JWT.")
    account = state.accounts.get(claims.get("iss", ""))
    if account is None or header.get("alg") != "RS256" or header.get("kid") != account.key_id:
        return _grant_error("Invalid JWT: unknown account or key.")
    try:
        account.public_key.verify(_b64(signature_b64), f"{header_b64}.{claims_b64}".encode(),
                                  padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return _grant_error("Invalid JWT Signature.")
    now = time.time()
    if claims.get("aud") not in (GOOGLE_TOKEN_URI, token_uri) or SCOPE not in str(claims.get("scope", "")).split():
        return _grant_error("Invalid JWT: aud or scope.")
    if not claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0) or claims["exp"] - claims["iat"] > 3600:
        return _grant_error("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.")
    state.grants[claims["iss"]] = state.grants.get(claims["iss"], 0) + 1
    token = f"ya29.mock-{claims['iss'].split('@')[0]}-{state.grants[claims['iss']]}"
    state.issued[token] = now + account.expires_in
    return web.json_response({"access_token": token, "expires_in": account.expires_in, "token_type": "Bearer"})


# ---------------------------------------------------------------- model calls


def _authorized(request: web.Request, state: TokenState) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme == "Bearer" and state.issued.get(token, 0) > time.time()


async def _model_call(request: web.Request, state: TokenState, recorder: Recorder, body: Any) -> web.StreamResponse:
    if not _authorized(request, state):
        return gemini_api.google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 "
                                            "access token, login cookie or other valid authentication credential.")
    route = _MODEL_PATH.match(request.path)
    if route is None:
        return gemini_api.google_error(404, f"The requested URL {request.path} was not found on this server.")
    if not isinstance(body, dict):
        return gemini_api.google_error(400, "Invalid JSON payload received.")
    _project, _location, publisher, model, method = route.groups()
    if publisher == "google" and method in ("predict", "countTokens"):
        return _embed(model, body) if method == "predict" else _count_gemini(body)
    if publisher == "anthropic" and model == "count-tokens":
        return _count_claude(method, body)
    if publisher == "google":
        return await _gemini(request, model, method, body, recorder)
    return await _claude(request, method, body)


async def _gemini(request: web.Request, model: str, method: str, body: dict[str, Any],
                  recorder: Recorder) -> web.StreamResponse:
    if method not in ("generateContent", "streamGenerateContent"):
        return gemini_api.google_error(404, f"Method {method!r} not found.")
    if "model" in body or not body.get("contents"):
        return gemini_api.google_error(400, "Invalid JSON payload: unknown name \"model\" or missing contents.")
    name = trigger(last_user_text(gemini_api._user_texts(body)))
    error = gemini_api._trigger_error(name)
    if error is not None:
        return error
    if method == "generateContent":
        return gemini_api._generate(model, body, name)
    return await gemini_api._stream(request, model, body, name, recorder)


async def _claude(request: web.Request, method: str, body: dict[str, Any]) -> web.StreamResponse:
    if method not in ("rawPredict", "streamRawPredict"):
        return gemini_api.google_error(404, f"Method {method!r} not found.")
    if body.get("anthropic_version") != "vertex-2023-10-16" or "model" in body:
        return anthropic_api._error(400, "invalid_request_error",
                                    "anthropic_version: vertex-2023-10-16 required; model: Extra inputs are not permitted")
    if (method == "streamRawPredict") != bool(body.get("stream")):
        return anthropic_api._error(400, "invalid_request_error", "stream must be true exactly on streamRawPredict")
    name = trigger(last_user_text(anthropic_api._user_texts(body)))
    if name == "429":
        return gemini_api.google_error(429, "Quota exceeded for aiplatform.googleapis.com/"
                                            "online_prediction_requests_per_base_model with base model: anthropic-claude.")
    if name == "400":
        return anthropic_api._error(400, "invalid_request_error", "messages: mock invalid request")
    blocks, stop = anthropic_api._answer(body, name)
    message = {"id": "msg_vrtx_0123456789", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
               "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": anthropic_api._usage()}
    if method == "rawPredict":
        return web.Response(body=orjson.dumps(message), content_type="application/json")
    return await anthropic_api._stream(request, message, False)


# ---------------------------------------------------------------- embeddings and token counting

COUNT_FIELDS = {"contents", "systemInstruction", "tools", "generationConfig", "instances", "model"}


def _embed(model: str, body: dict[str, Any]) -> web.Response:
    instances, params = body.get("instances"), body.get("parameters") or {}
    if set(body) - {"instances", "parameters"} or not isinstance(instances, list) or not instances:
        return gemini_api.google_error(400, "Invalid JSON payload: instances is required.")
    if model.startswith("gemini-embedding") and len(instances) > 1:
        return gemini_api.google_error(400, f"Model {model} supports only one instance per request.")
    size = params.get("outputDimensionality") or 8
    if not gemini_api.valid_dimensionality(size):
        return gemini_api.google_error(400, f"Invalid value at 'parameters.output_dimensionality' ({size!r}).")
    predictions = []
    for item in instances:
        text = item.get("content") if isinstance(item, dict) else None
        if not isinstance(text, str) or set(item) - {"content", "task_type", "title"}:
            return gemini_api.google_error(400, "Invalid instance: content must be a string.")
        digest = hashlib.sha256(text.encode()).digest()
        values = [round(digest[i % 32] / 255 * 2 - 1, 6) for i in range(size)]
        predictions.append({"embeddings": {"values": values,
                                           "statistics": {"truncated": False, "token_count": len(text.split())}}})
    chars = sum(len(i["content"]) for i in instances)
    return web.json_response({"predictions": predictions, "metadata": {"billableCharacterCount": chars}})


def _count_gemini(body: dict[str, Any]) -> web.Response:
    if set(body) - COUNT_FIELDS or not body.get("contents"):
        return gemini_api.google_error(400, "Invalid JSON payload received. Unknown name or missing contents.")
    chars = len(orjson.dumps([body.get("contents"), body.get("systemInstruction")]))
    return web.json_response({"totalTokens": PROMPT_TOKENS, "totalBillableCharacters": chars})


def _count_claude(method: str, body: dict[str, Any]) -> web.Response:
    if method != "rawPredict":
        return gemini_api.google_error(404, f"Method {method!r} not found.")
    if not str(body.get("model") or "").startswith("claude") or not isinstance(body.get("messages"), list):
        return anthropic_api._error(400, "invalid_request_error", "model: Field required (a Claude model id)")
    return web.json_response({"input_tokens": PROMPT_TOKENS})
