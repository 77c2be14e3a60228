"""Counters for admission: rate windows, parallel slots and budgets' running spend.

One interface, two implementations:

* ``LocalCounters`` (default): plain dicts in this process;
* ``RedisCounters`` (when Redis is configured): the same semantics in one Lua
  script, so every gateway process sharing the Redis shares one truth.

Semantics (identical in both):

* **window** items count requests or tokens in **fixed 60-second windows**
  aligned on the epoch minute (Redis' clock for ``RedisCounters``).  A request
  is refused when ``current + amount > limit``; for token windows a request is
  still let through when the window is empty (so one request larger than the
  whole limit is not refused forever).  The reservation is corrected after the
  call with ``settle`` (real tokens - estimate).
* **parallel** items hold one slot per request id with an expiry (the lease):
  a crashed instance's slots disappear when their lease ends.
* **budget** items compare the running spend with the budget: refused when
  ``spend >= limit``.  A running-spend counter is created at first use from the
  ``initial`` value the caller read from storage (``SETNX`` semantics) and is
  named after the budget period, so a new period starts a new counter.

``admit`` is all-or-nothing: either every item passed and every counter was
incremented, or nothing was incremented and the first failing item is named.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .resp import RespConnection

log = logging.getLogger("lockgate.counters")

WINDOW = 60  # seconds, fixed windows aligned on the epoch minute

WINDOW_KIND, PARALLEL_KIND, BUDGET_KIND = "w", "p", "b"
SPEND_STREAM = "spend"  # the Redis stream of spend records (shared mode), under the key prefix


@dataclass(slots=True)
class Item:
    """One counter to check (and increment) at admission."""

    kind: str  # "w" window, "p" parallel slot, "b" budget
    key: str  # counter name (without the instance prefix)
    limit: float
    amount: float = 1  # window: increment; parallel: unused; budget: initial spend when the counter is new
    label: str = ""  # what the rejection names: "key rpm limit", "team budget", ...
    header: str | None = None  # "requests" / "tokens": reported in x-ratelimit-* headers


@dataclass(slots=True)
class Admission:
    ok: bool
    failed: int = -1  # index of the first refused item
    values: list[float] = field(default_factory=list)  # per item, after admission (or current when refused)
    reset: float = 0.0  # seconds until the current window ends
    window: int = 0  # the window index the reservations went to


class Counters(Protocol):
    async def admit(self, items: list[Item], request_id: str, lease: float) -> Admission: ...

    async def settle(
        self, items: list[Item], admission: Admission, request_id: str, token_delta: float, cost: float
    ) -> None:
        """After the request: correct token windows by ``token_delta``, add ``cost`` to budget
        counters, release parallel slots.  Idempotence is the caller's job (call once)."""
        ...

    async def forget(self, keys: list[str]) -> None:
        """Drop counters (for example running spend after an administrative spend change)."""
        ...

    async def reset(self, key: str, value: float) -> None:
        """Set a running-spend counter to ``value`` (an administrative spend change: ``/key/update``
        with ``spend``); requests in flight then add their cost on top of it."""
        ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------- in process


class LocalCounters:
    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, float]] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._spend: dict[str, float] = {}

    async def admit(self, items: list[Item], request_id: str, lease: float) -> Admission:
        return self.admit_now(items, request_id, lease)

    def admit_now(self, items: list[Item], request_id: str, lease: float) -> Admission:
        now = self._clock()
        window = int(now // WINDOW)
        reset = (window + 1) * WINDOW - now
        values: list[float] = []
        failed = -1
        for i, it in enumerate(items):
            kind = it.kind
            if kind == WINDOW_KIND:
                w = self._windows.get(it.key)
                current = w[1] if w is not None and w[0] == window else 0.0
                values.append(current)
                if failed < 0 and current + it.amount > it.limit and not (it.header == "tokens" and current == 0):
                    failed = i
            elif kind == PARALLEL_KIND:
                slots = self._slots.get(it.key)
                current = float(len(slots)) if slots else 0.0
                if slots and current + 1 > it.limit:  # at the limit: leases that ran out free their slots
                    for rid in [rid for rid, until in slots.items() if until <= now]:
                        del slots[rid]
                    current = float(len(slots))
                values.append(current)
                if failed < 0 and current + 1 > it.limit:
                    failed = i
            else:
                spent = self._spend.get(it.key)
                if spent is None:
                    spent = self._spend[it.key] = float(it.amount)
                current = spent
                values.append(current)
                if failed < 0 and current >= it.limit:
                    failed = i
        if failed >= 0:
            return Admission(False, failed, values, reset, window)
        for i, it in enumerate(items):
            if it.kind == WINDOW_KIND:
                values[i] += it.amount
                self._windows[it.key] = (window, values[i])
            elif it.kind == PARALLEL_KIND:
                self._slots.setdefault(it.key, {})[request_id] = now + lease
                values[i] += 1
        return Admission(True, -1, values, reset, window)

    async def settle(
        self, items: list[Item], admission: Admission, request_id: str, token_delta: float, cost: float
    ) -> None:
        self.settle_now(items, admission, request_id, token_delta, cost)

    def settle_now(
        self, items: list[Item], admission: Admission, request_id: str, token_delta: float, cost: float
    ) -> None:
        for it in items:
            if it.kind == WINDOW_KIND:
                if it.header == "tokens" and token_delta:
                    w = self._windows.get(it.key)
                    if w is not None and w[0] == admission.window:
                        self._windows[it.key] = (w[0], max(0.0, w[1] + token_delta))
            elif it.kind == PARALLEL_KIND:
                slots = self._slots.get(it.key)
                if slots is not None:
                    slots.pop(request_id, None)
            elif cost:
                self._spend[it.key] = self._spend.get(it.key, float(it.amount)) + cost

    def release_slots(self, keys: list[str], request_id: str) -> None:
        for key in keys:
            slots = self._slots.get(key)
            if slots is not None:
                slots.pop(request_id, None)

    async def forget(self, keys: list[str]) -> None:
        self.forget_now(keys)

    def forget_now(self, keys: list[str]) -> None:
        for key in keys:
            self._spend.pop(key, None)

    async def reset(self, key: str, value: float) -> None:
        self.reset_now(key, value)

    def reset_now(self, key: str, value: float) -> None:
        self._spend[key] = float(value)

    def prune(self) -> None:
        """Drop windows older than the current one (called from a background task)."""
        window = int(self._clock() // WINDOW)
        for key in [k for k, (w, _) in self._windows.items() if w < window]:
            del self._windows[key]
        for key in [k for k, slots in self._slots.items() if not slots]:
            del self._slots[key]

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------- Redis

# KEYS: one per item.  ARGV[1] = request id, ARGV[2] = lease ms, then 4 per item: kind, limit, amount, ttl s.
# Window keys get ":<window index>" appended here (the index comes from Redis' own clock).
ADMIT_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = math.floor(tonumber(t[1]) / 60)
local reset_ms = (window + 1) * 60000 - now_ms
local rid = ARGV[1]
local lease = tonumber(ARGV[2])
local n = #KEYS
local values = {}
local failed = 0
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local amount = tonumber(ARGV[base + 3])
  local current
  if kind == 'w' or kind == 't' then
    current = tonumber(redis.call('GET', KEYS[i] .. ':' .. window) or '0')
    if failed == 0 and current + amount > limit and not (kind == 't' and current == 0) then failed = i end
  elseif kind == 'p' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now_ms)
    current = redis.call('ZCARD', KEYS[i])
    if failed == 0 and current + 1 > limit then failed = i end
  else
    local v = redis.call('GET', KEYS[i])
    if not v then
      redis.call('SET', KEYS[i], ARGV[base + 3], 'EX', tonumber(ARGV[base + 4]))
      v = ARGV[base + 3]
    end
    current = tonumber(v)
    if failed == 0 and current >= limit then failed = i end
  end
  values[i] = tostring(current)
end
if failed > 0 then
  return {failed, reset_ms, window, values}
end
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local kind = ARGV[base + 1]
  if kind == 'w' or kind == 't' then
    local k = KEYS[i] .. ':' .. window
    local amount = tonumber(ARGV[base + 3])
    local v = redis.call('INCRBY', k, amount)
    if v == amount then redis.call('EXPIRE', k, 120) end
    values[i] = tostring(v)
  elseif kind == 'p' then
    redis.call('ZADD', KEYS[i], now_ms + lease, rid)
    redis.call('PEXPIRE', KEYS[i], lease)
    values[i] = tostring(tonumber(values[i]) + 1)
  end
end
return {0, reset_ms, window, values}
"""

# KEYS: one per item, then (shared spend) the spend stream.  ARGV[1] = request id, ARGV[2] = window,
# ARGV[3] = token delta, ARGV[4] = cost, ARGV[5] = number of items, then 1 per item: kind; then (shared
# spend) the SpendRecord, added to the stream in the same atomic call.
SETTLE_LUA = """
local rid = ARGV[1]
local window = ARGV[2]
local delta = tonumber(ARGV[3])
local cost = ARGV[4]
local n = tonumber(ARGV[5])
for i = 1, n do
  local kind = ARGV[5 + i]
  if kind == 't' and delta ~= 0 then
    local k = KEYS[i] .. ':' .. window
    if redis.call('EXISTS', k) == 1 then
      local v = redis.call('INCRBY', k, delta)
      if v < 0 then redis.call('SET', k, 0, 'KEEPTTL') end
    end
  elseif kind == 'p' then
    redis.call('ZREM', KEYS[i], rid)
  elseif kind == 'b' and tonumber(cost) ~= 0 then
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBYFLOAT', KEYS[i], cost) end
  end
end
if #KEYS > n then
  redis.call('XADD', KEYS[n + 1], '*', 'r', ARGV[6 + n])
end
return 1
"""


def _redis_kind(it: Item) -> str:
    if it.kind == WINDOW_KIND and it.header == "tokens":
        return "t"
    return it.kind


class RedisCounters:
    """Counters in Redis: ``admit`` is one EVALSHA round trip, ``settle`` another (after the answer)."""

    def __init__(self, url: str, prefix: str = "lockgate:", max_connections: int = 128) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from .resp import RespConnection, Script

        self._unreachable = (RedisConnectionError, RedisTimeoutError)

        self.url = url
        self.prefix = prefix
        # a blocking pool: a burst waits for a free connection instead of failing
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10)
        self.client = aioredis.Redis(connection_pool=pool, health_check_interval=30)
        # the two scripts of every request: one pipelined connection of our own (resp.py); rediss://
        # (TLS) keeps redis-py's scripts
        self.pipe: RespConnection | None = RespConnection(url) if RespConnection.supports(url) else None
        self._admit_script, self._settle_script = Script(ADMIT_LUA), Script(SETTLE_LUA)
        self._admit = self.client.register_script(ADMIT_LUA)
        self._settle = self.client.register_script(SETTLE_LUA)

    async def ping(self) -> None:
        await self.client.ping()

    async def admit(self, items: list[Item], request_id: str, lease: float) -> Admission:
        p = self.prefix
        keys = [p + it.key for it in items]
        args: list[Any] = [request_id, int(lease * 1000)]
        for it in items:
            args += [_redis_kind(it), it.limit, it.amount, _budget_ttl(it)]
        try:
            if self.pipe is not None:
                failed, reset_ms, window, values = await self.pipe.evalsha(self._admit_script, keys, args)
            else:
                failed, reset_ms, window, values = await self._admit(keys=keys, args=args)
        except self._unreachable as exc:  # a clear 503 in the client's dialect, not an internal error
            from .counters_client import CountersUnavailable

            raise CountersUnavailable(f"the rate-limit counters (Redis) are not reachable: {exc}") from None
        return Admission(failed == 0, failed - 1, [float(v) for v in values], reset_ms / 1000, int(window))

    async def settle(
        self, items: list[Item], admission: Admission, request_id: str, token_delta: float, cost: float,
        record: bytes | None = None,
    ) -> None:
        """With ``record``: the spend record goes to the ``<prefix>spend`` stream in the same call."""
        p = self.prefix
        keys = [p + it.key for it in items]
        args: list[Any] = [request_id, admission.window if admission is not None else 0, int(token_delta),
                           repr(float(cost)), len(items)]
        args += [_redis_kind(it) for it in items]
        if record is not None:
            keys.append(p + SPEND_STREAM)
            args.append(record)
        if self.pipe is not None:
            await self.pipe.evalsha(self._settle_script, keys, args)
        else:
            await self._settle(keys=keys, args=args)

    async def forget(self, keys: list[str]) -> None:
        if keys:
            await self.client.delete(*(self.prefix + k for k in keys))

    async def reset(self, key: str, value: float) -> None:
        await self.client.set(self.prefix + key, repr(float(value)), ex=_budget_ttl(Item(BUDGET_KIND, key, 0)))

    async def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
        await self.client.aclose()


def _budget_ttl(it: Item) -> int:
    """Running-spend counters expire (then reload from storage); their key names the period."""
    return 7 * 86400 if it.kind == BUDGET_KIND else 0
