"""The guardrails stage (the config's ``guardrails:`` list): checks on the way in and on the way out.

``before`` (ahead of the cache, so a cached answer is guarded too):
    which guardrails apply (``active``: the policy below), then
    pre_call     in order, on every text of the request; a block is a 400 in the client's dialect, a mask
                 rewrites the request (the cache keys on the request as the client sent it)
    during_call  the same checks, started now, running while the provider answers; the answer waits for
                 them before its first byte (a block then replaces it; the provider's cost is recorded)
    post_call    registered on the answer: a whole answer is checked (and restored) before it goes out;
                 a stream is translated to canonical chunks and filtered as it flows, ``hold_back_chars``
                 held back (``guardrails.run.StreamFilter``)
    logging_only recorded only: Lockgate logs no prompt or answer text anywhere

Policy (one precedence): the guardrails with ``default_on``, plus those attached by an admin to the key
(``guardrails`` of /key/generate, kept in its metadata), its team (the same on /team/new) or the model
(``litellm_params.guardrails`` of any deployment of the group), plus those the request names (body
``guardrails: [...]`` or ``metadata.guardrails``).  A request may add guardrails; it may switch one off
(``guardrails: {"<name>": false}``) only when the key or its team has ``permissions.modify_guardrails``,
else 403.  Every response names the applied ones in ``x-litellm-applied-guardrails``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, PermissionDenied
from ..governance.types import Principal
from ..guardrails.run import GuardRun

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..gateway import Gateway
    from ..guardrails.config import GuardrailSpec
    from ..guardrails.registry import Checker
    from ..http import Receive, Send

log = logging.getLogger("lockgate.guardrails")


class GuardrailStage:
    name = "guardrails"

    def __init__(self, gw: Gateway, specs: list[GuardrailSpec]) -> None:
        from ..guardrails.registry import TYPES

        self.specs = {s.name: s for s in specs}
        self.defaults = [s.name for s in specs if s.default_on]
        # presidio masks reversibly in process; with presidio_analyzer_api_base a server answers (placeholders)
        self.reversible = frozenset(s.name for s in specs
                                    if TYPES[s.type].reversible and not s.params.get("presidio_analyzer_api_base"))
        self.output_only = frozenset(s.name for s in specs if TYPES[s.type].output_only)
        self.whole = frozenset(s.name for s in specs if TYPES[s.type].whole)
        self.checkers: dict[str, Checker] = {s.name: TYPES[s.type].build(s, gw.upstream) for s in specs}
        self.model_guardrails: dict[str, list[str]] = {}
        for dep in gw.settings.deployments:
            for name in dep.guardrails:
                if name not in self.specs:
                    raise ValueError(f"model {dep.model_name!r}: unknown guardrail {name!r}")
                self.model_guardrails.setdefault(dep.model_name, []).append(name)

    async def start(self) -> None:
        for checker in self.checkers.values():  # load models and patterns now, not in a request
            warm = getattr(checker, "warm", None)
            if warm is not None:
                await asyncio.to_thread(warm)

    # ------------------------------------------------------------------ policy

    def active(self, ctx: RequestContext) -> list[GuardrailSpec]:
        names = list(self.defaults)
        admin: list[str] = []
        principal = ctx.principal
        allowed_off = principal == "master"
        if isinstance(principal, Principal):
            for meta in (principal.key.metadata, principal.team.metadata if principal.team else None):
                if isinstance(meta, dict):
                    admin += [n for n in meta.get("guardrails") or [] if isinstance(n, str)]
                    perms = meta.get("permissions")
                    allowed_off = allowed_off or (isinstance(perms, dict) and perms.get("modify_guardrails") is True)
        admin += self.model_guardrails.get(ctx.model_group, [])
        names += admin
        asked = ctx.body.pop("guardrails", None)
        meta = ctx.body.get("metadata")
        if asked is None and isinstance(meta, dict) and "guardrails" in meta:
            asked = meta["guardrails"]
        off: set[str] = set()
        if isinstance(asked, list):
            names += [self._known(n) for n in asked]
        elif isinstance(asked, dict):
            for name, on in asked.items():
                self._known(name)
                if on is False:
                    off.add(name)
                else:
                    names.append(name)
        elif asked is not None:
            raise BadRequest("field 'guardrails' must be a list of guardrail names", param="guardrails")
        if off & (set(self.defaults) | set(admin)) and not allowed_off:
            name = sorted(off & (set(self.defaults) | set(admin)))[0]
            raise PermissionDenied(f"this key may not switch off the guardrail {name!r} "
                                   "(needs permissions.modify_guardrails)")
        seen: dict[str, GuardrailSpec] = {}
        for name in names:
            if name not in off and name not in seen:
                seen[name] = self.specs[name]
        return list(seen.values())

    def _known(self, name: Any) -> str:
        if not isinstance(name, str) or name not in self.specs:
            raise BadRequest(f"unknown guardrail {name!r} (GET /guardrails/list names them)", param="guardrails")
        return name

    # ------------------------------------------------------------------ the request

    async def before(self, gw: Gateway, ctx: RequestContext, send: Send, receive: Receive) -> bool:
        active = self.active(ctx)
        if not active:
            return False
        ctx.response_headers.append((b"x-litellm-applied-guardrails", ",".join(s.name for s in active).encode()))
        run = GuardRun(ctx, self.checkers, self.reversible, self.whole)
        ctx.guardrails = run
        tags = ctx.body.get("tags") if isinstance(ctx.body.get("tags"), list) else None
        phases: dict[str, list[GuardrailSpec]] = {"pre_call": [], "during_call": [], "post_call": [],
                                                  "logging_only": []}
        for spec in active:
            if spec.name in self.output_only:  # output validation: on the answer, whatever the mode says
                phases["post_call"].append(spec)
                continue
            for mode in spec.modes_for(tags):
                phases[mode].append(spec)
        if phases["pre_call"]:
            await run.check_request(phases["pre_call"], "pre_call", rewrite=True)
        if phases["during_call"]:  # alongside the provider call; the answer waits for it
            task = asyncio.ensure_future(run.check_request(phases["during_call"], "during_call", False))
            task.add_done_callback(_retrieved)  # the answer may never come (a provider error): no warning then
            ctx.gates = [*(ctx.gates or ()), task]
        post = phases["post_call"]
        restoring = [s for s in active if s.name in self.reversible and s.params.get("output_parse_pii")]
        run.restore = bool(restoring)
        if post or restoring:
            if ctx.stream:
                ctx.force_translate = True  # the answer as canonical chunks, checked as it flows
                ctx.chunk_filters = [*(ctx.chunk_filters or ()), run.stream_filter(post)]
            else:
                ctx.rewrites = [*(ctx.rewrites or ()), lambda body: run.check_answer(post, body)]
        for spec in phases["logging_only"]:
            run.note(spec.name, "logging_only")
        return False


def _retrieved(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
