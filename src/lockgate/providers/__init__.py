"""Providers: where to send a dialect and how to authenticate.

A provider is small: its wire dialect, a default base URL, the URL of each
operation and the auth headers.  ``registry()`` maps the prefix written in
``litellm_params.model`` (``openai/gpt-4o``, ``anthropic/claude-...``) to the
provider object; there is no if/elif dispatch anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ..config import Deployment
    from ..dialects import EmbeddingsDialect, ProviderDialect


@dataclass(frozen=True)
class Provider:
    name: str
    dialect: ProviderDialect
    default_api_base: str | None = None
    # header carrying the key; "authorization" means "Bearer <key>"
    auth_header: str = "authorization"
    extra_headers: tuple[tuple[str, str], ...] = ()
    supports_embeddings: bool = True
    # client request headers forwarded to the provider as they are (e.g. anthropic-beta)
    client_headers: tuple[str, ...] = ()
    # answers in process (the mock provider): no HTTP call
    local: bool = False
    # the provider's stream is SSE in its dialect's own framing, so a same-dialect
    # client can receive the bytes as they are (False: events are re-framed as SSE)
    sse_native: bool = True
    # the provider signs each request (SigV4, OAuth tokens): ``sign`` is awaited
    signs: bool = False
    # the provider serves the OpenAI Responses API: /v1/responses passes through to it
    supports_responses: bool = False

    def base(self, dep: Deployment) -> str:
        base = dep.api_base or self.default_api_base
        if not base:
            from ..errors import BadRequest

            raise BadRequest(f"deployment of {dep.model_name!r} has no api_base")
        return base.rstrip("/")

    def chat_url(self, dep: Deployment, stream: bool) -> str:
        return self.base(dep) + "/chat/completions"

    def responses_url(self, dep: Deployment) -> str:
        return self.base(dep) + "/responses"

    def embeddings_url(self, dep: Deployment) -> str:
        return self.base(dep) + "/embeddings"

    def count_tokens_url(self, dep: Deployment) -> str | None:
        return None

    def count_tokens_body(self, body: dict[str, Any], dep: Deployment) -> dict[str, Any]:
        """The body sent to ``count_tokens_url`` from a Gemini API countTokens body (Vertex AI's differs)."""
        return body

    def _embeddings_dialect(self) -> EmbeddingsDialect:
        """Embeddings are translated only for providers whose dialect has an embeddings API (gemini,
        cohere_chat); OpenAI-dialect providers pass the request through."""
        return cast("EmbeddingsDialect", self.dialect)

    def completions_url(self, dep: Deployment) -> str | None:
        """Legacy text completions (``POST /completions``), served as they are by OpenAI-dialect
        providers; None: the front door translates them through the chat path."""
        return self.base(dep) + "/completions" if self.dialect.NAME == "openai" else None

    def headers(self, dep: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        headers.update(self.extra_headers)
        if dep.api_key:
            if self.auth_header == "authorization":
                headers["authorization"] = "Bearer " + dep.api_key
            else:
                headers[self.auth_header] = dep.api_key
        return headers

    def for_deployment(self, dep: Deployment) -> Provider:
        """The provider object serving this deployment: a prefix whose models speak
        different dialects (Bedrock, Vertex AI) returns the variant for ``dep.model``."""
        return self

    def body_from_headers(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """Client request headers this provider wants in the body (Bedrock: ``anthropic-beta``)."""
        return body

    def normalize_error(self, status: int, headers: dict[str, str], body: bytes) -> bytes:
        """The provider's error body in its dialect's shape (what passthrough returns as is)."""
        return body

    def embeddings_per_input(self, dep: Deployment) -> bool:
        """True when the provider embeds one input per call (Bedrock Titan)."""
        return False

    def prepare_body(self, body: dict[str, Any], dep: Deployment, stream: bool) -> dict[str, Any]:
        """Last provider-specific touch on a (translated or passthrough) body."""
        return body

    async def sign(self, dep: Deployment, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """Headers with request signing or fetched tokens added (only when ``signs``)."""
        return headers

    def stream_parser(self) -> Any:
        """Splits the provider's stream bytes into ``(event, data)`` pairs: ``feed(chunk)``, ``flush()``."""
        from ..transport.sse import SSEParser

        return SSEParser()

    def embeddings_request(self, req: dict[str, Any], dep: Deployment) -> dict[str, Any]:
        """The provider's embeddings body from an OpenAI embeddings request (not passthrough)."""
        return self._embeddings_dialect().embeddings_request_from_canonical(req, dep.model)

    def embeddings_response(self, body: Any, dep: Deployment, model: str) -> dict[str, Any]:
        """An OpenAI embeddings response from the provider's answer."""
        return self._embeddings_dialect().embeddings_response_to_canonical(body, model)


PROVIDER_MODULES = ("openai", "anthropic", "gemini", "mock", "azure", "cohere", "bedrock", "vertex")


def registry() -> dict[str, Provider]:
    """Provider prefix -> provider, gathered from each module's ``PROVIDERS`` (stateless providers) or
    ``providers()`` (providers that cache credentials: new objects on every call, so each gateway owns
    its caches and two gateways in one process never share a token or a signing key)."""
    from importlib import import_module

    reg: dict[str, Provider] = {}
    for name in PROVIDER_MODULES:
        module = import_module(f"{__name__}.{name}")
        reg.update(module.providers() if hasattr(module, "providers") else module.PROVIDERS)
    return reg
