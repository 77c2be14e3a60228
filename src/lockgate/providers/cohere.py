"""Cohere (``cohere/<model>``): Chat v2 and Embed v2, Bearer auth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..dialects import cohere_chat
from ..transport.sse import SSEParser
from . import Provider

if TYPE_CHECKING:
    from ..config import Deployment


class StreamParser:
    """SSE as Cohere's v2 chat sends it; newline-delimited JSON (what v1 sent, and what some
    Cohere-compatible hosts send) is accepted too, told apart by the first byte."""

    __slots__ = ("_buf", "_lines", "_sse")

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._lines: bool | None = None
        self._buf = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        if self._lines is None:
            head = chunk.lstrip()
            if not head:
                return []
            self._lines = head[:1] == b"{"
        if not self._lines:
            return self._sse.feed(chunk)
        self._buf += chunk
        *complete, self._buf = self._buf.split(b"\n")
        return [(None, line.strip()) for line in complete if line.strip()]

    def flush(self) -> list[tuple[str | None, bytes]]:
        if not self._lines:
            return self._sse.flush()
        rest, self._buf = self._buf.strip(), b""
        return [(None, rest)] if rest else []


@dataclass(frozen=True)
class CohereProvider(Provider):
    def base(self, dep: Deployment) -> str:
        base = super().base(dep)
        return base[:-3] if base.endswith(("/v1", "/v2")) else base

    def chat_url(self, dep: Deployment, stream: bool) -> str:
        return self.base(dep) + "/v2/chat"

    def embeddings_url(self, dep: Deployment) -> str:
        return self.base(dep) + "/v2/embed"

    def stream_parser(self) -> Any:
        return StreamParser()


PROVIDERS: dict[str, Provider] = {
    "cohere": CohereProvider(name="cohere", dialect=cohere_chat, default_api_base="https://api.cohere.com"),
}
