"""Provider-faithful mock servers (aiohttp), started by the tests on loopback.

Each module ``tests/mocks/<provider>_api.py`` exposes
``create_app(recorder: Recorder) -> aiohttp.web.Application`` serving the
provider's real paths, checking its real auth header, and answering with its
real body shapes, SSE event sequences and error shapes.

What a mock answers is chosen by the text of the *last user message* (so the
same trigger works through every front door and translation):

  * contains ``TRIGGER_TOOL``   -> the model calls the tool ``get_weather``
    with arguments ``{"city": "Paris"}`` (first tool of the request if given)
  * contains ``TRIGGER_429``    -> 429 rate-limit error with ``retry-after: 7``
  * contains ``TRIGGER_500``    -> 500 server error
  * contains ``TRIGGER_400``    -> 400 invalid request error
  * contains ``TRIGGER_SLOW``   -> waits 3 s before answering
  * contains ``TRIGGER_LONGSTREAM`` -> a stream of 200 chunks, 50 ms apart
  * contains ``TRIGGER_THINK``  -> the answer starts with a thinking/reasoning block
  * asks to "read the file <path>" with a ``Read`` tool offered (Claude Code) -> the model
    calls ``Read``, then answers from its result (``tests/mocks/agentic.py``; Anthropic,
    OpenAI and Gemini mocks)
  * otherwise                   -> the text ``MOCK_TEXT`` below; usage
    ``prompt_tokens=11`` (of which cached 3) and ``completion_tokens=7``
    (of which reasoning 0).

Every received request is appended to ``recorder.requests`` as a ``Received``
(path, query, headers lower-cased, parsed JSON body), and a stream that the
client abandoned sets ``recorder.stream_cancelled`` (an ``asyncio.Event``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

MOCK_TEXT = "Hello from the mock provider."
MOCK_API_KEY = "provider-secret-key-1234567890"
PROMPT_TOKENS = 11
CACHED_TOKENS = 3
COMPLETION_TOKENS = 7


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    requests: list[Received] = field(default_factory=list)
    stream_cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> Received:
        return self.requests[-1]


def last_user_text(texts: list[str]) -> str:
    return texts[-1] if texts else ""


def trigger(text: str) -> str | None:
    for name in ("TOOL", "429", "500", "400", "SLOW", "LONGSTREAM", "THINK", "ECHO"):
        if "TRIGGER_" + name in text:
            return name
    return None
