"""Wire dialects: one module per wire format, the unit of translation.

A dialect module knows one wire format in both directions and does no I/O:

* as the client's front door it turns the client's request into the canonical
  form and renders canonical responses, stream chunks and errors back;
* as a provider's wire format it builds the provider's request from the
  canonical form and parses its responses, stream events and errors into it.

Every dialect module exposes the same names (see ``Dialect`` below), so reading
one teaches all.  When the client's dialect equals the provider's, the pipeline
skips all of this and passes the body through (model name rewritten only).

The canonical form
------------------
The canonical form is OpenAI Chat Completions JSON (plain dicts: cheap, and
every contributor already knows the shape), plus a few documented extension
keys for what OpenAI's shape lacks, so an Anthropic -> Gemini translation does
not lose them on the way:

Request (``canonical request``): an OpenAI chat request dict. ``model`` is the
client's model name.  Messages have roles ``system`` | ``developer`` | ``user``
| ``assistant`` | ``tool``; a ``system`` message may appear anywhere (Claude
Code sends mid-conversation system text; the Anthropic door accepts
``role: "system"`` inside ``messages``).  Dialects without a mid-conversation
system role keep the *leading* system messages in their system field and fold
each later one, in place, into the neighbouring user turn as a
``<system-reminder>``-delimited text (``system_messages``); OpenAI chat keeps
them where they stand, Responses makes them ``developer`` items.  A ``tool``
message may carry ``is_error: true`` (Anthropic's flag; ``Error: `` prefix of
the text where the target has no flag) and ``name`` (the Gemini door's; dropped
for OpenAI).  Content is a string or a list of
parts ``{"type":"text","text":...}`` and
``{"type":"image_url","image_url":{"url": "data:<mime>;base64,<data>" | "https://..."}}``.
Extensions:
  * any content part may carry ``cache_control`` (Anthropic's dict), kept as is;
  * assistant messages may carry ``thinking_blocks``: a list of
    ``{"type":"thinking","thinking":str,"signature":str}`` or
    ``{"type":"redacted_thinking","data":str}``;
  * tool definitions may carry ``cache_control``;
  * top-level ``thinking`` (Anthropic's ``{"type":"enabled","budget_tokens":N}``),
    ``top_k``, ``metadata`` (dict) are kept when the source had them.
  * ``max_tokens`` is always the output limit (``max_completion_tokens`` is
    folded into it by the OpenAI dialect); on the translated path it is lowered
    to the target model's ceiling (``output_limits``) before the provider's
    dialect sees it.

Response (``canonical response``): an OpenAI ``chat.completion`` dict with
one or more choices; ``message`` has ``content`` (str or None), ``tool_calls``
(OpenAI shape, ``arguments`` a JSON string), optional ``reasoning_content``
(str) and ``thinking_blocks`` (as above).  ``finish_reason`` is one of
``stop`` | ``length`` | ``tool_calls`` | ``content_filter``.

Usage (``canonical usage``): ``{"prompt_tokens", "completion_tokens",
"total_tokens", "prompt_tokens_details": {"cached_tokens"},
"completion_tokens_details": {"reasoning_tokens"}}`` with OpenAI's meaning
(``prompt_tokens`` includes cached tokens), plus the extension
``cache_creation_input_tokens`` (tokens written to a prompt cache).

Stream chunk (``canonical chunk``): an OpenAI ``chat.completion.chunk`` dict.
``delta`` may hold ``role``, ``content``, ``tool_calls`` (with ``index``; the
first delta of a call carries ``id`` and ``function.name``, later ones only
``function.arguments`` pieces), ``reasoning_content`` and the extension
``thinking_signature`` (str, the signature of the thinking block being
streamed).  The last chunk carries ``finish_reason``; usage arrives as a chunk
with ``"choices": []`` and ``usage`` set (or on the finishing chunk).

Errors: a ``lockgate.errors.LockgateError``.
"""

from __future__ import annotations

from typing import Any, Protocol


class StreamDecoder(Protocol):
    """Turns a provider's stream events into canonical chunks (stateful)."""

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]: ...

    def usage(self) -> dict[str, Any] | None: ...


class StreamEncoder(Protocol):
    """Renders canonical chunks as the client's stream bytes (stateful)."""

    def encode(self, chunk: dict[str, Any]) -> bytes: ...

    def finish(self) -> bytes: ...

    def error(self, err: Exception) -> bytes: ...


class UsageTap(Protocol):
    """Reads usage out of a passthrough stream without rebuilding it (cheap:
    events that cannot hold usage are skipped without parsing)."""

    def feed(self, event: str | None, data: bytes) -> None: ...

    def usage(self) -> dict[str, Any] | None: ...


class FrontDoor(Protocol):
    """A client's dialect: parses its requests, renders canonical answers, streams and errors."""

    NAME: str

    def request_to_canonical(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def response_from_canonical(self, resp: dict[str, Any], model: str) -> dict[str, Any]: ...
    def stream_encoder(self, model: str, request_id: str) -> StreamEncoder: ...
    def error_body(self, err: Exception) -> dict[str, Any]: ...
    # passthrough accounting: canonical usage of a native response body / stream
    def usage_from_body(self, body: dict[str, Any]) -> dict[str, Any] | None: ...
    def usage_tap(self) -> UsageTap: ...


class ProviderDialect(Protocol):
    """A provider's wire format: builds its requests, parses its answers, stream events and errors."""

    NAME: str

    def request_from_canonical(self, req: dict[str, Any], model: str) -> dict[str, Any]: ...
    def response_to_canonical(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def stream_decoder(self) -> StreamDecoder: ...
    def parse_error(self, status: int, body: bytes) -> tuple[str, str | None]: ...
    def usage_from_body(self, body: dict[str, Any]) -> dict[str, Any] | None: ...
    def usage_tap(self) -> UsageTap: ...


class Dialect(FrontDoor, ProviderDialect, Protocol):
    """Both sides (openai_chat, anthropic_messages, gemini, openai_responses)."""


class EmbeddingsDialect(ProviderDialect, Protocol):
    """A provider format with its own embeddings API (gemini, cohere_chat)."""

    def embeddings_request_from_canonical(self, req: dict[str, Any], model: str) -> dict[str, Any]: ...
    def embeddings_response_to_canonical(self, body: Any, model: str) -> dict[str, Any]: ...


TOOL_ERROR_PREFIX = "Error: "


def error_marked(text: str, is_error: Any) -> str:
    """A tool result's text for a dialect without an error flag: marked when it reports an error."""
    if not is_error or text.startswith(TOOL_ERROR_PREFIX):
        return text
    return TOOL_ERROR_PREFIX + text


def get(name: str) -> Dialect:
    from . import anthropic_messages, gemini, openai_chat, openai_responses

    return {m.NAME: m for m in (openai_chat, anthropic_messages, gemini, openai_responses)}[name]
