"""Guardrails and cache: what is configured (read-only: both come from config.yaml) and their counters
since this process started (verdicts per guardrail and phase; cache lookups, stores and what hits saved).
For admins and admin viewers."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..data import counters
from ..page import Page, Route, UIRequest, readers

VERDICTS = ("passed", "masked", "blocked", "failed")
LOOKUPS = ("hit", "semantic-hit", "miss", "bypass")
STORES = ("stored", "incomplete", "too_large")


def _guardrails(ui: UIRequest, counts: counters.Counts) -> list[dict[str, Any]]:
    stage = ui.gw.guardrails
    out = []
    for spec in (stage.specs.values() if stage is not None else ()):
        phases = sorted(spec.modes)
        out.append({"name": spec.name, "type": spec.type, "modes": phases, "default_on": spec.default_on,
                    "verdicts": {v: int(sum(counts.get(spec.name, p, v) for p in phases)) for v in VERDICTS}})
    return out


def _cache(ui: UIRequest, found: dict[str, counters.Counts]) -> dict[str, Any] | None:
    cache = ui.gw.cache
    if cache is None:
        return None
    s = cache.settings
    return {"type": s.type, "mode": s.mode, "ttl": s.ttl, "scope": s.scope, "semantic": s.semantic,
            "similarity_threshold": s.similarity_threshold, "routes": sorted(s.routes),
            "backend": cache.backend.stats(),
            "lookups": {r: int(found["cache_requests"].get(r)) for r in LOOKUPS},
            "stores": {r: int(found["cache_stores"].get(r)) for r in STORES},
            "saved_cost": found["cache_saved_cost"].get(), "saved_tokens": int(found["cache_saved_tokens"].get())}


async def show(ui: UIRequest) -> Response:
    found = counters.read(ui.gw)
    return ui.render("pages/guardrails_cache.html", guardrails=_guardrails(ui, found["guardrail_verdicts"]),
                     cache=_cache(ui, found), verdicts=VERDICTS)


PAGE = Page(slug="guardrails-cache", title="Guardrails & cache", routes=(Route("GET", "", show),), visible=readers)
