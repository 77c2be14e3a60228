"""The overview: requests, spend, errors, latency and time to first token for today, 7 and 30 days (local
days in the declared timezone, today included), in one pass over the rows; the deployments' live state.

Latency is ``end_time - start_time`` of each row.  Time to first token is read from ``metadata.ttft_ms``
(rows of streamed answers that carry it); the deployments' own moving averages come from the router.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, Select, case, cast, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from ...admin.auth import Caller
from ...routing.stats import DeploymentStats
from ...state.models import SpendLog, SpendRollup
from ...state.rollup import SQLITE_LATENCY_MS
from ...state.store import SQLStore
from . import zones
from .scope import spend_conditions

if TYPE_CHECKING:
    from ...gateway import Gateway

PERIODS = (("today", 1), ("7 days", 7), ("30 days", 30))


@dataclass
class Period:
    name: str
    days: int
    requests: int = 0
    spend: float = 0.0
    errors: int = 0
    tokens: int = 0
    avg_latency_ms: float | None = None
    avg_ttft_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def _latency_ms(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", SpendLog.end_time - SpendLog.start_time) * 1000.0
    return literal_column(SQLITE_LATENCY_MS.format(s="spend_logs.start_time", e="spend_logs.end_time"))


def _ttft_ms(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return cast(func.json_extract_path_text(SpendLog.metadata_, "ttft_ms"), Float)
    return func.json_extract(SpendLog.metadata_, "$.ttft_ms")


async def periods(store: SQLStore, caller: Caller, tz: tzinfo, now: datetime | None = None) -> list[Period]:
    """Today, the last 7 and the last 30 local days (today included), read in one query."""
    day = zones.today(tz, now)
    starts = [zones.day_start(day - timedelta(days=n - 1), tz).replace(tzinfo=None) for _, n in PERIODS]
    end = zones.day_start(day + timedelta(days=1), tz).replace(tzinfo=None)
    stmt = _rolled(starts, end) if caller.reads_all else _raw(store.dialect, caller, starts, end)
    async with store.sessions() as s:
        row = (await s.execute(stmt)).one()
    out = []
    for i, (name, days) in enumerate(PERIODS):
        requests, spend, errors, tokens, lat, first = row[i * 6:(i + 1) * 6]
        out.append(Period(name, days, int(requests or 0), float(spend or 0.0), int(errors or 0), int(tokens or 0),
                          round(float(lat), 1) if lat is not None else None,
                          round(float(first), 1) if first is not None else None))
    return out


def _raw(dialect: str, caller: Caller, starts: list[datetime], end: datetime) -> Select[Any]:
    """The caller's own rows (internal users: the user index bounds the read)."""
    latency, ttft = _latency_ms(dialect), _ttft_ms(dialect)
    columns: list[ColumnElement[Any]] = []
    for start in starts:
        inside = SpendLog.start_time >= start
        columns += [func.count(case((inside, 1))), func.sum(case((inside, SpendLog.spend))),
                    func.count(case((inside & (SpendLog.status >= 400), 1))),
                    func.sum(case((inside, SpendLog.prompt_tokens + SpendLog.completion_tokens))),
                    func.avg(case((inside, latency))), func.avg(case((inside, ttft)))]
    return select(*columns).where(*spend_conditions(caller), SpendLog.start_time >= min(starts),
                                  SpendLog.start_time < end)


def _rolled(starts: list[datetime], end: datetime) -> Select[Any]:
    """Every row, from spend_rollup (local midnights are bucket boundaries)."""
    r = SpendRollup
    columns: list[ColumnElement[Any]] = []
    for start in starts:
        inside = r.bucket >= start
        requests = func.sum(case((inside, r.requests)))
        ttft_count = func.sum(case((inside, r.ttft_count)))
        columns += [requests, func.sum(case((inside, r.spend))), func.sum(case((inside, r.errors))),
                    func.sum(case((inside, r.prompt_tokens + r.completion_tokens))),
                    func.sum(case((inside, r.latency_ms))) / func.nullif(requests, 0),
                    func.sum(case((inside, r.ttft_ms))) / func.nullif(ttft_count, 0)]
    return select(*columns).where(r.bucket >= min(starts), r.bucket < end)


@dataclass
class DeploymentState:
    model_group: str
    id: str
    provider: str
    model: str
    in_flight: int
    latency_ms: float | None  # moving averages (all instances with Redis)
    ttft_ms: float | None
    recent_failures: int  # in the last minute
    cooldown_seconds: float  # left; 0 when not cooling down
    unhealthy: bool  # background health checks failing

    @property
    def status(self) -> str:
        if self.unhealthy:
            return "unhealthy"
        return "cooling down" if self.cooldown_seconds > 0 else "healthy"


def deployments(gw: Gateway) -> list[DeploymentState]:
    """Every deployment with its live routing state (in process, no I/O); never credentials."""
    now, mono = time.time(), time.monotonic()
    known = dict(gw.router.stats.items())  # read, never created here
    out = []
    for group, deps in sorted(gw.groups.items()):
        for dep in deps:
            s = known.get(dep.id) or DeploymentStats()
            out.append(DeploymentState(
                group, dep.id, dep.provider, dep.model, s.in_flight,
                round(s.latency * 1000, 1) if s.latency is not None else None,
                round(s.ttft * 1000, 1) if s.ttft is not None else None,
                s.recent_failures(mono), max(0.0, round(s.cooldown_until - now, 1)), s.unhealthy))
    return out
