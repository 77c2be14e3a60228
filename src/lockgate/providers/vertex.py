"""Google Vertex AI (``vertex_ai/<model>``), authenticated with OAuth2 access tokens.

* ``vertex_ai/gemini-*`` (and any non-Claude model): the Gemini dialect at
  ``{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent``
  (``:streamGenerateContent?alt=sse`` for streams).
* ``vertex_ai/claude-*``: the Anthropic dialect at ``.../publishers/anthropic/models/{model}:rawPredict``
  (``:streamRawPredict``), body without ``model`` and with ``anthropic_version:
  vertex-2023-10-16``; everything else (cache_control, thinking, unknown fields)
  passes through untouched for Anthropic clients.
* Embeddings (``:predict``) and Gemini's ``:countTokens`` bodies: ``vertex_ops``; Claude's exact
  token count: ``.../publishers/anthropic/models/count-tokens:rawPredict`` with ``model`` in the body.

``base`` is ``https://{location}-aiplatform.googleapis.com`` (``https://aiplatform.googleapis.com``
for location ``global``) unless ``api_base`` is set.  Project: ``vertex_project``, else the
credentials' ``project_id``, else ``VERTEXAI_PROJECT`` / ``GOOGLE_CLOUD_PROJECT``.
Location: ``vertex_location``, else ``VERTEXAI_LOCATION``, else ``us-central1``.
Credentials and token caching: see ``google_auth``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from ..dialects import anthropic_messages, gemini
from ..dialects.anthropic_stream import anthropic_error_type
from . import Provider, vertex_ops
from .gemini import GeminiProvider
from .google_auth import GoogleAuth

if TYPE_CHECKING:
    from ..config import Deployment

ANTHROPIC_VERSION = "vertex-2023-10-16"


def location(dep: Deployment) -> str:
    return str(dep.extra.get("vertex_location") or os.environ.get("VERTEXAI_LOCATION") or "us-central1")


def is_claude(model: str) -> bool:
    return model.startswith("claude")


@dataclass(frozen=True)
class VertexGemini(GeminiProvider):
    auth: GoogleAuth = field(default_factory=GoogleAuth, compare=False, repr=False)
    claude: Provider | None = field(default=None, compare=False, repr=False)

    def for_deployment(self, dep: Deployment) -> Provider:
        return self.claude if self.claude is not None and is_claude(dep.model) else self

    def _model_url(self, dep: Deployment, method: str) -> str:
        return model_url(self, dep, "google", method)

    def headers(self, dep: Deployment) -> dict[str, str]:
        return {"content-type": "application/json"}

    async def sign(self, dep: Deployment, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        return {**headers, "authorization": "Bearer " + await self.auth.token(dep)}

    def count_tokens_body(self, body: dict[str, Any], dep: Deployment) -> dict[str, Any]:
        return vertex_ops.count_tokens_body(body)

    def embeddings_url(self, dep: Deployment) -> str:
        return self._model_url(dep, "predict")

    def embeddings_per_input(self, dep: Deployment) -> bool:
        return vertex_ops.one_per_call(dep.model)

    def embeddings_request(self, req: dict[str, Any], dep: Deployment) -> dict[str, Any]:
        return vertex_ops.predict_request(req)

    def embeddings_response(self, body: Any, dep: Deployment, model: str) -> dict[str, Any]:
        return vertex_ops.predict_response(body, model)


@dataclass(frozen=True)
class VertexClaude(Provider):
    auth: GoogleAuth = field(default_factory=GoogleAuth, compare=False, repr=False)

    def chat_url(self, dep: Deployment, stream: bool) -> str:
        return model_url(self, dep, "anthropic", "streamRawPredict" if stream else "rawPredict")

    def count_tokens_url(self, dep: Deployment) -> str | None:
        # Claude's token counting on Vertex: the model named in the body, sent to the "count-tokens" model
        return model_url(self, dep, "anthropic", "rawPredict", model="count-tokens")

    def headers(self, dep: Deployment) -> dict[str, str]:
        return {"content-type": "application/json"}

    async def sign(self, dep: Deployment, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        return {**headers, "authorization": "Bearer " + await self.auth.token(dep)}

    def prepare_body(self, body: dict[str, Any], dep: Deployment, stream: bool) -> dict[str, Any]:
        out = {k: v for k, v in anthropic_messages.without_system_messages(body).items() if k != "model"}
        out.setdefault("anthropic_version", ANTHROPIC_VERSION)
        return out

    def normalize_error(self, status: int, headers: dict[str, str], body: bytes) -> bytes:
        """Claude's own errors are Anthropic-shaped; Vertex's (quota, auth) are Google's
        ``{"error": {"code", "message", "status"}}``: give Anthropic clients Anthropic's shape."""
        try:
            err = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(err, dict) or err.get("type") == "error" or not isinstance(err.get("error"), dict):
            return body
        message = str(err["error"].get("message") or f"upstream returned {status}")
        return orjson.dumps({"type": "error", "error": {"type": anthropic_error_type(status, None),
                                                          "message": message}})


def model_url(provider: Any, dep: Deployment, publisher: str, method: str, model: str | None = None) -> str:
    loc = location(dep)
    if dep.api_base:
        base = dep.api_base.rstrip("/")
    else:
        base = "https://aiplatform.googleapis.com" if loc == "global" else f"https://{loc}-aiplatform.googleapis.com"
    project = quote(provider.auth.project(dep), safe="")
    model = quote(model or dep.model, safe="@.-_")
    return f"{base}/v1/projects/{project}/locations/{quote(loc, safe='')}/publishers/{publisher}/models/{model}:{method}"


def providers() -> dict[str, Provider]:
    """New provider objects: each registry (each gateway) owns its credential cache."""
    auth = GoogleAuth()
    claude = VertexClaude(name="vertex_ai", dialect=anthropic_messages, supports_embeddings=False, signs=True,
                          client_headers=("anthropic-beta",), auth=auth)
    return {"vertex_ai": VertexGemini(name="vertex_ai", dialect=gemini, signs=True, auth=auth, claude=claude)}

