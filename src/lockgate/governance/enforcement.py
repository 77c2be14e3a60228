"""``Governance``: the logic of the pipeline's authenticate, authorize, admit and account stages.

Hot path (per model request), all in process unless Redis is configured:

    authenticate  sha256(key) -> Principal from a TTL cache over store.principal_for_key
    authorize     key ∩ user ∩ team ∩ organization: blocked, expiry, routes, models, IPs; end user blocked
    admit         one Counters.admit call (one Lua round trip with Redis): every rpm / tpm window,
                  parallel slot and budget of every level, all-or-nothing
    finish        (before the last bytes of the answer) cost -> SpendRecord -> journal (one write())
    account       (after the answer) Counters.settle: tpm correction, running spend, slot release

Database writes happen only in the background (``SpendWriter``, budget resets).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

import orjson

from .. import background
from ..errors import AuthenticationError, BudgetExceeded, PermissionDenied, RateLimited
from ..routing.rules import request_tags
from ..state.counters import (
    BUDGET_KIND,
    PARALLEL_KIND,
    SPEND_STREAM,
    WINDOW_KIND,
    Admission,
    Item,
    LocalCounters,
    RedisCounters,
)
from ..state.counters_client import SOCKET_ENV, RoutingShare, ServiceCounters
from ..state.journal import encode
from ..state.timetext import EpochText
from . import policy
from .cache import TTLCache
from .cost import Price, is_priced, price_for, unpriced
from .types import Entity, Limits, Principal, SpendRecord

if TYPE_CHECKING:
    from ..auth.jwt_auth import JWTAuth
    from ..context import RequestContext
    from ..gateway import Gateway

log = logging.getLogger("lockgate.governance")

NO_COST_ROUTES = ("count_tokens",)
SETTLE_TIMEOUT = 5.0  # seconds the answer's end may wait for shared counters
_STREAM_TRUE, _STREAM_FALSE = '{"stream":true}', '{"stream":false}'
# management kind -> the start of its counters' names (as ``_principal_plan`` and ``_items`` name them)
SPEND_COUNTER_PREFIX = {"key": "k:", "user": "u:", "team": "t:", "organization": "o:", "customer": "c:"}


class Grant:
    """What governance keeps for one request (``ctx.grant``)."""

    __slots__ = ("admission", "cost", "estimate", "gov", "items", "journaled", "key_budget_index", "settled")

    def __init__(self, gov: Governance) -> None:
        self.gov = gov
        self.items: list[Item] = []
        self.admission: Admission | None = None
        self.estimate = 0
        self.journaled = False
        self.settled = False
        self.cost = 0.0
        self.key_budget_index = -1

    def finish(self, ctx: RequestContext) -> Awaitable[None] | None:
        """Called by the call stage right before the final bytes of the answer go out; what it
        returns (shared counters: the settle round trip) is awaited before they go."""
        return self.gov.finish(ctx, self)


class Governance:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        s = gw.settings
        opts = s.governance
        self.store: Any = getattr(gw, "store", None)
        self.catalog = policy.ModelCatalog(gw.groups)
        self.master_hash = hash_key(s.master_key) if s.master_key else None
        self.cache_ttl = float(opts.get("key_cache_ttl", 5))
        self.keys: TTLCache[Principal] = TTLCache(self._load_principal, self.cache_ttl)
        self.customers: TTLCache[Entity] = TTLCache(self._load_customer, self.cache_ttl)
        self.prefix = str(opts.get("redis_key_prefix", "lockgate:"))
        self.channel = self.prefix + "invalidate"
        self.lease = float(opts.get("parallel_slot_lease", s.request_timeout + 60))
        self.reset_interval = float(opts.get("budget_reset_interval", 10))
        self.reset_failures = 0  # budget resets the database refused (alerts: db_exceptions)
        self.counters: Any = LocalCounters()
        # counters in another process (Redis, or the counters service of ``serve --workers N``): settled
        # before the answer's last bytes, so the client's next request (maybe on another worker or
        # instance) already sees its spend and its free slot
        self.remote = False
        self.spend_stream: Any = None  # state.spend_stream.SpendStream in shared mode (Redis + PostgreSQL)
        self.reject_unpriced = bool(s.reject_unpriced_for_budgets)
        self._unpriced_groups: dict[str, list[str]] = {}
        self.writer: Any = None
        self._text = EpochText()  # spend record times, as the embedded database stores them
        # by (deployment id, upstream model): a wildcard's deployments share one id, not one price
        self.prices: dict[tuple[str, str], Price] = {(dep.id, dep.model): price_for(dep) for dep in s.deployments}
        self.group_limits: dict[str, list[tuple[str, int]]] = _group_limits(gw.groups)
        self.proxy: Limits | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._pubsub: Any = None
        self.jwt: JWTAuth | None = None  # general_settings.enable_jwt_auth (auth/jwt_auth.py), in start()

    @property
    def enabled(self) -> bool:
        """Virtual keys, budgets and spend logs need a store and a master key."""
        return self.store is not None and self.master_hash is not None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.store = getattr(self.gw, "store", None)
        s = self.gw.settings
        for dep in unpriced(s.deployments):
            log.warning("deployment %s (model_name %r, model %s/%s) has no price: its requests cost 0 and escape "
                        "every budget; set model_info.input_cost_per_token / output_cost_per_token%s", dep.id,
                        dep.model_name, dep.provider, dep.model,
                        "" if self.reject_unpriced else " (or general_settings.reject_unpriced_for_budgets)")
        if s.redis_url:
            counters = RedisCounters(s.redis_url, self.prefix)
            await counters.ping()  # fail at start, not on the first request
            self.counters = counters
            self.remote = True
            self._tasks.append(asyncio.get_running_loop().create_task(self._subscribe(), name="lockgate-invalidate"))
        elif os.environ.get(SOCKET_ENV):  # a worker of ``serve --workers N``: the supervisor's counters
            service = ServiceCounters(os.environ[SOCKET_ENV])
            await service.connect()
            service.listeners.append(self._on_worker_message)
            self.counters = service
            self.remote = True
            if self.gw.router.shared is None:
                # the router only calls publish_cooldown and close on it
                self.gw.router.shared = RoutingShare(service)  # type: ignore[assignment]
        if self.store is None:
            return
        if s.jwt_auth is not None and self.master_hash is not None:
            from ..auth.jwt_auth import JWTAuth

            self.jwt = JWTAuth(self.gw, s.jwt_auth, self.cache_ttl)
        if hasattr(self.store, "proxy_budget"):
            self.proxy = await self.store.proxy_budget()
        from ..state.spend_writer import SpendWriter

        opts = s.governance
        self.writer = SpendWriter(
            self.store,
            journal_dir(s),
            # embedded SQLite: small, frequent batches (the writes run on this machine's cores, and a
            # long batch stalls requests in flight); PostgreSQL: the work is the server's
            interval=float(opts.get("spend_batch_interval_ms",
                                    100 if getattr(self.store, "dialect", "") == "postgresql" else 10)) / 1000,
            batch_size=int(opts.get("spend_batch_size", 500)),
            rotate_bytes=int(float(opts.get("spend_journal_rotate_mb", 1)) * 1024 * 1024),
        )
        await self.writer.replay()
        self.writer.start()
        if isinstance(self.counters, RedisCounters) and getattr(self.store, "dialect", "") == "postgresql":
            from ..state.spend_stream import SpendStream, consumer_name

            self.spend_stream = SpendStream(
                self.counters.client, self.store, self.prefix + SPEND_STREAM,
                batch_size=int(opts.get("spend_batch_size", 500)),
                interval=float(opts.get("spend_batch_interval_ms", 100)) / 1000,
                claim_idle=float(opts.get("spend_stream_claim_idle_s", 10)),
                consumer=consumer_name(str(self.writer.directory.resolve()), self.writer.journal.index),
            )
            await self.spend_stream.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._reset_budgets(), name="lockgate-budgets"))
        self.gw.change_listeners.append(self.on_change)

    async def close(self) -> None:
        await background.stop(self._tasks)
        if self.spend_stream is not None:
            await self.spend_stream.close()
        if self.writer is not None:
            await self.writer.close()
        await self.counters.close()

    # ------------------------------------------------------------------ invalidation

    async def on_change(self, kind: str, ident: str) -> None:
        """A management change: drop cached principals here and, through Redis, everywhere."""
        self.invalidate(kind, ident)
        if isinstance(self.counters, ServiceCounters):
            self.counters.publish(["invalidate", kind, ident])
        elif isinstance(self.counters, RedisCounters):
            try:
                await self.counters.client.publish(self.channel, f"{kind}:{ident}")
            except Exception as exc:  # noqa: BLE001 - the TTL still bounds staleness
                log.warning("could not publish an invalidation (%s)", type(exc).__name__)

    def invalidate(self, kind: str, ident: str | None = None) -> None:
        if kind == "customer":
            self.customers.invalidate(ident)
        elif kind == "key" and ident and len(ident) == 64:
            self.keys.invalidate(ident)
        else:  # a user / team / organization change touches every key under it: drop them all
            self.keys.invalidate()
            self.customers.invalidate()
            if self.jwt is not None:
                self.jwt.invalidate()

    async def reset_spend(self, kind: str, ident: str, row: dict[str, Any]) -> None:
        """An administrative spend change (``spend`` in ``/key/update``, ``/team/update``...): the running
        spend counter of the current budget period restarts from the stored value.  (The counter is
        created from storage only when it does not exist yet, so without this the next request would
        still be refused for a budget an admin just reset.)"""
        prefix = SPEND_COUNTER_PREFIX.get(kind)
        if prefix is None:
            return
        limits = Limits(max_budget=row.get("max_budget"), budget_duration=row.get("budget_duration"),
                        budget_reset_at=row.get("budget_reset_at"))
        items: list[Item] = []
        if _budget_item(items, prefix + ident, "", limits, 0.0, time()) is None:
            return  # no budget: no counter
        try:
            await self.counters.reset(items[0].key, float(row.get("spend") or 0.0))
        except Exception as exc:  # noqa: BLE001 - the counter then expires and reloads from storage
            log.warning("could not reset a running spend counter (%s)", type(exc).__name__)

    def _on_worker_message(self, message: Any) -> None:
        """From another worker of this ``serve`` (through the counters service)."""
        if message is None:  # reconnected: whatever was said meanwhile is unknown
            self.keys.invalidate()
            self.customers.invalidate()
        elif message[0] == "invalidate":
            self.invalidate(message[1], message[2] or None)
        elif message[0] == "cooldown":
            self.gw.router.cool_down(message[1], float(message[2]), share=False)

    async def _subscribe(self) -> None:
        """Invalidations from every instance, for good (reconnecting); after each (re)subscription the
        cached keys are dropped: invalidations published while the connection was down are lost."""
        from ..state import pubsub

        assert isinstance(self.counters, RedisCounters)
        self._pubsub = pubsub.listener_client(self.counters.client, self.prefix + "invalidate-listener")
        try:
            await pubsub.listen(self._pubsub, self.channel, self._on_invalidation, self._drop_cached, "invalidation")
        finally:
            await self._pubsub.aclose()

    def _on_invalidation(self, data: bytes) -> None:
        kind, _, ident = data.decode().partition(":")
        self.invalidate(kind, ident or None)

    async def _drop_cached(self) -> None:
        self.keys.invalidate()
        self.customers.invalidate()
        if self.jwt is not None:
            self.jwt.invalidate()

    async def _reset_budgets(self) -> None:
        while True:
            await asyncio.sleep(self.reset_interval)
            try:
                await self.reset_budgets_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                self.reset_failures += 1
                log.warning("budget reset failed (%s)", type(exc).__name__)

    async def reset_budgets_once(self) -> int:
        """One tick of the budget loop.  Cached keys are dropped only when a budget was reset (a period
        that ended is already counted from 0 by ``_budget_item``; dropping every key each tick made all
        of them reload from the database every 10 s)."""
        reset = await self.store.reset_due_budgets(datetime.now(UTC))
        if hasattr(self.store, "proxy_budget"):
            self.proxy = await self.store.proxy_budget()
        if reset:
            self.keys.invalidate()  # new budget_reset_at values -> new running-spend counters
            self.customers.invalidate()
            if self.jwt is not None:
                self.jwt.invalidate()
        if isinstance(self.counters, LocalCounters):
            self.counters.prune()
        return reset

    async def _load_principal(self, token_hash: str) -> Principal | None:
        return await self.store.principal_for_key(token_hash)

    async def _load_customer(self, end_user: str) -> Entity | None:
        return await self.store.customer(end_user)

    # ------------------------------------------------------------------ authenticate

    async def authenticate(self, ctx: RequestContext, key: str) -> None:
        """``key`` is not the master key: resolve it as a virtual key."""
        if not self.enabled:
            raise AuthenticationError("invalid API key")
        if self.jwt is not None and key.startswith("eyJ") and key.count(".") == 2:  # a JWT (docs/sso.md)
            ctx.principal = await self.jwt.principal(key)
            return
        token_hash = hash_key(key)
        principal = await self.keys.get(token_hash)
        if principal is None or not hmac.compare_digest(principal.key.token_hash, token_hash):
            raise AuthenticationError("invalid API key")
        ctx.principal = principal

    # ------------------------------------------------------------------ authorize

    async def authorize(self, ctx: RequestContext) -> None:
        p = ctx.principal
        if isinstance(p, Principal):
            policy.check_key_state(p, datetime.now(UTC))
            policy.check_route(p, ctx.route, ctx.model, ctx.stream)
            policy.check_model(p, self.catalog, ctx.model)
            policy.check_ip(p, ctx.client_ip)
        end_user = _end_user(ctx)
        if isinstance(end_user, str) and end_user and self.store is not None:
            customer = await self.customers.get(end_user)
            policy.check_customer(customer, end_user)

    def may_use(self, principal: Any, model: str) -> bool:
        """Model access only (for ``/v1/models``): the master key may use every model."""
        if not isinstance(principal, Principal):
            return True
        try:
            policy.check_model(principal, self.catalog, model)
        except PermissionDenied:
            return False
        return True

    # ------------------------------------------------------------------ admit

    async def admit(self, ctx: RequestContext) -> None:
        grant = Grant(self)
        ctx.grant = grant
        items = self._items(ctx, grant)
        if not items:
            return
        if self.reject_unpriced and any(it.kind == BUDGET_KIND for it in items):
            self._refuse_unpriced(ctx)
        grant.items = items
        adm = await self.counters.admit(items, ctx.request_id, self.lease)
        grant.admission = adm
        if isinstance(ctx.principal, Principal):
            ctx.response_headers.extend(_ratelimit_headers(items, adm))
        if adm.ok:
            return
        grant.settled = True  # nothing was taken: nothing to give back
        item = items[adm.failed]
        if item.kind == BUDGET_KIND:
            raise BudgetExceeded(
                f"{item.label} exceeded: spend {adm.values[adm.failed]:.6g} >= max_budget {item.limit:.6g}"
            )
        retry = max(1, math.ceil(adm.reset)) if item.kind == WINDOW_KIND else 1
        what = "parallel request limit" if item.kind == PARALLEL_KIND else "limit"
        raise RateLimited(
            f"{item.label} exceeded ({what}: {item.limit:g})",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry)},
        )

    def _refuse_unpriced(self, ctx: RequestContext) -> None:
        """``reject_unpriced_for_budgets``: a request under a budget must not reach a deployment without a
        price (its spend would be 0): the model group, its fallbacks and the body's fallbacks."""
        router = self.gw.router
        group = router.resolve(ctx)
        names = self._unpriced_groups.get(group)
        if names is None:
            names = _unpriced_reachable(router, [group])
            if len(self._unpriced_groups) < 10_000:
                self._unpriced_groups[group] = names
        requested = ctx.body.get("fallbacks")
        if isinstance(requested, list) and requested:
            names = names + _unpriced_reachable(router, [g for g in requested if isinstance(g, str)])
        if names:
            raise PermissionDenied(
                f"model {ctx.model!r} can be served by a deployment without a price ({', '.join(sorted(set(names)))}); "
                "requests under a budget may not use it (general_settings.reject_unpriced_for_budgets)",
                code="unpriced_model",
            )

    def _items(self, ctx: RequestContext, grant: Grant) -> list[Item]:
        items: list[Item] = []
        model = ctx.model
        p = ctx.principal
        now = time()
        tokens_needed = False
        if isinstance(p, Principal):
            plan = p.plans.get(model)
            if plan is None or plan[2] <= now:
                plan = p.plans[model] = _principal_plan(p, model, now)
            items.extend(plan[0])
            grant.key_budget_index = plan[1]
            tokens_needed = plan[3]
        end_user = _end_user(ctx)
        if isinstance(end_user, str) and end_user and self.store is not None:
            ent = self.customers.peek(end_user)  # loaded by authorize
            if ent is not None:
                cid = "c:" + end_user
                tokens_needed |= _limit_items(items, cid, "end user", ent.limits)
                _budget_item(items, cid, "end user budget", ent.limits, ent.limits.spend, now)
        proxy = self.proxy
        if proxy is not None and proxy.max_budget is not None:
            _budget_item(items, "proxy", "proxy budget", proxy, proxy.spend, now)
        for kind, limit in self.group_limits.get(model, ()):
            if kind == "rpm":
                items.append(Item(WINDOW_KIND, f"g:{model}:rpm", limit, 1, f"deployment rpm limit of model {model}"))
            else:
                items.append(Item(WINDOW_KIND, f"g:{model}:tpm", limit, 0, f"deployment tpm limit of model {model}",
                                  "tokens"))
                tokens_needed = True
        if tokens_needed:
            grant.estimate = estimate = estimate_tokens(ctx.body)
            for i, it in enumerate(items):
                if it.header == "tokens":  # a copy: the plan's items are shared by concurrent requests
                    items[i] = Item(it.kind, it.key, it.limit, estimate, it.label, it.header)
        return items

    # ------------------------------------------------------------------ finish / account

    def finish(self, ctx: RequestContext, grant: Grant) -> Awaitable[None] | None:
        """Cost -> SpendRecord -> journal.  Runs once, before the answer's last bytes are sent.

        With counters in another process it returns the settle round trip, which the caller awaits
        before those bytes (with Redis and PostgreSQL, the same Lua call carries the record to the
        shared spend stream).  In process it settles nothing here (``account`` does) and returns None.
        """
        if grant.journaled:
            return None
        grant.journaled = True
        record = self._record(ctx, grant)
        if self.remote and not grant.settled and (
                (grant.items and grant.admission is not None) or (record is not None and self.spend_stream)):
            return self._settle_remote(ctx, grant, record)
        if record is not None:
            self.writer.append(record)
        return None

    def _record(self, ctx: RequestContext, grant: Grant) -> SpendRecord | None:
        dep = ctx.deployment
        if ctx.route in NO_COST_ROUTES:
            return None
        if dep is None:
            if ctx.cache_hit is not None:
                return self._hit_record(ctx, grant)
            return self._refused_record(ctx, grant) if ctx.guardrails is not None else None
        usage = ctx.usage
        prices = self.prices
        price = prices.get((dep.id, dep.model))
        if price is None:
            price = price_for(dep)
            if len(prices) < 10_000:  # wildcard models named by clients: bounded
                prices[(dep.id, dep.model)] = price
        cost = price.cost(usage) if usage else 0.0
        grant.cost = cost
        if not ctx.stream:
            ctx.response_headers.append((b"x-lockgate-response-cost", repr(cost).encode()))
            spend = self._key_spend(ctx, grant)
            if spend is not None:
                ctx.response_headers.append((b"x-lockgate-key-spend", repr(spend + cost).encode()))
        if self.writer is None:
            return None
        p = ctx.principal
        usage = usage or {}
        details = usage.get("prompt_tokens_details")
        end = time()
        end_user = _end_user(ctx)
        meta: dict[str, Any] | None = None
        if isinstance(p, Principal):
            key = p.key
            api_key, user_id, team_id = None if p.jwt else key.token_hash, key.user_id, key.team_id
            org_id = key.organization_id or (p.organization.id if p.organization else None)
            meta = {"stream": ctx.stream, "key_alias": key.key_alias}
        else:
            # no master key: the record's api_key stays NULL, as before
            api_key, user_id, team_id, org_id = self.master_hash, None, None, None
        if ctx.stream and ctx.first_token_at is not None:  # the admin UI's time to first token (spend_rollup)
            meta = meta or {"stream": True}
            meta["ttft_ms"] = round((ctx.first_token_at - ctx.started) * 1000, 3)
        tags = request_tags(ctx)
        if tags:  # the admin UI's usage by tag
            meta = meta or {"stream": ctx.stream}
            meta["tags"] = sorted(tags)
        if ctx.guardrails is not None:  # per guardrail: phase, verdict, detections (types, offsets), ms
            meta = meta or {"stream": ctx.stream}
            meta["guardrails"] = ctx.guardrails.records()
        metadata = orjson.dumps(meta).decode() if meta is not None else _STREAM_TRUE if ctx.stream else _STREAM_FALSE
        return SpendRecord(
            ctx.request_id, api_key, user_id, team_id, org_id,
            end_user if isinstance(end_user, str) and end_user else None,
            ctx.model, dep.model, dep.id, ctx.provider.name if ctx.provider else dep.provider, ctx.route,
            usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0,
            (details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
            cost, ctx.status or 500, self._text(end - (perf_counter() - ctx.started)), self._text(end), metadata,
        )

    def _hit_record(self, ctx: RequestContext, grant: Grant) -> SpendRecord | None:
        """A response-cache hit: no provider spend, no tokens; the row says what it saved."""
        hit = ctx.cache_hit
        assert hit is not None
        grant.cost = 0.0
        if not ctx.stream:
            ctx.response_headers.append((b"x-lockgate-response-cost", b"0.0"))
        meta: dict[str, Any] = {"stream": ctx.stream, "cache_hit": True, "cache_key": hit.key,
                                "saved_cost": hit.cost, "saved_tokens": hit.tokens, "semantic": hit.semantic}
        return self._local_record(ctx, "cache", hit.model, meta)

    def _refused_record(self, ctx: RequestContext, grant: Grant) -> SpendRecord | None:
        """A request a guardrail refused before any provider call: a row, so the refusal is on record."""
        grant.cost = 0.0
        return self._local_record(ctx, "guardrail", None, {"stream": ctx.stream})

    def _local_record(self, ctx: RequestContext, provider: str, model: str | None,
                      meta: dict[str, Any]) -> SpendRecord | None:
        """A row for an answer no provider gave (cost 0, no tokens)."""
        if self.writer is None:
            return None
        p = ctx.principal
        end = time()
        end_user = _end_user(ctx)
        if ctx.guardrails is not None:
            meta["guardrails"] = ctx.guardrails.records()
        if isinstance(p, Principal):
            key = p.key
            api_key, user_id, team_id = None if p.jwt else key.token_hash, key.user_id, key.team_id
            org_id = key.organization_id or (p.organization.id if p.organization else None)
            meta["key_alias"] = key.key_alias
        else:
            api_key, user_id, team_id, org_id = self.master_hash, None, None, None
        return SpendRecord(
            ctx.request_id, api_key, user_id, team_id, org_id,
            end_user if isinstance(end_user, str) and end_user else None,
            ctx.model, model, None, provider, ctx.route, 0, 0, 0, 0.0, ctx.status or 200,
            self._text(end - (perf_counter() - ctx.started)), self._text(end), orjson.dumps(meta).decode(),
        )

    async def _settle_remote(self, ctx: RequestContext, grant: Grant, record: SpendRecord | None) -> None:
        """One round trip: counters settled and (shared spend) the record carried to Redis."""
        grant.settled = True  # before the await: release happens exactly once
        carried = encode(record) if record is not None and self.spend_stream is not None else None
        if record is not None and carried is None:
            self.writer.append(record)  # the counters service: the local journal (the shared file database)
        items = grant.items if grant.admission is not None else []
        usage = ctx.usage or {}
        delta = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0) - grant.estimate
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                if carried is not None:
                    await self.counters.settle(items, grant.admission, ctx.request_id, delta, grant.cost, carried)
                elif items:
                    await self.counters.settle(items, grant.admission, ctx.request_id, delta, grant.cost)
        except Exception as exc:  # noqa: BLE001 - slots expire with their lease; spend reloads from the store
            if carried is not None:
                assert record is not None
                self.writer.append(record)  # Redis unreachable: this instance's journal keeps the record
            log.warning("could not settle counters for request %s (%s)", ctx.request_id, type(exc).__name__)

    def _key_spend(self, ctx: RequestContext, grant: Grant) -> float | None:
        p = ctx.principal
        if not isinstance(p, Principal) or p.jwt:  # the master key, a JWT
            return None
        if grant.key_budget_index >= 0 and grant.admission is not None:
            return grant.admission.values[grant.key_budget_index]
        return p.key.limits.spend

    async def account(self, ctx: RequestContext) -> None:
        """After the request (answer sent, failed or client gone): journal if not yet, settle counters once."""
        grant = ctx.grant
        if grant is None:
            return
        if not grant.journaled:
            pending = self.finish(ctx, grant)
            if pending is not None:
                await pending
        if grant.settled or not grant.items or grant.admission is None:
            return
        grant.settled = True  # before the await: release happens exactly once
        usage = ctx.usage or {}
        actual = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
        try:
            await self.counters.settle(grant.items, grant.admission, ctx.request_id, actual - grant.estimate,
                                       grant.cost)
        except Exception as exc:  # noqa: BLE001 - slots expire with their lease; spend reloads from the store
            log.warning("could not settle counters for request %s (%s)", ctx.request_id, type(exc).__name__)


# ---------------------------------------------------------------------- helpers


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _end_user(ctx: RequestContext) -> Any:
    """The body's ``user``, else the end user a JWT names (``Principal.end_user``)."""
    user = ctx.body.get("user")
    if user is None:
        p = ctx.principal
        if isinstance(p, Principal):
            return p.end_user
    return user


def estimate_tokens(body: dict[str, Any]) -> int:
    """Reservation before the call: prompt characters / 4 + the requested output ceiling."""
    prompt = body.get("messages") or body.get("input") or body.get("prompt") or ""
    chars = len(orjson.dumps(prompt))
    if body.get("system"):
        chars += len(orjson.dumps(body["system"]))
    out = body.get("max_tokens") or body.get("max_completion_tokens") or 0
    return chars // 4 + (out if isinstance(out, int) else 0)


def _principal_plan(p: Principal, model: str, now: float) -> tuple[list[Item], int, float, bool]:
    """The counters of a virtual key and the entities above it for ``model``: (items, index of the key
    budget or -1, time the plan must be rebuilt (a budget period ends), whether token windows are in)."""
    items: list[Item] = []
    key = p.key
    kid = "k:" + key.token_hash
    tokens = _limit_items(items, kid, "key", key.limits)
    rpm = key.model_rpm_limit.get(model)
    if rpm is not None:
        items.append(Item(WINDOW_KIND, f"{kid}:m:{model}:rpm", rpm, 1, f"key rpm limit for model {model}", "requests"))
    tpm = key.model_tpm_limit.get(model)
    if tpm is not None:
        items.append(Item(WINDOW_KIND, f"{kid}:m:{model}:tpm", tpm, 0, f"key tpm limit for model {model}", "tokens"))
        tokens = True
    ends: list[float] = []
    key_budget_index = -1
    end = _budget_item(items, kid, "key budget", key.limits, key.limits.spend, now)
    if end is not None:
        key_budget_index = len(items) - 1
        ends.append(end)
    mb = key.model_max_budget.get(model)
    if mb is not None:
        mlim = Limits(max_budget=mb, budget_duration=key.limits.budget_duration,
                      budget_reset_at=key.limits.budget_reset_at)
        ends.append(_budget_item(items, f"{kid}:m:{model}", f"key budget for model {model}", mlim,
                                 key.model_spend.get(model, 0.0), now) or math.inf)
    for label, ent in (("user", p.user), ("team", p.team), ("organization", p.organization)):
        if ent is not None:
            eid = f"{label[0]}:{ent.id}"
            tokens |= _limit_items(items, eid, label, ent.limits)
            ends.append(_budget_item(items, eid, f"{label} budget", ent.limits, ent.limits.spend, now) or math.inf)
    return items, key_budget_index, min(ends, default=math.inf), tokens


def _limit_items(items: list[Item], eid: str, label: str, limits: Limits) -> bool:
    tokens = False
    if limits.rpm_limit is not None:
        items.append(Item(WINDOW_KIND, eid + ":rpm", limits.rpm_limit, 1, f"{label} rpm limit", "requests"))
    if limits.tpm_limit is not None:
        items.append(Item(WINDOW_KIND, eid + ":tpm", limits.tpm_limit, 0, f"{label} tpm limit", "tokens"))
        tokens = True
    if limits.max_parallel_requests is not None:
        items.append(Item(PARALLEL_KIND, eid + ":par", limits.max_parallel_requests, 0,
                          f"{label} parallel request limit"))
    return tokens


def _budget_item(items: list[Item], eid: str, label: str, limits: Limits, spend: float, now: float) -> float | None:
    """Append the budget's item; returns when its period ends (inf: never), None when there is no budget."""
    if limits.max_budget is None:
        return None
    reset = limits.budget_reset_at
    if reset is None:
        period, at = "0", math.inf
    else:
        at = reset.timestamp() if reset.tzinfo else reset.replace(tzinfo=UTC).timestamp()
        if at <= now and limits.budget_duration:
            # due but not reset in storage yet: this is already the next period, starting from 0
            from ..state import durations

            aware = reset if reset.tzinfo else reset.replace(tzinfo=UTC)
            at = durations.next_reset_after(aware, limits.budget_duration, datetime.fromtimestamp(now, UTC)).timestamp()
            spend = 0.0
        period = str(int(at))
        if at <= now:  # overdue without a duration: the same period for good
            at = math.inf
    items.append(Item(BUDGET_KIND, f"{eid}:spend:{period}", limits.max_budget, spend, label))
    return at


def _unpriced_reachable(router: Any, start: list[str]) -> list[str]:
    """``provider/model`` of every unpriced deployment in ``start`` and the groups it falls back to."""
    from ..errors import NotFound

    seen: set[str] = set()
    todo = list(start)
    out: list[str] = []
    while todo:
        group = todo.pop()
        if group in seen:
            continue
        seen.add(group)
        try:
            deps = router.deployments(group)
        except NotFound:
            continue
        out += [f"{d.provider}/{d.model}" for d in deps if not is_priced(d)]
        for table in (router.fallbacks, router.context_window_fallbacks, router.content_policy_fallbacks):
            todo += table.get(group, [])
        todo += router.default_fallbacks
    return out


def _group_limits(groups: dict[str, list[Any]]) -> dict[str, list[tuple[str, int]]]:
    """A model group whose every deployment sets rpm (tpm) admits at most their sum per minute."""
    out: dict[str, list[tuple[str, int]]] = {}
    for name, deps in groups.items():
        limits = []
        if deps and all(d.rpm for d in deps):
            limits.append(("rpm", sum(int(d.rpm) for d in deps)))
        if deps and all(d.tpm for d in deps):
            limits.append(("tpm", sum(int(d.tpm) for d in deps)))
        if limits:
            out[name] = limits
    return out


def _ratelimit_headers(items: list[Item], adm: Admission) -> list[tuple[bytes, bytes]]:
    """x-ratelimit-{limit,remaining,reset}-{requests,tokens}: of each kind, the window with the least left."""
    requests = tokens = None  # (limit, remaining)
    values = adm.values
    for i, it in enumerate(items):
        header = it.header
        if header is None:
            continue
        remaining = it.limit - values[i]
        if remaining < 0:
            remaining = 0.0
        if header == "requests":
            if requests is None or remaining < requests[1]:
                requests = (it.limit, remaining)
        elif tokens is None or remaining < tokens[1]:
            tokens = (it.limit, remaining)
    reset = b"%ds" % max(1, math.ceil(adm.reset))
    out = []
    if requests is not None:
        out += [(b"x-ratelimit-limit-requests", b"%d" % requests[0]),
                (b"x-ratelimit-remaining-requests", b"%d" % requests[1]), (b"x-ratelimit-reset-requests", reset)]
    if tokens is not None:
        out += [(b"x-ratelimit-limit-tokens", b"%d" % tokens[0]),
                (b"x-ratelimit-remaining-tokens", b"%d" % tokens[1]), (b"x-ratelimit-reset-tokens", reset)]
    return out


def journal_dir(settings: Any) -> Path:
    opts = settings.governance
    if opts.get("spend_journal_dir"):
        return Path(opts["spend_journal_dir"])
    base = settings.source.parent if getattr(settings, "source", None) else Path(os.getcwd())
    return base / "lockgate-journal"
