"""The guardrail types (``litellm_params.guardrail``): one registry.  Each type names its own config fields
(anything else warns at start) and builds a checker from the spec; modules are imported only when a
configured guardrail uses them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..transport.client import Upstream
    from .config import GuardrailSpec
    from .types import Verdict


class Checker(Protocol):
    def check(self, text: str) -> Verdict: ...


@dataclass(frozen=True)
class GuardType:
    fields: frozenset[str]
    build: Callable[[GuardrailSpec, Upstream | None], Checker]  # http: the gateway's client (adapters)
    reversible: bool = False  # masks with request-scoped tokens restored in the answer (presidio)
    output_only: bool = False  # checks answers only (output validation)
    whole: bool = False  # checks the whole text at once (all of a request's texts joined; a stream at its end)


def _presidio(spec: GuardrailSpec, http: Upstream | None) -> Checker:
    if spec.params.get("presidio_analyzer_api_base"):  # a Presidio server answers instead
        return _adapter(spec, http)
    from .pii import PiiDetector

    return PiiDetector(spec.params.get("pii_entities_config"), language=spec.params.get("presidio_language", "en"),
                       thresholds=spec.params.get("presidio_score_thresholds"))  # type: ignore[return-value]


def _content_filter(spec: GuardrailSpec, http: Upstream | None) -> Checker:
    from .content_filter import ContentFilter

    return ContentFilter(spec.params)


def _secrets(spec: GuardrailSpec, http: Upstream | None) -> Checker:
    from .secrets import SecretsGuard

    return SecretsGuard(spec.params)


def _injection(spec: GuardrailSpec, http: Upstream | None) -> Checker:
    from .injection import InjectionGuard

    return InjectionGuard(spec.params)


def _json_output(spec: GuardrailSpec, http: Upstream | None) -> Checker:
    from .output_schema import JsonSchemaCheck

    return JsonSchemaCheck(spec.params.get("json_schema"))  # the schema compiled once


class _InputSize:
    def __init__(self, spec: GuardrailSpec, http: Upstream | None = None) -> None:
        self.max_chars = spec.params.get("max_chars")
        self.max_tokens = spec.params.get("max_tokens")
        self.model = spec.params.get("model")  # tokens counted with this model's encoding (default: cl100k)

    def check(self, text: str) -> Verdict:
        from .output_schema import max_input_size

        return max_input_size(text, self.max_chars, self.max_tokens, model=self.model)


def _adapter(spec: GuardrailSpec, http: Upstream | None) -> Checker:
    from .adapters import build_adapter

    return build_adapter(spec, http)  # type: ignore[arg-type, return-value]


def _adapter_fields(kind: str) -> frozenset[str]:
    from .adapters import ADAPTER_FIELDS

    return ADAPTER_FIELDS[kind]


CONTENT_FILTER_FIELDS = frozenset({"blocked_words", "blocked_words_file", "patterns", "categories",
                                   "mask_replacement", "pattern_redaction_format", "keyword_redaction_tag"})
SECRETS_FIELDS = frozenset({"action", "detect_secrets_config", "mask_replacement", "plugins", "exclude_plugins"})
INJECTION_FIELDS = frozenset({"action", "phrases", "extra_phrases", "check_encoded", "severity_threshold",
                              "mask_replacement", "detect_invisible", "detect_obfuscated", "detect_encoded"})
TYPES: dict[str, GuardType] = {
    "presidio": GuardType(frozenset({"pii_entities_config", "output_parse_pii", "presidio_language",
                                     "presidio_score_thresholds", "presidio_analyzer_api_base",
                                     "presidio_anonymizer_api_base", "presidio_ad_hoc_recognizers",
                                     "timeout"}),
                          _presidio, reversible=True),
    "litellm_content_filter": GuardType(CONTENT_FILTER_FIELDS, _content_filter),
    "hide-secrets": GuardType(SECRETS_FIELDS, _secrets),
    "hide_secrets": GuardType(SECRETS_FIELDS, _secrets),
    "lockgate_prompt_injection": GuardType(INJECTION_FIELDS, _injection),
    "detect_prompt_injection": GuardType(INJECTION_FIELDS, _injection),
    "lockgate_json_output": GuardType(frozenset({"json_schema"}), _json_output, output_only=True,
                                      whole=True),
    "lockgate_max_input_size": GuardType(frozenset({"max_chars", "max_tokens", "model"}), _InputSize,
                                         whole=True),
    **{kind: GuardType(_adapter_fields(kind), _adapter)
       for kind in ("generic_guardrail_api", "openai_moderation", "lakera_v2", "bedrock")},
}
