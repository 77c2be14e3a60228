"""One small client helper per front door for ``tests/test_conformance.py``.

Each door drives the gateway with its official SDK and answers in neutral terms, so one
parametrized test per behaviour can hold every door:

  ask_text(model, stream)           -> Answer(text, finish, usage)
  ask_tool_round_trip(model, stream) -> Trip(name, args, finish, answer after the tool result)
  ask_error(model, trigger)         -> Failure(status, error class, body as the client received it)

``finish`` stays in the door's own vocabulary (see TEXT_FINISH / TOOL_FINISH);
``usage`` is ``(prompt tokens including cached ones, completion tokens, cached tokens or None)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

SYSTEM = "Answer briefly (conformance)."
TOOL_RESULT = "sunny-21C-conformance"
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "weather of a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}]
TOOLS_RESPONSES = [{"type": "function", **TOOLS_OPENAI[0]["function"]}]
TOOLS_GEMINI = [types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="weather of a city",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]))])]

TEXT_FINISH = {"chat": "stop", "messages": "end_turn", "responses": "completed",
               "gemini": types.FinishReason.STOP, "completions": "stop"}
# Gemini has no tool-call finish reason (STOP); a Responses answer with a call is "completed"
TOOL_FINISH = {"chat": "tool_calls", "messages": "tool_use", "responses": "completed",
               "gemini": types.FinishReason.STOP}


@dataclass
class Answer:
    text: str
    finish: Any
    usage: tuple[Any, Any, Any] | None


@dataclass
class Trip:
    name: str
    args: Any
    finish: Any
    answer: str


@dataclass
class Failure:
    status: int
    error: type
    body: Any


def _one(values: list[Any]) -> Any:
    """The single finish reason of a stream (a tuple when there were several, to fail loudly)."""
    return values[0] if len(values) == 1 else tuple(values)


def _openai_usage(u: Any) -> tuple[Any, Any, Any] | None:
    if u is None:
        return None
    details = getattr(u, "prompt_tokens_details", None)
    return u.prompt_tokens, u.completion_tokens, getattr(details, "cached_tokens", None)


def _openai_failure(call: Any) -> Failure:
    try:
        call()
    except openai.APIStatusError as err:
        return Failure(err.status_code, type(err), err.response.json())
    raise AssertionError("no error")


class ChatDoor:
    """``POST /v1/chat/completions`` with ``openai`` (client.chat.completions)."""

    def __init__(self, url: str, key: str) -> None:
        self.c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=20)

    def ask_text(self, model: str, stream: bool) -> Answer:
        kw = dict(model=model, max_tokens=50,
                  messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hello"}])
        if not stream:
            r = self.c.chat.completions.create(**kw)
            return Answer(r.choices[0].message.content, r.choices[0].finish_reason, _openai_usage(r.usage))
        chunks = list(self.c.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = _one([c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason])
        usage = [c.usage for c in chunks if c.usage]
        return Answer(text, finish, _openai_usage(usage[-1]) if usage else None)

    def ask_tool_round_trip(self, model: str, stream: bool) -> Trip:
        kw = dict(model=model, max_tokens=50, tools=TOOLS_OPENAI,
                  messages=[{"role": "user", "content": "TRIGGER_TOOL weather?"}])
        if not stream:
            r = self.c.chat.completions.create(**kw)
            call = r.choices[0].message.tool_calls[0]
            name, args, call_id, finish = call.function.name, call.function.arguments, call.id, r.choices[0].finish_reason
        else:
            chunks = list(self.c.chat.completions.create(**kw, stream=True))
            deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
            name = next(d.function.name for d in deltas if d.function and d.function.name)
            call_id = next(d.id for d in deltas if d.id)
            args = "".join(d.function.arguments or "" for d in deltas if d.function)
            finish = _one([c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason])
        follow = [{"role": "user", "content": "weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
                  {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT}]
        r = self.c.chat.completions.create(model=model, max_tokens=50, tools=TOOLS_OPENAI, messages=follow)
        return Trip(name, json.loads(args), finish, r.choices[0].message.content)

    def ask_error(self, model: str, trigger: str) -> Failure:
        return _openai_failure(lambda: self.c.chat.completions.create(
            model=model, max_tokens=50, messages=[{"role": "user", "content": trigger}]))


class MessagesDoor:
    """``POST /v1/messages`` with ``anthropic`` (client.messages)."""

    def __init__(self, url: str, key: str) -> None:
        self.c = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=20)

    @staticmethod
    def _answer(msg: Any) -> Answer:
        u = msg.usage
        cached = u.cache_read_input_tokens
        prompt = u.input_tokens + (cached or 0) + (u.cache_creation_input_tokens or 0)
        text = "".join(b.text for b in msg.content if b.type == "text")
        return Answer(text, msg.stop_reason, (prompt, u.output_tokens, cached))

    def _create(self, stream: bool, **kw: Any) -> Any:
        if not stream:
            return self.c.messages.create(**kw)
        with self.c.messages.stream(**kw) as s:
            return s.get_final_message()

    def ask_text(self, model: str, stream: bool) -> Answer:
        return self._answer(self._create(stream, model=model, max_tokens=50, system=SYSTEM,
                                         messages=[{"role": "user", "content": "hello"}]))

    def ask_tool_round_trip(self, model: str, stream: bool) -> Trip:
        msg = self._create(stream, model=model, max_tokens=50, tools=TOOLS_ANTHROPIC,
                           messages=[{"role": "user", "content": "TRIGGER_TOOL weather?"}])
        use = [b for b in msg.content if b.type == "tool_use"][0]
        follow = self.c.messages.create(model=model, max_tokens=50, tools=TOOLS_ANTHROPIC, messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]},
        ])
        return Trip(use.name, use.input, msg.stop_reason, self._answer(follow).text)

    def ask_error(self, model: str, trigger: str) -> Failure:
        try:
            self.c.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": trigger}])
        except anthropic.APIStatusError as err:
            return Failure(err.status_code, type(err), err.response.json())
        raise AssertionError("no error")


class ResponsesDoor:
    """``POST /v1/responses`` with ``openai`` (client.responses)."""

    def __init__(self, url: str, key: str) -> None:
        self.c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=20)

    def _create(self, stream: bool, **kw: Any) -> tuple[Any, str]:
        """The final response object and the text (from the deltas when streamed)."""
        if not stream:
            r = self.c.responses.create(**kw)
            return r, r.output_text
        events = list(self.c.responses.create(**kw, stream=True))
        done = [e.response for e in events if e.type == "response.completed"]
        assert len(done) == 1, [e.type for e in events]
        return done[0], "".join(e.delta for e in events if e.type == "response.output_text.delta")

    def ask_text(self, model: str, stream: bool) -> Answer:
        r, text = self._create(stream, model=model, input="hello", instructions=SYSTEM, max_output_tokens=50)
        u = r.usage
        usage = (u.input_tokens, u.output_tokens, u.input_tokens_details.cached_tokens) if u else None
        return Answer(text, r.status, usage)

    def ask_tool_round_trip(self, model: str, stream: bool) -> Trip:
        r, _ = self._create(stream, model=model, input="TRIGGER_TOOL weather?", tools=TOOLS_RESPONSES)
        call = [item for item in r.output if item.type == "function_call"][0]
        follow = self.c.responses.create(model=model, tools=TOOLS_RESPONSES, input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT},
        ])
        return Trip(call.name, json.loads(call.arguments), r.status, follow.output_text)

    def ask_error(self, model: str, trigger: str) -> Failure:
        return _openai_failure(lambda: self.c.responses.create(model=model, input=trigger))


class GeminiDoor:
    """``POST /v1beta/models/{model}:generateContent`` with ``google-genai`` (client.models)."""

    def __init__(self, url: str, key: str) -> None:
        self.c = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=url, api_version="v1beta",
                                                                          timeout=20_000))

    def _generate(self, model: str, stream: bool, contents: Any, config: types.GenerateContentConfig) -> Any:
        """One response: as it came, or the stream's chunks folded (text, calls, last finish and usage)."""
        if not stream:
            return self.c.models.generate_content(model=model, contents=contents, config=config)
        chunks = list(self.c.models.generate_content_stream(model=model, contents=contents, config=config))
        parts = [p for c in chunks if c.candidates and c.candidates[0].content
                 for p in c.candidates[0].content.parts or []]
        finishes = [c.candidates[0].finish_reason for c in chunks if c.candidates and c.candidates[0].finish_reason]
        usage = [c.usage_metadata for c in chunks if c.usage_metadata and c.usage_metadata.total_token_count]
        single = len(finishes) == 1  # else no finish reason: the test's comparison fails, naming them
        candidate = types.Candidate(content=types.Content(role="model", parts=parts),
                                    finish_reason=finishes[0] if single else None,
                                    finish_message=None if single else repr(finishes))
        return types.GenerateContentResponse(candidates=[candidate], usage_metadata=usage[-1] if usage else None)

    def ask_text(self, model: str, stream: bool) -> Answer:
        config = types.GenerateContentConfig(system_instruction=SYSTEM, max_output_tokens=50)
        r = self._generate(model, stream, "hello", config)
        u = r.usage_metadata
        usage = (u.prompt_token_count, u.candidates_token_count, u.cached_content_token_count) if u else None
        return Answer("".join(p.text or "" for p in r.candidates[0].content.parts if not p.thought),
                      r.candidates[0].finish_reason, usage)

    def ask_tool_round_trip(self, model: str, stream: bool) -> Trip:
        r = self._generate(model, stream, "TRIGGER_TOOL weather?", types.GenerateContentConfig(tools=TOOLS_GEMINI))
        call = [p.function_call for p in r.candidates[0].content.parts if p.function_call][0]
        result = types.Part(function_response=types.FunctionResponse(
            id=call.id, name=call.name, response={"result": TOOL_RESULT}))
        follow = self.c.models.generate_content(model=model, config=types.GenerateContentConfig(tools=TOOLS_GEMINI),
                                                contents=[types.Content(role="user", parts=[types.Part(text="weather?")]),
                                                          r.candidates[0].content,
                                                          types.Content(role="user", parts=[result])])
        return Trip(call.name, call.args, r.candidates[0].finish_reason, follow.text)

    def ask_error(self, model: str, trigger: str) -> Failure:
        try:
            self.c.models.generate_content(model=model, contents=trigger)
        except genai_errors.APIError as err:
            return Failure(err.code, type(err), err.details)
        raise AssertionError("no error")


class CompletionsDoor:
    """``POST /v1/completions`` with ``openai`` (client.completions): text only."""

    def __init__(self, url: str, key: str) -> None:
        self.c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=20)

    def ask_text(self, model: str, stream: bool) -> Answer:
        if not stream:
            r = self.c.completions.create(model=model, prompt="hello", max_tokens=50)
            return Answer(r.choices[0].text, r.choices[0].finish_reason, _openai_usage(r.usage))
        chunks = list(self.c.completions.create(model=model, prompt="hello", max_tokens=50, stream=True,
                                                stream_options={"include_usage": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = _one([c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason])
        usage = [c.usage for c in chunks if c.usage]
        return Answer(text, finish, _openai_usage(usage[-1]) if usage else None)

    def ask_error(self, model: str, trigger: str) -> Failure:
        return _openai_failure(lambda: self.c.completions.create(model=model, prompt=trigger, max_tokens=50))


DOORS = {"chat": ChatDoor, "messages": MessagesDoor, "responses": ResponsesDoor, "gemini": GeminiDoor,
         "completions": CompletionsDoor}
