"""OpenAI and the OpenAI-compatible family: the same dialect, a base URL from a table.

Adding an OpenAI-compatible provider is one line in ``COMPATIBLE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..dialects import openai_chat
from . import Provider

if TYPE_CHECKING:
    from ..config import Deployment

# provider prefix -> default base URL (None: the deployment must set api_base)
COMPATIBLE: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "together_ai": "https://api.together.xyz/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "xai": "https://api.x.ai/v1",
    "perplexity": "https://api.perplexity.ai",
    "cerebras": "https://api.cerebras.ai/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "nvidia_nim": "https://integrate.api.nvidia.com/v1",
    "sambanova": "https://api.sambanova.ai/v1",
    "hosted_vllm": None,
    "openai_like": None,
    "lm_studio": "http://localhost:1234/v1",
}


@dataclass(frozen=True)
class OllamaProvider(Provider):
    """Ollama through its OpenAI-compatible API (``/v1``), as LiteLLM users write it."""

    def base(self, dep: Deployment) -> str:
        base = super().base(dep)
        return base if base.endswith("/v1") else base + "/v1"


PROVIDERS: dict[str, Provider] = {
    name: Provider(name=name, dialect=openai_chat, default_api_base=base, supports_responses=name == "openai")
    for name, base in COMPATIBLE.items()
}
for _name in ("ollama", "ollama_chat"):
    PROVIDERS[_name] = OllamaProvider(name=_name, dialect=openai_chat, default_api_base="http://localhost:11434")
