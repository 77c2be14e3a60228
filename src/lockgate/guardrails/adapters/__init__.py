"""External guardrail services (LiteLLM's integrations) as async checkers: one module per service.

``build_adapter(spec, http)`` builds the checker of a configured guardrail by its type; its
``acheck(text, source="input" | "output") -> Verdict`` makes one call to the service.  A timeout
(``litellm_params.timeout``, default 5 s), a connection error, a non-2xx or unreadable answer raise
``AdapterUnavailable`` (the engine answers 503 unless ``unreachable_fallback: fail_open``).  A bad or
missing field raises ``GuardrailConfigError`` when the adapter is built (at start).

| type | module | service |
|---|---|---|
| ``generic_guardrail_api`` | ``generic`` | LiteLLM's Generic Guardrail API |
| ``openai_moderation`` | ``openai_moderation`` | OpenAI ``/v1/moderations`` |
| ``lakera_v2`` | ``lakera`` | Lakera Guard ``/v2/guard`` |
| ``bedrock`` | ``bedrock`` | Bedrock ApplyGuardrail (SigV4) |
| ``presidio`` with ``presidio_analyzer_api_base`` | ``presidio_http`` | a Presidio analyzer ``/analyze`` |

No adapter logs or raises with the text, a credential or the service's answer body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import GuardrailConfigError
from . import bedrock, generic, lakera, openai_moderation, presidio_http
from .base import AdapterUnavailable, AsyncChecker

if TYPE_CHECKING:
    from ...transport.client import Upstream
    from ..config import GuardrailSpec

__all__ = ["ADAPTER_FIELDS", "AdapterUnavailable", "AsyncChecker", "build_adapter", "is_adapter"]

BUILDERS: dict[str, Callable[[GuardrailSpec, Upstream], AsyncChecker]] = {
    "generic_guardrail_api": generic.GenericGuardrailApi,
    "openai_moderation": openai_moderation.OpenAIModeration,
    "lakera_v2": lakera.LakeraGuard,
    "bedrock": bedrock.BedrockGuardrail,
    "presidio": presidio_http.PresidioAnalyzer,
}
# type -> the type's own litellm_params fields the adapter reads (the common ones, api_key and api_base
# included, are config.COMMON)
ADAPTER_FIELDS: dict[str, frozenset[str]] = {
    "generic_guardrail_api": generic.FIELDS,
    "openai_moderation": openai_moderation.FIELDS,
    "lakera_v2": lakera.FIELDS,
    "bedrock": bedrock.FIELDS,
    "presidio": presidio_http.FIELDS,
}


def is_adapter(spec: GuardrailSpec) -> bool:
    """Whether the guardrail is answered by an external service (a ``presidio`` one only with
    ``presidio_analyzer_api_base``; without it the in-process recognizers answer)."""
    if spec.type == "presidio":
        return bool(spec.params.get("presidio_analyzer_api_base"))
    return spec.type in BUILDERS


def build_adapter(spec: GuardrailSpec, http: Upstream) -> AsyncChecker:
    build = BUILDERS.get(spec.type)
    if build is None:
        raise GuardrailConfigError(f"guardrail {spec.name!r}: {spec.type!r} is not an external guardrail type")
    return build(spec, http)
