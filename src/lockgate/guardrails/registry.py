"""The guardrail types (``litellm_params.guardrail``): one registry.  Each type names its own config fields
(anything else warns at start) and builds a checker from the spec; modules are imported only when a
configured guardrail uses them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import GuardrailSpec
    from .types import Verdict


class Checker(Protocol):
    def check(self, text: str) -> Verdict: ...


@dataclass(frozen=True)
class GuardType:
    fields: frozenset[str]
    build: Callable[[GuardrailSpec], Checker]
    reversible: bool = False  # masks with request-scoped tokens restored in the answer (presidio)
    output_only: bool = False  # checks answers only (output validation)


def _presidio(spec: GuardrailSpec) -> Checker:
    from .pii import PiiDetector

    return PiiDetector(spec.params.get("pii_entities_config"), language=spec.params.get("presidio_language", "en"),
                       thresholds=spec.params.get("presidio_score_thresholds"))  # type: ignore[return-value]


def _content_filter(spec: GuardrailSpec) -> Checker:
    from .content_filter import ContentFilter

    return ContentFilter(spec.params)


def _secrets(spec: GuardrailSpec) -> Checker:
    from .secrets import SecretsGuard

    return SecretsGuard(spec.params)


def _injection(spec: GuardrailSpec) -> Checker:
    from .injection import InjectionGuard

    return InjectionGuard(spec.params)


class _JsonOutput:
    def __init__(self, spec: GuardrailSpec) -> None:
        self.schema = spec.params.get("json_schema")

    def check(self, text: str) -> Verdict:
        from .output_schema import validate_json

        return validate_json(text, self.schema)


class _InputSize:
    def __init__(self, spec: GuardrailSpec) -> None:
        self.max_chars = spec.params.get("max_chars")
        self.max_tokens = spec.params.get("max_tokens")

    def check(self, text: str) -> Verdict:
        from .output_schema import max_input_size

        return max_input_size(text, self.max_chars, self.max_tokens)


CONTENT_FILTER_FIELDS = frozenset({"blocked_words", "blocked_words_file", "patterns", "categories",
                                   "mask_replacement", "severity_threshold"})
TYPES: dict[str, GuardType] = {
    "presidio": GuardType(frozenset({"pii_entities_config", "output_parse_pii", "presidio_language",
                                     "presidio_score_thresholds", "presidio_analyzer_api_base",
                                     "presidio_anonymizer_api_base", "presidio_ad_hoc_recognizers"}),
                          _presidio, reversible=True),
    "litellm_content_filter": GuardType(CONTENT_FILTER_FIELDS, _content_filter),
    "hide-secrets": GuardType(frozenset({"action", "detect_secrets_config", "mask_replacement"}), _secrets),
    "hide_secrets": GuardType(frozenset({"action", "detect_secrets_config", "mask_replacement"}), _secrets),
    "lockgate_prompt_injection": GuardType(frozenset({"action", "phrases", "check_encoded", "categories"}),
                                           _injection),
    "detect_prompt_injection": GuardType(frozenset({"action", "phrases", "check_encoded"}), _injection),
    "lockgate_json_output": GuardType(frozenset({"json_schema"}), _JsonOutput, output_only=True),
    "lockgate_max_input_size": GuardType(frozenset({"max_chars", "max_tokens"}), _InputSize),
}
