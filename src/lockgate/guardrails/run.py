"""One request's guardrails: the input checks (pre_call, during_call), the answer checks (post_call,
whole or streamed with a hold-back window), reversible masking and its restoring, and the results that
go to the spend log (type, offsets, verdict, duration: never the raw values)."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import BadRequest, LockgateError
from .texts import Slot, answer_slots, request_slots
from .types import Verdict

if TYPE_CHECKING:
    from ..context import RequestContext
    from .config import GuardrailSpec
    from .pii import MaskSession, StreamRestorer
    from .registry import Checker


class GuardrailBlocked(BadRequest):
    """A guardrail refused the request or the answer: 400 in the client's dialect, never a 5xx."""

    def __init__(self, guardrail: str, what: str) -> None:
        super().__init__(f"blocked by guardrail '{guardrail}': {what}", code="content_policy_violation")
        self.type = "invalid_request_error"
        self.kind = "guardrail"


class GuardrailFailed(LockgateError):
    """A guardrail could not answer and fails closed: 503."""

    def __init__(self, guardrail: str, reason: str) -> None:
        super().__init__(f"guardrail '{guardrail}' could not check the request ({reason})", status=503,
                         code="guardrail_unavailable")


@dataclass
class Result:
    name: str
    phase: str
    verdict: str  # passed, masked, blocked, failed
    detections: list[dict[str, Any]] = field(default_factory=list)
    ms: float = 0.0

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "phase": self.phase, "verdict": self.verdict, "detections": self.detections,
                "ms": round(self.ms, 3)}


class GuardRun:
    def __init__(self, ctx: RequestContext, checkers: dict[str, Checker], reversible: frozenset[str],
                 whole: frozenset[str] = frozenset()) -> None:
        self.ctx = ctx
        self.checkers = checkers
        self.reversible = reversible
        self.whole = whole  # guardrails that check all the text at once (sizes, JSON answers)
        self.sessions: dict[str, MaskSession] = {}  # this request's reversible maps (never shared)
        self.restore = False  # output_parse_pii: this request's tokens are restored in the answer
        self.results: list[Result] = []

    def note(self, name: str, phase: str) -> None:
        self.results.append(Result(name, phase, "passed"))

    def records(self) -> list[dict[str, Any]]:
        return [r.record() for r in self.results]

    # ------------------------------------------------------------------ requests

    async def check_request(self, specs: list[GuardrailSpec], phase: str, rewrite: bool) -> None:
        """Every text of the request through the guardrails: the external ones (a network call each)
        concurrently, then the in-process ones in order; masks in place when ``rewrite``."""
        external = [s for s in specs if self.external(s)]
        if external:
            await asyncio.gather(*(self._check(s, phase, self._request_slots(s), rewrite, "input") for s in external))
        for spec in specs:
            if spec not in external:
                await self._check(spec, phase, self._request_slots(spec), rewrite, "input")

    def _request_slots(self, spec: GuardrailSpec) -> list[Slot]:
        ctx = self.ctx
        slots = request_slots(ctx.route, ctx.body)
        if spec.params.get("skip_system_message"):
            slots = [s for s in slots if not _is_system(s, ctx.body)]
        if spec.name in self.whole:  # one check over every text (the joined copy is never written back)
            slots = [Slot(["\n".join(s.get() for s in slots)], 0)]
        return slots

    def external(self, spec: GuardrailSpec) -> bool:
        return hasattr(self.checkers[spec.name], "acheck") and spec.name not in self.reversible

    async def _check(self, spec: GuardrailSpec, phase: str, slots: list[Slot], rewrite: bool, source: str) -> None:
        started = perf_counter()
        result = Result(spec.name, phase, "passed")
        self.results.append(result)
        rewrite = rewrite and spec.name not in self.whole
        try:
            for slot in slots:
                verdict = await self._averdict(spec, slot.get(), source)
                result.detections += [{"type": d.type, "start": d.start, "end": d.end} for d in verdict.detections]
                if verdict.action == "block":
                    result.verdict = "blocked"
                    raise GuardrailBlocked(spec.name, verdict.message or _found(verdict))
                if verdict.action == "mask" and rewrite:
                    if self.ctx.unmasked_body is None and phase != "post_call":  # the cache keys on the original
                        self.ctx.unmasked_body = orjson.loads(orjson.dumps(self.ctx.body))
                    slot.set(verdict.text)
                    result.verdict = "masked"
        except GuardrailBlocked:
            raise
        except Exception as exc:  # noqa: BLE001 - a checker that cannot answer: fail closed unless told not to
            result.verdict = "failed"
            if not spec.fail_open:
                raise GuardrailFailed(spec.name, type(exc).__name__) from None
        finally:
            result.ms = (perf_counter() - started) * 1000

    async def _averdict(self, spec: GuardrailSpec, text: str, source: str) -> Verdict:
        checker = self.checkers[spec.name]
        if self.external(spec):
            return await checker.acheck(text, source=source)  # type: ignore[attr-defined]
        return self._verdict(spec, text)

    def _verdict(self, spec: GuardrailSpec, text: str) -> Verdict:
        if spec.name in self.reversible:
            return self.session(spec).mask(text)
        if spec.type == "lockgate_json_output" and spec.params.get("json_schema") is None:
            schema = _asked_schema(self.ctx.body)
            if schema is not None:  # the request's own response_format schema
                from .output_schema import JsonSchemaCheck

                return JsonSchemaCheck(schema).check(text)
        return self.checkers[spec.name].check(text)

    def session(self, spec: GuardrailSpec) -> MaskSession:
        session = self.sessions.get(spec.name)
        if session is None:
            from .pii import MaskSession

            session = self.sessions[spec.name] = MaskSession(self.checkers[spec.name])  # type: ignore[arg-type]
        return session

    # ------------------------------------------------------------------ whole answers

    async def check_answer(self, specs: list[GuardrailSpec], body: bytes) -> bytes:
        """A non-streamed answer (the client's dialect): restored, checked; the same bytes if unchanged."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(data, dict):
            return body
        slots = answer_slots(self.ctx.route, data)
        before = [s.get() for s in slots]
        self._restore(slots)
        text_slots = [s for s in slots if not s.json]
        for spec in specs:
            # a whole-answer check (JSON output) sees the answer's text, not its tool-call arguments
            await self._check(spec, "post_call", text_slots if spec.name in self.whole else slots, True, "output")
        if [s.get() for s in slots] == before:
            return body
        return orjson.dumps(data)

    def _restore(self, slots: list[Slot]) -> None:
        if not self.restore:
            return
        for session in self.sessions.values():
            for slot in slots:
                slot.set(session.restore_json(slot.get()) if slot.json else session.restore(slot.get()))

    # ------------------------------------------------------------------ streams

    def stream_filter(self, specs: list[GuardrailSpec]) -> StreamFilter:
        hold = max([s.hold_back_chars for s in specs] or [0])
        return StreamFilter(self, specs, hold)


def _asked_schema(body: dict[str, Any]) -> Any:
    """``response_format: {type: json_schema, json_schema: {schema}}`` (Chat) or ``text.format`` (Responses)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    inner = fmt.get("json_schema")
    return (inner if isinstance(inner, dict) else fmt).get("schema")


def _is_system(slot: Slot, body: dict[str, Any]) -> bool:
    holder = slot.holder
    if holder is body:
        return True
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            content = message.get("content")
            if holder is message or holder is content or (isinstance(content, list) and holder in content):
                return True
    return False


def _found(verdict: Verdict) -> str:
    kinds = sorted({d.type for d in verdict.detections})
    return "found " + ", ".join(kinds) if kinds else "refused"


class StreamFilter:
    """Canonical stream chunks through the answer's guardrails: content is held back ``hold`` characters
    so a detection is seen whole before any of it leaves; a block raises (the stream ends with an error
    event in the client's dialect, no normal end).  Reversible tokens are restored, also split across
    chunks.  Tool-call argument deltas are restored (not checked) as they come."""

    def __init__(self, run: GuardRun, specs: list[GuardrailSpec], hold: int) -> None:
        self.run = run
        self.specs = specs
        self.hold = hold
        self.text: dict[int, str] = {}  # per choice: text not yet released
        self.sent: dict[int, str] = {}  # per choice: text released (kept only for whole-answer checks)
        self.restorers: dict[tuple[str, int, int], StreamRestorer] = {}
        for spec in specs:
            self.run.results.append(Result(spec.name, "post_call", "passed"))
        self.results = self.run.results[-len(specs):] if specs else []

    async def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out = copy.copy(chunk)
        for choice in out.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            index = int(choice.get("index") or 0)
            if isinstance(delta.get("content"), str):
                pending = self.text.get(index, "") + self._restored(("c", index, 0), delta["content"], False)
                release, keep = await self._release(index, pending, final=bool(choice.get("finish_reason")))
                self.text[index] = keep
                delta["content"] = release
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    key = ("t", index, int(call.get("index") or 0))
                    fn["arguments"] = self._restored(key, fn["arguments"], True)
            if choice.get("finish_reason"):
                rest = self.text.pop(index, "") + self._flush(("c", index, 0))
                if rest:
                    release, _ = await self._release(index, rest, final=True)
                    delta["content"] = (delta.get("content") or "") + release
        return [out]

    async def finish(self) -> list[dict[str, Any]]:
        tail = []
        for index, text in list(self.text.items()):
            release, _ = await self._release(index, text + self._flush(("c", index, 0)), final=True)
            if release:
                tail.append({"choices": [{"index": index, "delta": {"content": release}, "finish_reason": None}]})
        self.text.clear()
        return tail

    def _restored(self, key: tuple[str, int, int], text: str, in_json: bool) -> str:
        if not self.run.restore or not self.run.sessions:
            return text
        restorer = self.restorers.get(key)
        if restorer is None:
            restorer = self.restorers[key] = _chain(self.run.sessions.values(), in_json)
        return restorer.feed(text)

    def _flush(self, key: tuple[str, int, int]) -> str:
        restorer = self.restorers.pop(key, None)
        return restorer.flush() if restorer is not None else ""

    async def _release(self, index: int, text: str, final: bool) -> tuple[str, str]:
        """(what may leave now, what stays held back), after the checks over the whole pending text."""
        cut = len(text) if final else max(0, len(text) - self.hold)
        if not text:
            return "", ""
        masking = []
        for spec, result in zip(self.specs, self.results, strict=True):
            whole = spec.name in self.run.whole
            if whole and not final:
                continue  # a whole-answer check runs once, on the whole text
            started = perf_counter()
            verdict = await self.run._averdict(spec, self.sent.get(index, "") + text if whole else text, "output")
            result.ms += (perf_counter() - started) * 1000
            if verdict.action == "block":
                result.verdict = "blocked"
                result.detections += [{"type": d.type, "start": d.start, "end": d.end} for d in verdict.detections]
                raise GuardrailBlocked(spec.name, verdict.message or _found(verdict))
            for d in verdict.detections:
                if d.start < cut < d.end:
                    cut = d.start  # never let part of a detection out before it is whole
            if verdict.action == "mask":
                masking.append((spec, result))
        release, keep = text[:cut], text[cut:]
        for spec, result in masking:  # mask what leaves now (what stays is checked again with what follows)
            verdict = await self.run._averdict(spec, release, "output")
            if verdict.action == "mask":
                result.verdict = "masked"
                result.detections += [{"type": d.type, "start": d.start, "end": d.end} for d in verdict.detections]
                release = verdict.text
        if self.run.whole:
            self.sent[index] = self.sent.get(index, "") + release
        return release, keep


class _Chained:
    def __init__(self, restorers: list[StreamRestorer]) -> None:
        self.restorers = restorers

    def feed(self, text: str) -> str:
        for r in self.restorers:
            text = r.feed(text)
        return text

    def flush(self) -> str:
        text = ""
        for r in self.restorers:
            text = r.feed(text) + r.flush()
        return text


def _chain(sessions: Any, in_json: bool) -> StreamRestorer:
    return _Chained([s.restorer(in_json=in_json) for s in sessions])  # type: ignore[return-value]
