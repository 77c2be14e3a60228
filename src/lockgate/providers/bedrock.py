"""Amazon Bedrock (``bedrock/<modelId>``), signed with SigV4.

* ``bedrock/<modelId>`` and ``bedrock/converse/<modelId>``: the Converse API
  (``/model/{id}/converse``, ``/converse-stream``) in the ``bedrock_converse`` dialect.
* Anthropic models (``anthropic.``, profiles ``us.anthropic.``/``global.anthropic.``, or
  ``bedrock/invoke/<id>``) unless written ``bedrock/converse/...``: InvokeModel
  (``/model/{id}/invoke``, ``/invoke-with-response-stream``) in the Anthropic
  dialect, so Anthropic clients pass through with only what Bedrock requires
  changed: no ``model``/``stream`` in the body, ``anthropic_version:
  bedrock-2023-05-31``, ``anthropic-beta`` header values in ``anthropic_beta``.
* Embeddings: Titan text (one InvokeModel per input) and Cohere embed.

Streams are AWS event-stream framed; InvokeModel's ``chunk`` events carry one
base64 Anthropic event each, decoded here into ``(event type, JSON)`` pairs.
Endpoint: ``https://bedrock-runtime.{region}.amazonaws.com`` unless ``api_base``
or ``aws_bedrock_runtime_endpoint`` is set.  Credentials: see ``aws_auth``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from ..dialects import anthropic_messages, bedrock_converse
from ..dialects.anthropic_stream import anthropic_error_type
from ..errors import BadRequest
from ..transport.eventstream import EventStreamParser, error_name
from . import Provider
from .aws_auth import AwsAuth

if TYPE_CHECKING:
    from ..config import Deployment

ANTHROPIC_VERSION = "bedrock-2023-05-31"


def split_model(model: str) -> tuple[str, str]:
    """``converse/<id>`` | ``invoke/<id>`` | ``<id>`` -> (api, model id)."""
    api, _, rest = model.partition("/")
    if api in ("converse", "invoke") and rest:
        if api == "invoke" and not bedrock_converse.is_anthropic(rest):
            return "converse", rest  # InvokeModel chat is served for Anthropic models only
        return api, rest
    return ("invoke" if bedrock_converse.is_anthropic(model) else "converse"), model


@dataclass(frozen=True)
class BedrockProvider(Provider):
    auth: AwsAuth = field(default_factory=lambda: AwsAuth("bedrock"), compare=False, repr=False)
    invoke: BedrockProvider | None = field(default=None, compare=False, repr=False)

    def for_deployment(self, dep: Deployment) -> Provider:
        if self.invoke is not None and split_model(dep.model)[0] == "invoke":
            return self.invoke
        return self

    def base(self, dep: Deployment) -> str:
        base = dep.api_base or dep.extra.get("aws_bedrock_runtime_endpoint")
        if base:
            return base.rstrip("/")
        return f"https://bedrock-runtime.{self.auth.region(dep)}.amazonaws.com"

    def _model_url(self, dep: Deployment, operation: str) -> str:
        return f"{self.base(dep)}/model/{quote(split_model(dep.model)[1], safe='')}/{operation}"

    def chat_url(self, dep: Deployment, stream: bool) -> str:
        if self.dialect is anthropic_messages:
            return self._model_url(dep, "invoke-with-response-stream" if stream else "invoke")
        return self._model_url(dep, "converse-stream" if stream else "converse")

    def embeddings_url(self, dep: Deployment) -> str:
        return self._model_url(dep, "invoke")

    def headers(self, dep: Deployment) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/json"}

    async def sign(self, dep: Deployment, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        return await self.auth.sign(dep, url, headers, body)

    def prepare_body(self, body: dict[str, Any], dep: Deployment, stream: bool) -> dict[str, Any]:
        if self.dialect is not anthropic_messages:
            return body
        out = {k: v for k, v in anthropic_messages.without_system_messages(body).items()
               if k not in ("model", "stream")}
        out.setdefault("anthropic_version", ANTHROPIC_VERSION)
        return out

    def body_from_headers(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        betas = headers.get("anthropic-beta") if self.dialect is anthropic_messages else None
        if not betas:
            return body
        listed = list(body.get("anthropic_beta") or [])
        listed += [b.strip() for b in betas.split(",") if b.strip() and b.strip() not in listed]
        return {**body, "anthropic_beta": listed}

    def stream_parser(self) -> Any:
        return InvokeStreamParser() if self.dialect is anthropic_messages else EventStreamParser()

    def normalize_error(self, status: int, headers: dict[str, str], body: bytes) -> bytes:
        """Bedrock errors are ``{"message"}`` plus ``x-amzn-ErrorType``: fold the type in
        (``__type``), and give Anthropic clients Anthropic's error shape."""
        try:
            err = orjson.loads(body)
        except orjson.JSONDecodeError:
            err = None
        err = err if isinstance(err, dict) else {}
        etype = next((v for k, v in headers.items() if k.lower() == "x-amzn-errortype"), None)
        name = error_name(etype or str(err.get("__type") or ""))
        message = str(err.get("message") or err.get("Message") or f"upstream returned {status}")
        if self.dialect is anthropic_messages:
            text = f"{message} ({name})" if name else message
            return orjson.dumps({"type": "error", "error": {"type": anthropic_error_type(status, None),
                                                              "message": text}})
        return orjson.dumps({"message": message, "__type": name})

    # ---------------------------------------------------------------- embeddings

    def embeddings_per_input(self, dep: Deployment) -> bool:
        return _embed_family(dep) == "titan"

    def embeddings_request(self, req: dict[str, Any], dep: Deployment) -> dict[str, Any]:
        family = _embed_family(dep)
        texts = _texts(req.get("input"))
        if family == "titan":
            body: dict[str, Any] = {"inputText": texts[0]}
            if req.get("dimensions"):
                body["dimensions"] = req["dimensions"]
            return body
        if family == "cohere":
            return {"texts": texts, "input_type": req.get("input_type") or "search_document"}
        raise BadRequest(f"Bedrock model {split_model(dep.model)[1]!r} is not an embedding model Lockgate "
                         "knows (amazon.titan-embed-*, cohere.embed-*)", param="model")

    def embeddings_response(self, body: Any, dep: Deployment, model: str) -> dict[str, Any]:
        if _embed_family(dep) == "titan":
            vectors = [reply.get("embedding") or [] for reply in body]
            tokens = sum(reply.get("inputTextTokenCount") or 0 for reply in body)
        else:
            vectors = body.get("embeddings") or []
            if isinstance(vectors, dict):  # embedding_types given: {"float": [...]}
                vectors = vectors.get("float") or []
            tokens = 0  # Cohere on Bedrock reports no token count in the body: zeros, not a guess
        return {"object": "list", "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]}


def _embed_family(dep: Deployment) -> str | None:
    model = split_model(dep.model)[1]
    if "titan-embed" in model:
        return "titan"
    if model.startswith("cohere.embed") or ".cohere.embed" in model:
        return "cohere"
    return None


def _texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("Bedrock embeddings take a string or a list of strings (no token arrays)", param="input")
    return texts


class InvokeStreamParser:
    """InvokeModelWithResponseStream: event-stream ``chunk`` events, each
    ``{"bytes": base64(<one Anthropic stream event JSON>)}`` -> ``(event type, JSON bytes)``."""

    __slots__ = ("_frames",)

    def __init__(self) -> None:
        self._frames = EventStreamParser()

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        out: list[tuple[str | None, bytes]] = []
        for event, payload in self._frames.feed(chunk):
            if event != "chunk":
                continue
            data = base64.b64decode(orjson.loads(payload).get("bytes") or b"")
            out.append((orjson.loads(data).get("type"), data))
        return out

    def flush(self) -> list[tuple[str | None, bytes]]:
        return self._frames.flush()  # type: ignore[return-value]


def providers() -> dict[str, Provider]:
    """New provider objects: each registry (each gateway) owns its credential cache."""
    auth = AwsAuth("bedrock")
    invoke = BedrockProvider(name="bedrock", dialect=anthropic_messages, supports_embeddings=False,
                             sse_native=False, signs=True, auth=auth)
    converse = BedrockProvider(name="bedrock", dialect=bedrock_converse, sse_native=False, signs=True,
                               auth=auth, invoke=invoke)
    return {"bedrock": converse}

