"""System messages in the middle of a conversation, for dialects that have no place for them.

The canonical form allows a ``system`` (or ``developer``) message anywhere: OpenAI
chat takes them where they stand, and Claude Code sends them inside ``messages``
(its system reminders).  Anthropic's top-level ``system``, Gemini's
``systemInstruction`` and Bedrock's ``system`` only hold the instructions that
open the conversation, so those dialects keep the *leading* system messages there
and fold every later one, in place, into the neighbouring user turn as a text
block delimited the way Claude Code itself delimits such text::

    <system-reminder>
    ...the system message's text...
    </system-reminder>

Nothing is dropped and the order of the conversation is kept.  Each function
returns its input list unchanged (the same object) when there is nothing to do,
so a conversation without mid-conversation system messages costs one scan.
"""

from __future__ import annotations

from typing import Any

SYSTEM_ROLES = ("system", "developer")
OPEN_TAG = "<system-reminder>\n"
CLOSE_TAG = "\n</system-reminder>"


def leading_count(messages: list[dict[str, Any]]) -> int:
    """How many system/developer messages open the conversation."""
    n = 0
    for m in messages:
        if m.get("role") not in SYSTEM_ROLES:
            break
        n += 1
    return n


def fold_into_user_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leading system messages stay; every later one becomes a user message holding its
    delimited text, which the dialect then merges into the neighbouring user turn."""
    start = leading_count(messages)
    if not any(m.get("role") in SYSTEM_ROLES for m in messages[start:]):
        return messages
    out = messages[:start]
    for m in messages[start:]:
        if m.get("role") in SYSTEM_ROLES:
            part = delimited_part(m.get("content"))
            if part is not None:
                out.append({"role": "user", "content": [part]})
        else:
            out.append(m)
    return out


def delimited_part(content: Any) -> dict[str, Any] | None:
    """One text part holding the system text between the delimiters (its last ``cache_control`` kept)."""
    text = text_of(content)
    if not text:
        return None
    part: dict[str, Any] = {"type": "text", "text": OPEN_TAG + text + CLOSE_TAG}
    if isinstance(content, list):
        marks = [p["cache_control"] for p in content if isinstance(p, dict) and "cache_control" in p]
        if marks:
            part["cache_control"] = marks[-1]
    return part


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text") or "") for p in content
                         if isinstance(p, dict) and p.get("type") == "text" and p.get("text"))
    return ""


def after_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI wants an assistant's tool calls answered by the very next messages: a system
    message that sits between the calls and their ``tool`` results moves to just after them."""
    if not any(m.get("role") in SYSTEM_ROLES for m in messages[leading_count(messages):]):
        return messages
    moved = False
    out: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []  # system messages held back until the tool results are through
    in_results = False
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            out.extend(waiting)
            waiting = []
            in_results = bool(m.get("tool_calls"))
            out.append(m)
        elif in_results and role in SYSTEM_ROLES:
            waiting.append(m)
            moved = True
        elif in_results and role == "tool":
            out.append(m)
        else:
            in_results = False
            out.extend(waiting)
            waiting = []
            out.append(m)
    out.extend(waiting)
    return out if moved else messages
