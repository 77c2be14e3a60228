"""/audit/logs (every mutation, secrets redacted) and /spend/logs + /global/spend/report over HTTP, with
spend records written through SQLStore.apply_spend, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from lockgate.governance.types import SpendRecord
from lockgate.state.timetext import utc_text
from tests.test_admin_support import admin, running  # noqa: F401  (fixtures)

DAY1 = datetime(2025, 3, 1, 10, 0, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(days=1)


def in_thread(coro_fn):  # noqa: ANN001, ANN201
    result: list = []

    def target() -> None:
        result.append(asyncio.run(coro_fn()))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return result[0] if result else None


def apply_spend(database_url: str, records: list[SpendRecord]) -> int:
    from lockgate.state import open_store

    async def run() -> int:
        store = await open_store(SimpleNamespace(database_url=database_url, database_path=None, max_budget=None,
                                                 budget_duration=None), None)
        try:
            return await store.apply_spend(records)
        finally:
            await store.close()

    return in_thread(run)


def test_audit_log_records_mutations_with_secrets_redacted(admin):
    agent = {"User-Agent": "audit-test/1.0"}
    boss = admin.ok("POST", "/user/new", {"user_id": f"boss-{uuid.uuid4().hex[:6]}", "user_role": "proxy_admin"})
    boss_key = admin.ok("POST", "/key/generate", {"user_id": boss["user_id"]})["key"]
    boss_client = admin.as_key(boss_key)
    resp = boss_client.post("/key/generate", {"key_alias": "audited", "metadata": {
        "api_key": "sk-provider-secret-value-123", "password": "hunter2", "note": "kept"}}, **agent)
    made = resp.json()
    raw, token = made["key"], made["token"]
    boss_client.ok("POST", "/key/update", {"key": raw, "rpm_limit": 11})
    boss_client.ok("POST", "/key/block", {"key": token})

    entries = admin.ok("GET", "/audit/logs", object_id=token)["data"]
    assert [e["action"] for e in entries] == ["blocked", "updated", "created"]  # newest first
    created, updated, blocked = entries[2], entries[1], entries[0]
    assert created["changed_by"] == boss["user_id"] and created["table_name"] == "keys"
    assert created["ip"] == "127.0.0.1" and created["user_agent"] == "audit-test/1.0"
    assert created["before_value"] is None
    assert created["updated_values"]["metadata"] == {"api_key": "[redacted]", "password": "[redacted]",
                                                     "note": "kept"}
    assert updated["before_value"]["rpm_limit"] is None and updated["updated_values"]["rpm_limit"] == 11
    assert blocked["updated_values"]["blocked"] is True
    text = str(admin.ok("GET", "/audit/logs", page_size=1000))
    assert raw not in text and "sk-provider-secret-value-123" not in text and "hunter2" not in text

    master_entries = admin.ok("GET", "/audit/logs", changed_by="master", table_name="users")["data"]
    assert any(e["object_id"] == boss["user_id"] and e["action"] == "created" for e in master_entries)
    page = admin.ok("GET", "/audit/logs", page=2, page_size=1, object_id=token)
    assert len(page["data"]) == 1 and page["total_count"] == 3 and page["data"][0]["action"] == "updated"


def _record(rid: str, *, key: str, user: str, team: str, model: str, spend: float, when: datetime) -> SpendRecord:
    return SpendRecord(request_id=rid, api_key=key, user_id=user, team_id=team, organization_id=None,
                       end_user=None, model_group=model, model=model, deployment_id=None, provider="mock",
                       route="chat", prompt_tokens=10, completion_tokens=20, cached_tokens=0, spend=spend,
                       status=200, start_time=utc_text(when), end_time=utc_text(when + timedelta(seconds=1)))


@pytest.fixture(scope="module")
def spend_world(admin, running):
    tag = uuid.uuid4().hex[:6]
    team_a = admin.ok("POST", "/team/new", {"team_id": f"ta-{tag}"})["team_id"]
    team_b = admin.ok("POST", "/team/new", {"team_id": f"tb-{tag}"})["team_id"]
    alice = admin.ok("POST", "/user/new", {"user_id": f"alice-{tag}"})["user_id"]
    bob = admin.ok("POST", "/user/new", {"user_id": f"bob-{tag}"})["user_id"]
    key_a = admin.ok("POST", "/key/generate", {"user_id": alice, "team_id": team_a})
    key_b = admin.ok("POST", "/key/generate", {"user_id": bob, "team_id": team_b})
    records = [
        _record(f"{tag}-1", key=key_a["token"], user=alice, team=team_a, model="m1", spend=1.0, when=DAY1),
        _record(f"{tag}-2", key=key_a["token"], user=alice, team=team_a, model="m2", spend=2.0, when=DAY1),
        _record(f"{tag}-3", key=key_b["token"], user=bob, team=team_b, model="m1", spend=4.0, when=DAY1),
        _record(f"{tag}-4", key=key_b["token"], user=bob, team=team_b, model="m1", spend=8.0, when=DAY2),
    ]
    assert apply_spend(running.database_url, records) == 4
    assert apply_spend(running.database_url, records) == 0  # replayed: nothing counted twice
    return SimpleNamespace(tag=tag, team_a=team_a, team_b=team_b, alice=alice, bob=bob, key_a=key_a, key_b=key_b)


def test_spend_is_added_to_keys_users_and_teams(admin, spend_world):
    w = spend_world
    assert admin.ok("GET", "/key/info", key=w.key_a["token"])["info"]["spend"] == pytest.approx(3.0)
    assert admin.ok("GET", "/key/info", key=w.key_a["token"])["info"]["model_spend"] == {
        "m1": pytest.approx(1.0), "m2": pytest.approx(2.0)}
    assert admin.ok("GET", "/user/info", user_id=w.bob)["user_info"]["spend"] == pytest.approx(12.0)
    assert admin.ok("GET", "/team/info", team_id=w.team_b)["team_info"]["spend"] == pytest.approx(12.0)


def test_spend_logs_filters(admin, spend_world):
    w = spend_world

    def ids(**params) -> set[str]:  # noqa: ANN003
        return {r["request_id"] for r in admin.ok("GET", "/spend/logs", page_size=1000, **params)["data"]
                if r["request_id"].startswith(w.tag)}

    t = w.tag
    assert ids(api_key=w.key_a["key"]) == {f"{t}-1", f"{t}-2"}  # raw key accepted, matched by hash
    assert ids(api_key=w.key_b["token"]) == {f"{t}-3", f"{t}-4"}
    assert ids(user_id=w.alice) == {f"{t}-1", f"{t}-2"}
    assert ids(team_id=w.team_b) == {f"{t}-3", f"{t}-4"}
    assert ids(model="m1", team_id=w.team_b) == {f"{t}-3", f"{t}-4"}
    assert ids(model="m2") == {f"{t}-2"}
    assert ids(user_id=w.bob, start_date="2025-03-02") == {f"{t}-4"}
    assert ids(user_id=w.bob, end_date="2025-03-01") == {f"{t}-3"}  # an end date includes its day
    assert ids(user_id=w.bob, start_date="2025-03-01T12:00:00Z") == {f"{t}-4"}
    page = admin.ok("GET", "/spend/logs", team_id=w.team_b, page=1, page_size=1)
    assert page["total_count"] == 2 and page["total_pages"] == 2 and page["data"][0]["request_id"] == f"{t}-4"
    row = page["data"][0]
    assert row["api_key"] == w.key_b["token"] and row["spend"] == pytest.approx(8.0) and row["prompt_tokens"] == 10
    bad = admin.get("/spend/logs", start_date="yesterday")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "start_date"

    # an internal user sees only their own spend
    alice_client = admin.as_key(admin.ok("POST", "/key/generate", {"user_id": w.alice})["key"])
    own = alice_client.ok("GET", "/spend/logs", page_size=1000)["data"]
    assert {r["request_id"] for r in own} == {f"{t}-1", f"{t}-2"}


def test_global_spend_report_grouping(admin, spend_world):
    w = spend_world

    def report(group_by: str) -> list[dict]:
        body = admin.ok("GET", "/global/spend/report", group_by=group_by, start_date="2025-03-01",
                        end_date="2025-03-02")
        assert body["group_by"] == group_by
        return body["data"]

    days = {r["day"]: r["spend"] for r in report("day")}
    assert days["2025-03-01"] >= 7.0 - 1e-9 and days["2025-03-02"] >= 8.0 - 1e-9
    teams = {(r["day"], r["team"]): r for r in report("team")}
    assert teams[("2025-03-01", w.team_a)]["spend"] == pytest.approx(3.0)
    assert teams[("2025-03-01", w.team_a)]["requests"] == 2
    assert teams[("2025-03-01", w.team_b)]["spend"] == pytest.approx(4.0)
    assert teams[("2025-03-02", w.team_b)]["spend"] == pytest.approx(8.0)
    keys = {(r["day"], r["key"]): r["spend"] for r in report("key")}
    assert keys[("2025-03-01", w.key_a["token"])] == pytest.approx(3.0)
    users = {(r["day"], r["user"]): r["spend"] for r in report("user")}
    assert users[("2025-03-02", w.bob)] == pytest.approx(8.0)
    models = {(r["day"], r["model"]): r for r in report("model")}
    assert models[("2025-03-01", "m2")]["spend"] == pytest.approx(2.0)
    assert models[("2025-03-01", "m2")]["completion_tokens"] == 20
    only_day2 = admin.ok("GET", "/global/spend/report", group_by="team", start_date="2025-03-02",
                         end_date="2025-03-02")["data"]
    assert {(r["day"], r["team"]) for r in only_day2 if r["team"] in (w.team_a, w.team_b)} == {
        ("2025-03-02", w.team_b)}
    assert admin.get("/global/spend/report", group_by="planet").status_code == 400
