"""An answer being collected for the cache (a tap on the bytes the client receives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .semantic import SemanticQuery

MAX_ENTRY_BYTES = 8 * 1024 * 1024  # a longer answer is not stored


@dataclass(slots=True)
class CacheFill:
    key: str
    ttl: float
    semantic: SemanticQuery | None = None  # added to the semantic index once stored
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    end: bytes | None = None  # a stream's own last event: once it is seen, the answer is whole

    def tap(self, data: bytes) -> bool:
        """Collect; True when this chunk ends the stream (the finishers then run before it goes out)."""
        if self.size <= MAX_ENTRY_BYTES:
            self.chunks.append(data)
            self.size += len(data)
        return self.end is not None and self.end in data
