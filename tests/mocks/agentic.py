"""How the mock models behave as agents (shared by the Anthropic, OpenAI and Gemini mocks).

A real model reads the conversation and decides: asked to read a file while it
has a file-reading tool, it calls that tool; once the tool's result is back, it
answers from it.  The mocks do the same, deterministically:

  * the last user turn asks to "read the file <path>" and a tool named ``Read``
    (Claude Code's) is offered -> the model calls ``Read`` with
    ``{"file_path": <path>}`` (a call only, no text: what real models send most);
  * the conversation ends with the results of the model's ``Read`` call ->
    the model answers ``FILE_ANSWER_PREFIX`` followed by the text of those
    results, so a test can check that the file's content went round trip.

Each mock extracts, in its own wire format, the last user text, the tools the
model called in its last turn and the results that follow, and asks ``decide``.
Conversations with other tools keep the trigger behaviour of ``tests/mocks``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

READ_TOOL = "Read"
FILE_ANSWER_PREFIX = "The tool returned: "
_READ_REQUEST = re.compile(r"read the file\s+(\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Decision:
    text: str | None = None
    call: ToolCall | None = None


def decide(user_text: str, tool_names: list[str], called: list[str], tool_results: list[str]) -> Decision | None:
    """What the agent does next; None when the conversation is not an agentic one (other triggers apply)."""
    if tool_results and READ_TOOL in called:
        return Decision(text=FILE_ANSWER_PREFIX + " ".join(r.strip() for r in tool_results))
    match = _READ_REQUEST.search(user_text)
    if match and READ_TOOL in tool_names:
        return Decision(call=ToolCall(READ_TOOL, {"file_path": match.group(1).rstrip(".,;:'\"")}))
    return None


def text_of(content: Any) -> str:
    """Text of a string or of a list of text blocks / parts (other blocks ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and "text" in b)
    return ""
