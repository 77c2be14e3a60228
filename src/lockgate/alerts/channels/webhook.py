"""Generic webhooks: the alert's JSON posted to ``WEBHOOK_URL`` (LiteLLM's budget payload for budget
alerts: ``spend``, ``max_budget``, ``token``, ``event``, ``event_group``, ``event_message``, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from . import post_json

if TYPE_CHECKING:
    from ...transport.client import Upstream
    from ..model import Alert


class WebhookSender:
    name = "webhook"

    def __init__(self, url: str, upstream: Upstream, timeout: float) -> None:
        self.url = url
        self.upstream = upstream
        self.timeout = timeout

    def wants(self, alert_type: str) -> bool:
        return True

    async def send(self, alert: Alert) -> None:
        await post_json(self.upstream, self.url, orjson.dumps(alert.webhook_body()), self.timeout)
