"""Admission plans: a virtual key's counters are built once per model and rebuilt when a budget period ends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from lockgate.config import Settings
from lockgate.context import RequestContext
from lockgate.dialects import openai_chat
from lockgate.governance import enforcement
from lockgate.governance.enforcement import Governance, Grant
from lockgate.governance.types import Entity, KeyRecord, Limits, Principal

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def governance() -> Governance:
    gw = SimpleNamespace(settings=Settings(deployments=[], master_key="sk-master"), groups={})
    return Governance(gw)  # type: ignore[arg-type]


def items_for(gov: Governance, principal: Principal, model: str = "gpt", body: dict | None = None):
    ctx = RequestContext(request_id="r", route="chat", dialect=openai_chat, headers={})
    ctx.principal, ctx.model, ctx.body = principal, model, body or {"messages": [{"role": "user", "content": "hi"}]}
    grant = Grant(gov)
    return gov._items(ctx, grant), grant


def test_plan_is_reused_and_token_items_are_per_request(monkeypatch):
    monkeypatch.setattr(enforcement, "time", lambda: T0.timestamp())
    key = KeyRecord(token_hash="h" * 64, limits=Limits(rpm_limit=5, tpm_limit=100, max_budget=1.0))
    p = Principal(key=key, team=Entity(kind="team", id="t1", limits=Limits(max_budget=9.0)))
    gov = governance()
    first, g1 = items_for(gov, p, body={"messages": [{"role": "user", "content": "x" * 400}]})
    second, g2 = items_for(gov, p)
    assert [it.key for it in first] == [it.key for it in second] == [
        "k:" + "h" * 64 + ":rpm", "k:" + "h" * 64 + ":tpm", "k:" + "h" * 64 + ":spend:0", "t:t1:spend:0"]
    assert len(p.plans) == 1 and g1.key_budget_index == g2.key_budget_index == 2
    assert first[0] is second[0]  # shared: nothing per request in it
    tpm1, tpm2 = first[1], second[1]
    assert tpm1 is not tpm2 and tpm1.amount == g1.estimate > tpm2.amount == g2.estimate > 0
    assert p.plans["gpt"][0][1].amount == 0  # the shared template was not touched


def test_plan_is_rebuilt_when_a_budget_period_ends(monkeypatch):
    now = [T0.timestamp()]
    monkeypatch.setattr(enforcement, "time", lambda: now[0])
    reset = T0 + timedelta(hours=1)
    key = KeyRecord(token_hash="h" * 64, limits=Limits(max_budget=1.0, budget_duration="1h", budget_reset_at=reset,
                                                         spend=0.4))
    p = Principal(key=key)
    gov = governance()
    before, _ = items_for(gov, p)
    assert before[0].key.endswith(f":spend:{int(reset.timestamp())}") and before[0].amount == 0.4
    now[0] = reset.timestamp() + 1  # the period ended; storage has not reset it yet
    after, _ = items_for(gov, p)
    assert after[0].key.endswith(f":spend:{int((reset + timedelta(hours=1)).timestamp())}")
    assert after[0].amount == 0.0  # the next period starts from nothing


def test_ratelimit_headers_report_the_window_with_the_least_left():
    from lockgate.state.counters import BUDGET_KIND, WINDOW_KIND, Admission, Item

    items = [Item(WINDOW_KIND, "k:rpm", 10, 1, "key rpm limit", "requests"),
             Item(WINDOW_KIND, "t:rpm", 5, 1, "team rpm limit", "requests"),
             Item(WINDOW_KIND, "k:tpm", 100, 30, "key tpm limit", "tokens"),
             Item(BUDGET_KIND, "k:spend:0", 1.0, 0.0, "key budget")]
    adm = Admission(True, -1, [3, 4, 130, 0.2], reset=12.2)
    assert dict(enforcement._ratelimit_headers(items, adm)) == {
        b"x-ratelimit-limit-requests": b"5", b"x-ratelimit-remaining-requests": b"1",
        b"x-ratelimit-reset-requests": b"13s", b"x-ratelimit-limit-tokens": b"100",
        b"x-ratelimit-remaining-tokens": b"0", b"x-ratelimit-reset-tokens": b"13s"}
    assert enforcement._ratelimit_headers(items[3:], adm) == []


async def test_budget_tick_drops_cached_keys_only_after_a_reset():
    class Store:
        def __init__(self) -> None:
            self.due = 0

        async def reset_due_budgets(self, now):  # noqa: ANN001, ANN202
            return self.due

    gov = governance()
    gov.store = Store()
    gov.keys._entries["h"] = (float("inf"), "principal")
    assert await gov.reset_budgets_once() == 0 and "h" in gov.keys._entries  # nothing reset: cache kept
    gov.store.due = 2
    assert await gov.reset_budgets_once() == 2 and "h" not in gov.keys._entries
