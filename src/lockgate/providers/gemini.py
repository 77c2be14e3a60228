"""Google AI Studio's Gemini API (``gemini/<model>``), key in ``x-goog-api-key``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..dialects import gemini as dialect
from . import Provider

if TYPE_CHECKING:
    from ..config import Deployment

_VERSIONS = ("/v1beta", "/v1", "/v1alpha")


@dataclass(frozen=True)
class GeminiProvider(Provider):
    def _model_url(self, dep: Deployment, method: str) -> str:
        base = self.base(dep)
        if not base.endswith(_VERSIONS):
            base += "/v1beta"
        model = dep.model.removeprefix("models/")
        return f"{base}/models/{model}:{method}"

    def chat_url(self, dep: Deployment, stream: bool) -> str:
        if stream:
            return self._model_url(dep, "streamGenerateContent") + "?alt=sse"
        return self._model_url(dep, "generateContent")

    def embeddings_url(self, dep: Deployment) -> str:
        return self._model_url(dep, "batchEmbedContents")

    def count_tokens_url(self, dep: Deployment) -> str | None:
        return self._model_url(dep, "countTokens")

    def prepare_body(self, body: dict[str, Any], dep: Deployment, stream: bool) -> dict[str, Any]:
        # The model and the stream flag travel in the URL; a passthrough body may
        # still hold a rewritten "model" (which Gemini would check) or "stream".
        if "model" in body or "stream" in body:
            body = {k: v for k, v in body.items() if k not in ("model", "stream")}
        return body


PROVIDERS = {
    "gemini": GeminiProvider(
        name="gemini",
        dialect=dialect,
        default_api_base="https://generativelanguage.googleapis.com",
        auth_header="x-goog-api-key",
    )
}
