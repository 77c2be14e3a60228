"""Output validation and input size: ``validate_json`` (the answer must be JSON, valid against a JSON Schema
when one is given) and ``max_input_size`` (characters and tokens).

``validate_json(text, schema) -> Verdict``: "pass", or "block" with a detection ``invalid_json`` (at the
parse error's offset) or ``schema_violation`` (the whole text) and a message naming the failing place
(``$.items[2].price``) and rule from the schema, never the offending value.  An invalid schema raises
ValueError; ``JsonSchemaCheck(schema)`` checks it and builds the validator once (``validate_json`` does
both on every call).  The draft is the schema's ``$schema`` or the latest jsonschema knows.
Formats are not asserted (jsonschema's default).

``max_input_size(text, max_chars, max_tokens, model=None) -> Verdict``: "block" with ``input_too_large``
when the text has more characters than ``max_chars`` or more tokens than ``max_tokens``.  Tokens are counted
with ``lockgate.tokens.count_text`` (tiktoken with the bundled encodings: ``o200k_base`` for the gpt-4o /
gpt-5 / o-series, ``cl100k_base`` otherwise, an estimate for non-OpenAI models); a text of at most
``max_tokens`` UTF-8 bytes is never counted (a token is at least one byte).

Cost (1 KB answer, measured on the 2-core CI machine; ``tests/test_guardrail_checks.py`` prints it): parsing
alone ~0.015 ms; jsonschema validation ~13 µs per JSON node: ~0.07 ms for a small object, ~1.3 ms for 1 KB
holding 90 small objects; ``validate_json`` adds ~2 ms per call for checking and compiling the schema, which
``JsonSchemaCheck`` does once.  ``max_input_size`` ~0.05 ms per KB counting tokens (the first count loads an
encoding: tens of ms, once); nothing when the text's byte length is within ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from jsonschema import exceptions as schema_errors
from jsonschema import validators

from .types import Detection, Verdict

_MAX_MESSAGE_ERRORS = 3


class JsonSchemaCheck:
    """``check(text)``: the text must be JSON and, when a schema was given, valid against it."""

    def __init__(self, schema: Mapping[str, Any] | bool | None = None) -> None:
        self.schema = schema
        self._validator: Any = None
        if schema is not None:
            if not isinstance(schema, Mapping | bool):
                raise ValueError(f"json_schema must be an object, not {type(schema).__name__}")
            cls = validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except schema_errors.SchemaError as exc:
                raise ValueError(f"json_schema is not a valid JSON Schema: {exc.message}") from None
            self._validator = cls(schema)

    def check(self, text: str) -> Verdict:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            pos = min(max(exc.pos, 0), len(text))
            start = min(pos, max(len(text) - 1, 0))  # at the end of the text: its last character
            detection = Detection("invalid_json", start, min(start + 1, len(text)))
            return Verdict("block", text, [detection], f"answer is not valid JSON: {exc.msg} at offset {pos}")
        if self._validator is None:
            return Verdict("pass", text)
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if not errors:
            return Verdict("pass", text)
        problems = [_describe(e) for e in errors[:_MAX_MESSAGE_ERRORS]]
        more = f" (+{len(errors) - _MAX_MESSAGE_ERRORS} more)" if len(errors) > _MAX_MESSAGE_ERRORS else ""
        detection = Detection("schema_violation", 0, len(text))
        return Verdict("block", text, [detection], "answer does not match the JSON schema: " + "; ".join(problems) + more)


def _path(error: schema_errors.ValidationError) -> str:
    out = "$"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _describe(error: schema_errors.ValidationError) -> str:
    """The failing place and the schema's rule; jsonschema's own message quotes the value, so it is not used
    (except for rules whose message names only schema parts)."""
    rule = str(error.validator)
    if rule in ("required", "dependentRequired", "additionalProperties", "unevaluatedProperties"):
        return f"{_path(error)}: {error.message}" if rule != "additionalProperties" else f"{_path(error)}: {_names(error)}"
    expected = repr(error.validator_value)
    if len(expected) > 60:
        expected = expected[:57] + "..."
    return f"{_path(error)}: fails {rule} {expected}"


def _names(error: schema_errors.ValidationError) -> str:
    """additionalProperties: the unexpected property names (keys, not values)."""
    instance = error.instance
    if isinstance(instance, dict) and isinstance(error.schema, Mapping):
        allowed = set(error.schema.get("properties") or {})
        extra = sorted(str(k) for k in instance if k not in allowed)
        if extra:
            return "unexpected propert" + ("y " if len(extra) == 1 else "ies ") + ", ".join(repr(k) for k in extra[:5])
    return "fails additionalProperties"


def validate_json(text: str, schema: Mapping[str, Any] | bool | None) -> Verdict:
    """The answer must be JSON (and valid against ``schema`` when given).  The schema is checked and compiled
    on every call; a caller with a fixed schema builds ``JsonSchemaCheck(schema)`` once instead."""
    return JsonSchemaCheck(schema).check(text)


def max_input_size(text: str, max_chars: int | None, max_tokens: int | None, model: str | None = None) -> Verdict:
    """Block a text over ``max_chars`` characters or ``max_tokens`` tokens (None: no limit)."""
    if max_chars is not None and len(text) > max_chars:
        detection = Detection("input_too_large", max_chars, len(text))
        return Verdict("block", text, [detection], f"input is {len(text)} characters, over the limit of {max_chars}")
    if max_tokens is not None and len(text.encode("utf-8")) > max_tokens:
        from ..tokens import count_text

        tokens = count_text(text, model or "")
        if tokens > max_tokens:
            detection = Detection("input_too_large", 0, len(text))
            return Verdict("block", text, [detection], f"input is {tokens} tokens, over the limit of {max_tokens}")
    return Verdict("pass", text)
