"""Models: every deployment (model group, provider, upstream model, API base without credentials), its
price, rate limits and state (cooling down, marked unhealthy, in flight, latency); an on-demand health
check.  Built from ``governance/model_info.entry`` (what ``/model/info`` lists: never an API key or
credential).  For proxy admins and viewers (the roles ``GET /health`` admits)."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from ...governance.model_info import entry
from ..page import Page, Route, UIRequest, readers

PER_MILLION = 1_000_000


def deployments(ui: UIRequest) -> list[dict[str, Any]]:
    now = time.time()
    router = ui.gw.router
    out = []
    for name in sorted(ui.gw.groups):
        for dep in ui.gw.groups[name]:
            info = entry(dep)
            stats = dict(router.stats.items()).get(dep.id)  # never created here: a read
            price_in = info["model_info"]["input_cost_per_token"]
            price_out = info["model_info"]["output_cost_per_token"]
            out.append({
                "group": name, "id": dep.id, "provider": dep.provider, "model": dep.model,
                "api_base": info["litellm_params"].get("api_base") or "(provider default)",
                "rpm": dep.rpm, "tpm": dep.tpm,
                "price_in": None if price_in is None else price_in * PER_MILLION,
                "price_out": None if price_out is None else price_out * PER_MILLION,
                "cooling_for": max(0.0, stats.cooldown_until - now) if stats is not None else 0.0,
                "unhealthy": bool(stats.unhealthy) if stats is not None else False,
                "in_flight": stats.in_flight if stats is not None else 0,
                "latency_ms": None if stats is None or stats.latency is None else stats.latency * 1000,
            })
    return out


async def list_models(ui: UIRequest) -> Response:
    return ui.render("pages/models.html", rows=deployments(ui), health=None)


async def check_health(ui: UIRequest) -> Response:
    ui.caller.require_reader("run health checks")
    assert ui.gw.health is not None
    report = await ui.gw.health.check_all()
    results = {r["model_id"]: r for key in ("healthy_endpoints", "unhealthy_endpoints", "skipped_endpoints")
               for r in report[key]}
    return ui.render("pages/models.html", rows=deployments(ui), health=results)


PAGE = Page(
    slug="models",
    title="Models",
    routes=(Route("GET", "", list_models), Route("POST", "/health", check_health)),
    visible=readers,
)
