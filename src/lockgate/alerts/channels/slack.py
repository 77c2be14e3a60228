"""Slack incoming webhooks: ``{"text": ...}`` posted to ``SLACK_WEBHOOK_URL`` (Discord's and Microsoft
Teams' Slack-compatible URLs take the same body), or to the URLs ``alert_to_webhook_url`` names for the
alert's type."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from . import DeliveryError, post_json

if TYPE_CHECKING:
    from ...transport.client import Upstream
    from ..model import Alert
    from ..settings import AlertSettings


class SlackSender:
    name = "slack"

    def __init__(self, settings: AlertSettings, upstream: Upstream) -> None:
        self.default = settings.slack_url
        self.routes = settings.routes
        self.upstream = upstream
        self.timeout = settings.arg("send_timeout")

    def urls(self, alert_type: str) -> list[str]:
        routed = self.routes.get(alert_type)
        if routed:
            return routed
        if self.default:
            return [self.default]
        if alert_type == "test":  # GET /health/services: every routed URL once
            return list(dict.fromkeys(url for urls in self.routes.values() for url in urls))
        return []

    def wants(self, alert_type: str) -> bool:
        """False for a type routed nowhere (alert_to_webhook_url without it and no SLACK_WEBHOOK_URL)."""
        return bool(self.urls(alert_type))

    async def send(self, alert: Alert) -> None:
        urls = self.urls(alert.type)
        body = orjson.dumps({"text": alert.text()})
        failed = []
        for url in urls:
            try:
                await post_json(self.upstream, url, body, self.timeout)
            except DeliveryError as exc:
                failed.append(str(exc))
        if failed:
            raise DeliveryError("; ".join(failed))
