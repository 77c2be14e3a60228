"""budget_alerts: a key, user, team, organization, customer (end user) or the proxy crossing its
``soft_budget`` (``threshold_crossed``), reaching its ``max_budget`` (``budget_crossed``), or projected to
reach it before its budget period ends (``projected_limit_exceeded``); each once per budget period.

Called after each priced request (``Alerts.observe``) with what governance already holds: the budget
counters' values at admission (exact across instances) plus this request's cost; for a level without a
``max_budget`` (no counter) the stored spend of the cached principal (a few seconds late).

Projection (linear): with a ``budget_duration``, the period started one duration before its reset time;
``rate = spend / elapsed``; ``projected_spend = rate * period``.  When ``projected_spend > max_budget`` (and
the budget is not reached yet) the alert names ``projected_exceeded_date = start + max_budget / rate``.
It is judged only once ``projection_min_elapsed`` seconds of the period went by (default: a tenth of the
period, at most an hour), so the first requests of a period do not look like a flood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..state import durations
from ..state.counters import BUDGET_KIND
from .model import Alert, key_label

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..governance.types import Limits, Principal

EVENT_MESSAGES = {
    "budget_crossed": "Budget Crossed",
    "threshold_crossed": "Soft Budget Crossed",
    "projected_limit_exceeded": "Projected Limit Exceeded",
}
GROUP_NAMES = {"key": "Key", "user": "User", "team": "Team", "organization": "Organization",
               "customer": "Customer", "proxy": "Proxy"}
COUNTER_PREFIX = {"k": "key", "u": "user", "t": "team", "o": "organization", "c": "customer", "proxy": "proxy"}


@dataclass
class Subject:
    group: str  # key | user | team | organization | customer | proxy
    id: str  # token hash, user / team / organization id, end user id, "proxy"
    limits: Limits
    label: str  # how the alert names it (never a raw key)


def has_budget(limits: Limits) -> bool:
    return limits.max_budget is not None or limits.soft_budget is not None


def subjects_of(p: Principal) -> list[Subject]:
    """The levels of a virtual key that have a budget (cached by the caller per principal snapshot)."""
    out: list[Subject] = []
    key = p.key
    if has_budget(key.limits):
        out.append(Subject("key", key.token_hash, key.limits, key_label(key.token_hash, key.key_alias)))
    for group, ent in (("user", p.user), ("team", p.team), ("organization", p.organization)):
        if ent is not None and has_budget(ent.limits):
            out.append(Subject(group, ent.id, ent.limits, ent.id))
    return out


@lru_cache(maxsize=65536)
def _counter_of(item_key: str) -> tuple[str, str, str] | None:
    """A budget counter's name -> (group, id, period); None for per-model budgets."""
    if ":m:" in item_key:
        return None
    eid, _, period = item_key.rpartition(":spend:")
    kind, _, ident = eid.partition(":")
    group = COUNTER_PREFIX.get(kind)
    return (group, ident or "proxy", period) if group is not None else None


def counter_values(ctx: RequestContext) -> dict[tuple[str, str], tuple[float, str, bool]]:
    """(group, id) -> (spend at admission, period, refused by this budget) from the request's budget counters."""
    grant = ctx.grant
    out: dict[tuple[str, str], tuple[float, str, bool]] = {}
    if grant is None or grant.admission is None:
        return out
    adm = grant.admission
    values = adm.values
    for i, item in enumerate(grant.items):
        if item.kind != BUDGET_KIND or i >= len(values):
            continue
        counter = _counter_of(item.key)
        if counter is not None:
            out[(counter[0], counter[1])] = (values[i], counter[2], not adm.ok and adm.failed == i)
    return out


def check(ctx: RequestContext, subject: Subject, counted: tuple[float, str, bool] | None, cost: float,
          projection_min: float, budget_ttl: float, now: float) -> list[Alert]:
    lim = subject.limits
    soft = lim.soft_budget
    if counted is not None:
        before, period, refused = counted
        spend = before if refused else before + cost
        end = float(period) if period not in ("", "0") else math.inf
    else:
        refused = False
        spend = lim.spend + cost
        end = _timestamp(lim.budget_reset_at) if lim.budget_reset_at is not None else math.inf
        if end <= now and lim.budget_duration and lim.budget_reset_at is not None:
            return []  # the stored period is over and not reset yet: its spend says nothing of the new one
        period = str(int(end)) if end != math.inf else "0"
    ttl = (end - now) if end != math.inf else budget_ttl
    ttl = max(ttl, 1.0)
    alerts = []
    if lim.max_budget is not None and (refused or spend >= lim.max_budget):
        alerts.append(_alert(ctx, subject, "budget_crossed", spend, period, ttl, "High"))
    if soft is not None and spend >= soft:
        alerts.append(_alert(ctx, subject, "threshold_crossed", spend, period, ttl, "Medium"))
    if (lim.max_budget is not None and spend < lim.max_budget and lim.budget_duration and end != math.inf
            and spend > 0):
        projected = _projection(spend, end, lim.budget_duration, lim.max_budget, now, projection_min)
        if projected is not None:
            alerts.append(_alert(ctx, subject, "projected_limit_exceeded", spend, period, ttl, "Medium",
                                 projected))
    return alerts


def _projection(spend: float, end: float, duration: str, max_budget: float, now: float,
                min_elapsed: float) -> tuple[float, str] | None:
    end_at = datetime.fromtimestamp(end, UTC)
    start = durations.add(end_at, duration, -1).timestamp()
    length = end - start
    elapsed = now - start
    needed = min_elapsed if min_elapsed > 0 else min(3600.0, length / 10)
    if elapsed <= 0 or elapsed < needed:
        return None
    rate = spend / elapsed
    projected = rate * length
    if projected <= max_budget:
        return None
    exceed_at = datetime.fromtimestamp(start + max_budget / rate, UTC)
    return projected, exceed_at.date().isoformat() if length >= 86400 else exceed_at.isoformat(timespec="seconds")


def _alert(ctx: RequestContext, subject: Subject, event: str, spend: float, period: str, ttl: float, level: str,
           projected: tuple[float, str] | None = None) -> Alert:
    from ..governance.types import Principal

    lim = subject.limits
    soft = lim.soft_budget
    group_name = GROUP_NAMES[subject.group]
    message = f"{group_name} Budget: {EVENT_MESSAGES[event]}"
    p = ctx.principal
    key = p.key if isinstance(p, Principal) else None
    end_user = ctx.body.get("user")
    payload: dict[str, Any] = {
        "spend": spend,
        "max_budget": lim.max_budget,
        "soft_budget": soft,
        "token": key.token_hash if key is not None else None,  # sha256 of the key, never the key
        "customer_id": end_user if isinstance(end_user, str) and end_user else None,
        "user_id": key.user_id if key is not None else None,
        "team_id": key.team_id if key is not None else None,
        "team_alias": None,
        "organization_id": key.organization_id if key is not None else None,
        "user_email": None,
        "key_alias": key.key_alias if key is not None else None,
        "projected_exceeded_date": projected[1] if projected else None,
        "projected_spend": projected[0] if projected else None,
        "event": event,
        "event_group": subject.group,
        "event_message": message,
    }
    limit = lim.max_budget if event != "threshold_crossed" else soft
    details: dict[str, Any] = {
        "Subject": f"{subject.group} {subject.label}", "Spend": spend, "Max budget": lim.max_budget,
        "Soft budget": soft, "Budget period": lim.budget_duration,
    }
    if projected:
        details.update({"Projected spend": projected[0], "Projected to exceed on": projected[1]})
    return Alert(type="budget_alerts", title=f"{message}: {subject.group} {subject.label}",
                 key=f"budget:{event}:{subject.group}:{subject.id}:{period}:{limit}", ttl=ttl, level=level,
                 details=details, payload=payload)


def _timestamp(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
