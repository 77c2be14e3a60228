"""Alerts with two gateway instances sharing PostgreSQL and Redis: the same alert is sent once (Redis
``SET NX EX``), whichever instance saw it: a soft budget crossed by requests spread over both, a cooldown
one instance decided and the other learnt through Redis, the daily report, spend-tracking failures."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, MockHost
from tests.test_alerts import ADMIN, alert_config
from tests.test_alerts_receivers import Receiver, wait_for
from tests.test_governance_e2e import REDIS_URL, _create_db, _drop_db

PG = "postgresql://postgres@127.0.0.1:5432/"


@pytest.fixture(scope="module")
def pair(mocks, tmp_path_factory):
    from tests.conftest import start_gateway

    db = "lockgate_alerts_" + uuid.uuid4().hex[:10]
    asyncio.run(_create_db(db))
    prefix = f"lockgate-alerts-{uuid.uuid4().hex[:10]}:"
    receiver = Receiver()
    host = MockHost()
    url = host.start("receiver", receiver.create_app).url
    cfg = alert_config(mocks, url, cooldown_check_interval=0.2)
    cfg["general_settings"].update({"alerting": ["slack", "webhook"], "database_url": PG + db, "redis_url": REDIS_URL,
                                    "alert_to_webhook_url": {}})
    cfg["lockgate_settings"] = {"governance": {"redis_key_prefix": prefix}}
    cfg["router_settings"] = {"allowed_fails": 1, "cooldown_time": 30}
    cfg["model_list"].append({"model_name": "cool-model", "litellm_params": {
        "model": "openai/gpt-4o", "api_base": mocks["openai"].url + "/v1", "api_key": "os.environ/TEST_PROVIDER_KEY"},
        "model_info": {"id": "cool-deployment"}})
    env = {"SLACK_WEBHOOK_URL": url + "/slack", "WEBHOOK_URL": url + "/webhook"}
    gateways = []
    try:
        for name in ("a", "b"):
            path = tmp_path_factory.mktemp(f"alerts-{name}")
            gateways.append(start_gateway(cfg, path, env))
        yield gateways[0], gateways[1], receiver, db
    finally:
        for gw in gateways:
            gw.process.terminate()
            gw.process.wait(10)
        host.stop()
        asyncio.run(_drop_db(db))
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=prefix + "*"))
        if keys:
            r.delete(*keys)


def _texts(receiver: Receiver, alert_type: str) -> list[str]:
    return [b["text"] for b in receiver.bodies("/slack") if f"\nType: {alert_type}" in b["text"]]


def test_soft_budget_over_two_instances_alerts_once(pair):
    a, b, receiver, _ = pair
    r = httpx.post(a.url + "/key/generate", headers=ADMIN, json={"key_alias": "shared-bot", "soft_budget": 0.01,
                                                                 "max_budget": 100}, timeout=10)
    raw = r.json()["key"]
    clients = [openai.OpenAI(base_url=gw.url + "/v1", api_key=raw, max_retries=0, timeout=20) for gw in (a, b)]
    for i in range(14):
        clients[i % 2].chat.completions.create(model="priced-mock", messages=[{"role": "user", "content": "hi"}])
    events = wait_for(lambda: [e for e in receiver.bodies("/webhook") if e.get("event") == "threshold_crossed"
                               and e.get("key_alias") == "shared-bot"])
    time.sleep(1.0)
    events = [e for e in receiver.bodies("/webhook") if e.get("event") == "threshold_crossed"
              and e.get("key_alias") == "shared-bot"]
    assert len(events) == 1, events
    assert len([t for t in _texts(receiver, "budget_alerts") if "key shared-bot" in t]) == 1


def test_a_shared_cooldown_alerts_once(pair):
    a, b, receiver, _ = pair
    client = openai.OpenAI(base_url=a.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="cool-model", messages=[{"role": "user", "content": "TRIGGER_500"}])
    other = openai.OpenAI(base_url=b.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    # instance b learnt the cooldown through Redis: it refuses at once
    assert wait_for(lambda: _refused(other), timeout=5)
    texts = wait_for(lambda: _texts(receiver, "cooldown_deployment"))
    time.sleep(1.0)  # both instances' watch loops ran several times
    texts = _texts(receiver, "cooldown_deployment")
    assert len(texts) == 1, texts
    assert "Deployment cooled down: cool-deployment" in texts[0]


def _refused(client: openai.OpenAI) -> bool:
    try:
        client.chat.completions.create(model="cool-model", messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError:
        return True
    return False


def test_each_daily_report_is_sent_by_one_instance(pair):
    _, _, receiver, _ = pair
    wait_for(lambda: len(_texts(receiver, "daily_reports")) >= 3, timeout=10)
    periods = [re.search(r"Period: (\S+)", t).group(1) for t in _texts(receiver, "daily_reports")]
    assert len(periods) >= 2
    assert len(periods) == len(set(periods)), periods


def test_spend_tracking_failure_alerts_once(pair):
    a, b, receiver, db = pair

    async def rename(old: str, new: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(PG + db)
        try:
            await conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        finally:
            await conn.close()

    asyncio.run(rename("spend_logs", "spend_logs_away"))
    try:
        for gw in (a, b):
            client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
            client.chat.completions.create(model="priced-mock", messages=[{"role": "user", "content": "hi"}])
        texts = wait_for(lambda: _texts(receiver, "failed_tracking_spend"), timeout=10)
        db_texts = wait_for(lambda: _texts(receiver, "db_exceptions"), timeout=5)
        time.sleep(1.0)
        assert len(_texts(receiver, "failed_tracking_spend")) == 1, texts
        # the spend writes failed (and the daily report's query too): each distinct alert once, from one instance
        titles = [t.split("\n")[0] for t in _texts(receiver, "db_exceptions")]
        assert "Database error: a write or read failed" in titles, db_texts
        assert len(titles) == len(set(titles)), titles
    finally:
        asyncio.run(rename("spend_logs_away", "spend_logs"))
