"""Alert channels: one module per receiver kind, and the registry (channel name -> sender factory).

A sender's ``send(alert)`` delivers once or raises ``DeliveryError``; retries, back-off and counting
are the delivery queue's (``alerts/delivery.py``).  A channel whose receiver is not configured
(no ``SLACK_WEBHOOK_URL``, ``WEBHOOK_URL`` or ``SMTP_HOST``) builds no sender.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ...transport.client import Upstream
    from ..model import Alert
    from ..settings import AlertSettings


class DeliveryError(Exception):
    """A receiver refused or could not be reached; the message names no URL and no secret."""


class Sender(Protocol):
    name: str

    def wants(self, alert_type: str) -> bool:
        """Whether alerts of this type go anywhere through this channel."""
        ...

    async def send(self, alert: Alert) -> None: ...


def _slack(settings: AlertSettings, upstream: Upstream) -> Sender | None:
    from .slack import SlackSender

    return SlackSender(settings, upstream) if settings.slack_url or settings.routes else None


def _webhook(settings: AlertSettings, upstream: Upstream) -> Sender | None:
    from .webhook import WebhookSender

    return WebhookSender(settings.webhook_url, upstream, settings.arg("send_timeout")) if settings.webhook_url else None


def _email(settings: AlertSettings, upstream: Upstream) -> Sender | None:
    if settings.smtp is None or not settings.smtp.recipients:
        return None
    from .email import EmailSender

    return EmailSender(settings.smtp, settings.arg("send_timeout"))


REGISTRY: dict[str, Callable[[AlertSettings, Upstream], Sender | None]] = {
    "slack": _slack, "webhook": _webhook, "email": _email,
}


def build(settings: AlertSettings, upstream: Upstream) -> dict[str, Sender]:
    """The senders of the configured channels whose receiver is set."""
    out: dict[str, Sender] = {}
    for name in settings.channels:
        sender = REGISTRY[name](settings, upstream)
        if sender is not None:
            out[name] = sender
    return out


async def post_json(upstream: Upstream, url: str, body: bytes, timeout: float) -> None:
    """POST ``body`` (JSON) to ``url``; a 2xx answer is success, anything else a ``DeliveryError``."""
    try:
        reply = await upstream.post(url, {"content-type": "application/json"}, body, timeout, 64 * 1024)
    except Exception as exc:  # noqa: BLE001 - unreachable, timeout, answer too large: the receiver's fault
        raise DeliveryError(f"receiver unreachable ({type(exc).__name__})") from None
    if not 200 <= reply.status < 300:
        raise DeliveryError(f"receiver answered {reply.status}")
