"""``GET /guardrails/list`` and ``POST /guardrails/apply_guardrail`` (LiteLLM's shapes)."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from .auth import Caller
from .call import Call, Route
from .schemas import Body


class ApplyGuardrail(Body):
    guardrail_name: str
    text: str
    language: str | None = None


def _stage(call: Call) -> Any:
    return getattr(call.gateway, "guardrails", None)


async def guardrails_list(call: Call, caller: Caller) -> dict[str, Any]:
    """The configured guardrails: name, type, modes, default_on, guardrail_info (never credentials)."""
    stage = _stage(call)
    out = []
    for spec in (stage.specs.values() if stage is not None else ()):
        mode: Any = sorted(spec.modes)
        out.append({"guardrail_name": spec.name, "guardrail_info": spec.info,
                    "litellm_params": {"guardrail": spec.type, "mode": mode[0] if len(mode) == 1 else mode,
                                       "default_on": spec.default_on}})
    return {"guardrails": out}


async def apply_guardrail(call: Call, caller: Caller, body: ApplyGuardrail) -> dict[str, Any]:
    """Run one guardrail on a text: ``{response_text}`` (masked where it masks); a block is a 400."""
    stage = _stage(call)
    if stage is None or body.guardrail_name not in stage.specs:
        raise BadRequest(f"unknown guardrail {body.guardrail_name!r} (GET /guardrails/list)", param="guardrail_name")
    from ..guardrails.run import GuardrailBlocked

    spec = stage.specs[body.guardrail_name]
    checker = stage.checkers[spec.name]
    if spec.name in stage.reversible:
        from ..guardrails.pii import MaskSession

        verdict = MaskSession(checker).mask(body.text)
    else:
        verdict = checker.check(body.text)
    if verdict.action == "block":
        kinds = ", ".join(sorted({d.type for d in verdict.detections})) or "refused"
        raise GuardrailBlocked(spec.name, verdict.message or f"found {kinds}")
    return {"response_text": verdict.text,
            "detections": [{"type": d.type, "start": d.start, "end": d.end} for d in verdict.detections]}


ROUTES = (
    Route("GET", "/guardrails/list", guardrails_list, "guardrails"),
    Route("POST", "/guardrails/apply_guardrail", apply_guardrail, "guardrails", body=ApplyGuardrail),
)
