"""``GET /health/services?service=slack|webhook|email``: a test alert through one channel (admin only,
as LiteLLM's); docs/alerts.md."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest, LockgateError
from .auth import Caller
from .call import Call, Route
from .schemas import ServicesQuery

SERVICES = ("slack", "webhook", "email")


async def services(call: Call, caller: Caller, query: ServicesQuery) -> dict[str, Any]:
    """Send a test alert through ``service`` now and say whether its receiver took it."""
    service = query.service
    caller.require_admin("send test alerts")
    if service not in SERVICES:
        raise BadRequest(f"service must be one of {', '.join(SERVICES)}", param="service", code="unknown_service")
    alerts = getattr(call.gateway, "alerts", None)
    if alerts is None or service not in alerts.settings.channels:
        raise BadRequest(f"{service} alerts are not configured (general_settings.alerting: [{service}])",
                         param="service", code="service_not_configured")
    if service not in alerts.senders:
        env = {"slack": "SLACK_WEBHOOK_URL", "webhook": "WEBHOOK_URL",
               "email": "SMTP_HOST and alerting_args.email_to"}[service]
        raise BadRequest(f"{service} alerts have no receiver: set {env}", param="service",
                         code="service_not_configured")
    result = await alerts.send_test(service)
    if result["status"] != "success":
        raise LockgateError(f"the {service} receiver did not take the test alert: {result['message']}", status=502,
                            code="alert_delivery_failed")
    return result


ROUTES = (
    Route("GET", "/health/services", services, "health", query=ServicesQuery),
)
