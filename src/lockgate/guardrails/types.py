"""What a guardrail check returns.  Detections carry types and offsets, never the raw values (they are
recorded in spend logs and shown to operators)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Action = Literal["pass", "mask", "block"]


@dataclass(frozen=True, slots=True)
class Detection:
    type: str  # e.g. EMAIL_ADDRESS, CREDIT_CARD, AWS_ACCESS_KEY, prompt_injection, blocked_word
    start: int  # offsets in the text that was checked
    end: int
    score: float = 1.0
    action: Action = "block"  # what the configuration says to do with this detection


@dataclass(slots=True)
class Verdict:
    action: Action  # the strongest action over the detections ("pass" when none)
    text: str  # the text to send on: masked when action == "mask", unchanged otherwise
    detections: list[Detection] = field(default_factory=list)
    message: str | None = None  # for a block: what was found, in words (no raw values)
