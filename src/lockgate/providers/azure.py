"""Azure OpenAI (``azure/<deployment>``) and Azure AI model inference (``azure_ai/<model>``).

Both speak the OpenAI chat dialect.  Azure OpenAI puts the deployment name and the API version
in the URL (``{api_base}/openai/deployments/{deployment}/chat/completions?api-version=...``) and
takes the key in the ``api-key`` header, or a Microsoft Entra ID token as ``Authorization:
Bearer`` when the deployment sets ``azure_ad_token``.  Azure AI model inference (Foundry
serverless and managed endpoints) serves ``{api_base}/chat/completions`` and ``/embeddings``,
with ``?api-version=`` only when one is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..dialects import openai_chat
from . import Provider

if TYPE_CHECKING:
    from ..config import Deployment

# the latest GA version of the Azure OpenAI data-plane inference API
DEFAULT_API_VERSION = "2024-10-21"


def _auth(dep: Deployment, headers: dict[str, str]) -> dict[str, str]:
    token = dep.azure_ad_token
    if token:
        headers.pop("api-key", None)
        headers["authorization"] = "Bearer " + token
    return headers


@dataclass(frozen=True)
class AzureOpenAIProvider(Provider):
    def base(self, dep: Deployment) -> str:
        base = super().base(dep)
        return base[: -len("/openai")] if base.endswith("/openai") else base

    def _url(self, dep: Deployment, operation: str) -> str:
        version = quote(dep.api_version or DEFAULT_API_VERSION, safe="")
        deployment = quote(dep.model, safe="")
        return f"{self.base(dep)}/openai/deployments/{deployment}/{operation}?api-version={version}"

    def chat_url(self, dep: Deployment, stream: bool) -> str:
        return self._url(dep, "chat/completions")

    def embeddings_url(self, dep: Deployment) -> str:
        return self._url(dep, "embeddings")

    def completions_url(self, dep: Deployment) -> str | None:
        return self._url(dep, "completions")

    def headers(self, dep: Deployment) -> dict[str, str]:
        return _auth(dep, super().headers(dep))


@dataclass(frozen=True)
class AzureAIProvider(Provider):
    def _url(self, dep: Deployment, operation: str) -> str:
        url = f"{self.base(dep)}/{operation}"
        return f"{url}?api-version={quote(dep.api_version, safe='')}" if dep.api_version else url

    def chat_url(self, dep: Deployment, stream: bool) -> str:
        return self._url(dep, "chat/completions")

    def embeddings_url(self, dep: Deployment) -> str:
        return self._url(dep, "embeddings")

    def completions_url(self, dep: Deployment) -> str | None:
        return None  # the model inference API has no legacy completions: translated through chat

    def headers(self, dep: Deployment) -> dict[str, str]:
        return _auth(dep, super().headers(dep))


PROVIDERS: dict[str, Provider] = {
    "azure": AzureOpenAIProvider(name="azure", dialect=openai_chat, auth_header="api-key"),
    "azure_ai": AzureAIProvider(name="azure_ai", dialect=openai_chat, auth_header="api-key"),
}
