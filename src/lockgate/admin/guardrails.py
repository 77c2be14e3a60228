"""``GET /guardrails/list`` and ``POST /guardrails/apply_guardrail`` (LiteLLM's shapes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ..errors import BadRequest
from .auth import Caller, authenticate
from .schemas import Body

router = APIRouter()


class ApplyGuardrail(Body):
    guardrail_name: str
    text: str
    language: str | None = None


def _stage(request: Request) -> Any:
    return getattr(request.app.state.gateway, "guardrails", None)


@router.get("/guardrails/list", tags=["guardrails"])
async def guardrails_list(request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    """The configured guardrails: name, type, modes, default_on, guardrail_info (never credentials)."""
    stage = _stage(request)
    out = []
    for spec in (stage.specs.values() if stage is not None else ()):
        mode: Any = sorted(spec.modes)
        out.append({"guardrail_name": spec.name, "guardrail_info": spec.info,
                    "litellm_params": {"guardrail": spec.type, "mode": mode[0] if len(mode) == 1 else mode,
                                       "default_on": spec.default_on}})
    return {"guardrails": out}


@router.post("/guardrails/apply_guardrail", tags=["guardrails"])
async def apply_guardrail(body: ApplyGuardrail, request: Request,
                          caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    """Run one guardrail on a text: ``{response_text}`` (masked where it masks); a block is a 400."""
    stage = _stage(request)
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
