"""Anthropic: the Messages API, authenticated with ``x-api-key``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..dialects import anthropic_messages
from . import Provider

if TYPE_CHECKING:
    from ..config import Deployment

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    def base(self, dep: Deployment) -> str:
        # accept both "https://api.anthropic.com" and ".../v1" as the configured api_base
        base = super().base(dep)
        return base[:-3] if base.endswith("/v1") else base

    def chat_url(self, dep: Deployment, stream: bool) -> str:
        return self.base(dep) + "/v1/messages"

    def count_tokens_url(self, dep: Deployment) -> str | None:
        return self.base(dep) + "/v1/messages/count_tokens"


PROVIDERS = {
    "anthropic": AnthropicProvider(
        name="anthropic",
        dialect=anthropic_messages,
        default_api_base="https://api.anthropic.com",
        auth_header="x-api-key",
        extra_headers=(("anthropic-version", ANTHROPIC_VERSION),),
        supports_embeddings=False,
        client_headers=("anthropic-beta",),
    )
}
