"""The config's top-level ``guardrails:`` list (LiteLLM's schema) as typed settings.

```yaml
guardrails:
  - guardrail_name: pii-mask
    litellm_params:
      guardrail: presidio          # the type: one of TYPES (registry.py)
      mode: pre_call               # pre_call | during_call | post_call | logging_only, a list, or
                                   # {tags: {<tag>: <mode>}, default: <mode>}
      default_on: true
      ...                          # the type's own fields
    guardrail_info: {...}          # shown by GET /guardrails/list
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("pre_call", "during_call", "post_call", "logging_only")
# LiteLLM's Guardrail litellm_params fields common to every type (type-specific ones are the type's business)
COMMON = {"guardrail", "mode", "default_on", "api_key", "api_base", "unreachable_fallback", "description",
          "skip_system_message", "hold_back_chars"}


class GuardrailConfigError(ValueError):
    pass


@dataclass
class GuardrailSpec:
    name: str
    type: str
    modes: frozenset[str]  # the default modes
    tag_modes: dict[str, frozenset[str]] = field(default_factory=dict)  # request tag -> modes
    default_on: bool = False
    fail_open: bool = False  # unreachable_fallback: fail_open (default: fail closed, 503)
    hold_back_chars: int = 64  # streamed output held back for the check (post_call)
    params: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole litellm_params
    info: dict[str, Any] = field(default_factory=dict)

    def modes_for(self, tags: list[str] | None) -> frozenset[str]:
        for tag in tags or ():
            if tag in self.tag_modes:
                return self.tag_modes[tag]
        return self.modes


def _modes(value: Any, where: str) -> frozenset[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise GuardrailConfigError(f"{where}: mode must be one of {', '.join(MODES)} or a list of them")
    for name in names:
        if name not in MODES:
            raise GuardrailConfigError(f"{where}: unknown mode {name!r} (one of {', '.join(MODES)})")
    return frozenset(names)


def parse(raw: Any, known_types: frozenset[str], warnings: list[str],
          type_fields: dict[str, frozenset[str]]) -> list[GuardrailSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise GuardrailConfigError("guardrails: must be a list")
    specs: list[GuardrailSpec] = []
    for index, entry in enumerate(raw):
        where = f"guardrails[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("guardrail_name"), str):
            raise GuardrailConfigError(f"{where}: needs guardrail_name and litellm_params")
        name = entry["guardrail_name"]
        where = f"guardrails[{index}] ({name})"
        params = entry.get("litellm_params")
        if not isinstance(params, dict) or not isinstance(params.get("guardrail"), str):
            raise GuardrailConfigError(f"{where}: litellm_params.guardrail (the type) is required")
        kind = params["guardrail"]
        if kind not in known_types:
            raise GuardrailConfigError(f"{where}: unknown guardrail type {kind!r} (supported: "
                                       f"{', '.join(sorted(known_types))})")
        for key in params:
            if key not in COMMON and key not in type_fields.get(kind, frozenset()):
                warnings.append(f"{where}: litellm_params.{key} is not used by the {kind} guardrail (ignored)")
        mode = params.get("mode", "pre_call")
        tag_modes: dict[str, frozenset[str]] = {}
        if isinstance(mode, dict):
            tags = mode.get("tags") or {}
            if not isinstance(tags, dict):
                raise GuardrailConfigError(f"{where}: mode.tags must map tags to modes")
            tag_modes = {str(t): _modes(m, where) for t, m in tags.items()}
            modes = _modes(mode.get("default", "pre_call"), where)
        else:
            modes = _modes(mode, where)
        fallback = params.get("unreachable_fallback", "fail_closed")
        if fallback not in ("fail_open", "fail_closed"):
            raise GuardrailConfigError(f"{where}: unreachable_fallback is fail_open or fail_closed")
        if any(s.name == name for s in specs):
            raise GuardrailConfigError(f"{where}: guardrail_name {name!r} is used twice")
        specs.append(GuardrailSpec(
            name=name, type=kind, modes=modes, tag_modes=tag_modes, default_on=bool(params.get("default_on")),
            fail_open=fallback == "fail_open", hold_back_chars=int(params.get("hold_back_chars", 64)),
            params=dict(params), info=dict(entry.get("guardrail_info") or {}),
        ))
    return specs
