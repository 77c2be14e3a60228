"""Email over SMTP (aiosmtplib): ``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_USERNAME``, ``SMTP_PASSWORD``,
``SMTP_SENDER_EMAIL``, ``SMTP_TLS`` (LiteLLM's names); recipients from ``alerting_args.email_to``."""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING

from . import DeliveryError

if TYPE_CHECKING:
    from ..model import Alert
    from ..settings import SmtpSettings


class EmailSender:
    name = "email"

    def __init__(self, smtp: SmtpSettings, timeout: float) -> None:
        self.smtp = smtp
        self.timeout = timeout

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"[Lockgate] {alert.title}"
        msg["From"] = self.smtp.sender
        msg["To"] = ", ".join(self.smtp.recipients)
        msg.set_content(alert.text() + "\n")
        return msg

    def wants(self, alert_type: str) -> bool:
        return True

    async def send(self, alert: Alert) -> None:
        import aiosmtplib

        s = self.smtp
        implicit = s.tls and s.port == 465
        try:
            await aiosmtplib.send(self.message(alert), hostname=s.host, port=s.port, username=s.username,
                                  password=s.password, use_tls=implicit, start_tls=s.tls and not implicit,
                                  timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - refused, unreachable, TLS or auth failure
            raise DeliveryError(f"SMTP delivery failed ({type(exc).__name__})") from None
