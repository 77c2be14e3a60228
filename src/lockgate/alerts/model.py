"""One alert: its type, its dedupe key, a one-line title, plain-text details and the webhook payload.

An alert never carries a raw key or request / response text: subjects are named by alias, id or the
first characters of a key's sha256 hash (``key_label``), and only numbers, names and error kinds go in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEVELS = ("Low", "Medium", "High")


@dataclass
class Alert:
    type: str  # one of settings.ALERT_TYPES
    title: str  # one line: "Budget crossed: key 'ci-bot'"
    key: str  # dedupe key: type + subject + period; the same key is sent once
    ttl: float  # seconds the dedupe key lives (the period's remaining time, or a TTL)
    level: str = "Low"
    details: dict[str, Any] = field(default_factory=dict)  # plain facts, rendered as "name: value" lines
    # the generic webhook's JSON (LiteLLM's budget payload for budget alerts); None: {"text": ..., ...}
    payload: dict[str, Any] | None = None

    def text(self) -> str:
        """The Slack / email body: title, level, type, then one line per detail."""
        lines = [self.title, f"Level: {self.level}", f"Type: {self.type}"]
        lines += [f"{name}: {_plain(value)}" for name, value in self.details.items() if value is not None]
        return "\n".join(lines)

    def webhook_body(self) -> dict[str, Any]:
        if self.payload is not None:
            return self.payload
        return {"event": self.type, "event_group": "proxy", "event_message": self.title, "level": self.level,
                "alert_type": self.type, "details": {k: v for k, v in self.details.items() if v is not None}}


def key_label(token_hash: str | None, alias: str | None) -> str:
    """How an alert names a virtual key: its alias, else "hash " and the first 12 characters of its sha256."""
    if alias:
        return alias
    return f"hash {token_hash[:12]}" if token_hash else "unknown key"


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
