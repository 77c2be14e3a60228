"""daily_reports and spend_reports: periodic summaries, sent once across instances (the report's
period index is its dedupe key).

- daily report (every ``daily_report_frequency`` seconds): spend and requests of the period, the top 5
  keys and teams by spend (from the spend logs), the deployments with the most failed requests (this
  instance's count) and the slowest deployments (moving average latency);
- spend report (every ``general_settings.spend_report_frequency``, default 7d): spend per team and the
  top keys over that period.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .model import Alert, key_label

if TYPE_CHECKING:
    from ..gateway import Gateway

TOP = 5


async def _by(store: Any, group: str, start: datetime, end: datetime) -> dict[str, tuple[float, int]]:
    totals: dict[str, tuple[float, int]] = {}
    for row in await store.spend_report(group, start, end):
        ident = row.get(group)
        if not ident:
            continue
        spend, requests = totals.get(ident, (0.0, 0))
        totals[ident] = (spend + row["spend"], requests + row["requests"])
    return totals


async def _key_names(store: Any, hashes: list[str]) -> dict[str, str]:
    rows = await store.get_many("key", hashes) if hashes else []
    names = {r["token_hash"]: key_label(r["token_hash"], r.get("key_alias")) for r in rows}
    return {h: names.get(h) or key_label(h, None) for h in hashes}


def _top(totals: dict[str, tuple[float, int]], names: dict[str, str] | None, n: int) -> str:
    ranked = sorted(totals.items(), key=lambda kv: kv[1][0], reverse=True)[:n]
    if not ranked:
        return "none"
    return ", ".join(f"{(names or {}).get(k, k)} ${v[0]:.4f} ({v[1]} requests)" for k, v in ranked)


async def spend_details(gw: Gateway, start: datetime, end: datetime, teams: int) -> dict[str, Any]:
    store: Any = gw.store
    keys = await _by(store, "key", start, end)
    team_totals = await _by(store, "team", start, end)
    ranked_keys = [k for k, _ in sorted(keys.items(), key=lambda kv: kv[1][0], reverse=True)[:TOP]]
    names = await _key_names(store, ranked_keys)
    days = await store.spend_report("day", start, end)
    return {
        "Period": f"{start.isoformat(timespec='seconds')} to {end.isoformat(timespec='seconds')}",
        "Total spend": round(sum(r["spend"] for r in days), 6),
        "Requests": sum(r["requests"] for r in days),
        "Top keys by spend": _top(keys, names, TOP),
        "Top teams by spend": _top(team_totals, None, teams),
    }


async def daily_report(gw: Gateway, index: int, frequency: float, failures: dict[str, int]) -> Alert:
    end = datetime.fromtimestamp(index * frequency, UTC)
    start = datetime.fromtimestamp((index - 1) * frequency, UTC)
    details = await spend_details(gw, start, end, TOP) if gw.store is not None else {}
    failing = sorted(failures.items(), key=lambda kv: kv[1], reverse=True)[:TOP]
    details["Deployments with the most failed requests"] = (
        ", ".join(f"{dep} ({n})" for dep, n in failing) if failing else "none")
    slow = sorted(((dep, s.latency) for dep, s in gw.router.stats.items() if s.latency is not None),
                  key=lambda kv: kv[1], reverse=True)[:TOP]
    details["Slowest deployments (average latency)"] = (
        ", ".join(f"{dep} ({lat:.3f} s)" for dep, lat in slow) if slow else "none")
    return Alert(type="daily_reports", title="Daily report", key=f"daily_reports:{index}", ttl=frequency * 2,
                 details=details)


async def spend_report(gw: Gateway, index: int, frequency: float) -> Alert:
    end = datetime.fromtimestamp(index * frequency, UTC)
    start = datetime.fromtimestamp((index - 1) * frequency, UTC)
    details = await spend_details(gw, start, end, 20) if gw.store is not None else {}
    return Alert(type="spend_reports", title="Spend report", key=f"spend_reports:{index}", ttl=frequency * 2,
                 details=details)
