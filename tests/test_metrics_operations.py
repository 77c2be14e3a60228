"""The operators' metrics (docs/metrics.md): spend, remaining budgets and rate limits per key / team (read at
scrape time from the counters: in process, and in Redis), guardrail verdicts, retries, fallbacks,
cooldowns, deployment state, the spend writer's queue, and ``require_auth_for_metrics_endpoint``.

Requests go through the openai SDK to mock providers; every number is read back from a real ``/metrics``
scrape.  The shared path runs on PostgreSQL and Redis (fails, not skips, when they are down).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, free_port, gateway_config, start_gateway
from tests.test_metrics_catalog import Scrape

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICE = 1e-3  # USD per token
EMAIL = "jane.doe@example.com"


def _config(mocks, general=None, governance=None) -> dict:
    cfg = gateway_config(mocks)
    priced = {"input_cost_per_token": PRICE, "output_cost_per_token": PRICE}
    dead = f"http://127.0.0.1:{free_port()}/v1"
    cfg["model_list"] += [
        {"model_name": "priced-mock", "litellm_params": {"model": "mock/priced", "mock_response": "ok then"},
         "model_info": priced},
        {"model_name": "flaky-model", "litellm_params": {"model": "openai/gpt-4o", "api_base": dead,
                                                         "api_key": "sk-x"}},
        {"model_name": "doomed-model", "litellm_params": {"model": "openai/gpt-4o", "api_base": dead,
                                                          "api_key": "sk-x"}},
    ]
    cfg["general_settings"].update(general or {})
    cfg["router_settings"] = {"num_retries": 1, "allowed_fails": 1, "cooldown_time": 60, "retry_after": 0,
                              "fallbacks": [{"flaky-model": ["priced-mock"]}, {"doomed-model": ["unreachable-model"]}]}
    cfg["guardrails"] = [{"guardrail_name": "pii", "litellm_params": {
        "guardrail": "presidio", "mode": "pre_call", "pii_entities_config": {"EMAIL_ADDRESS": "MASK"}}}]
    cfg["lockgate_settings"] = {"governance": {"budget_reset_interval": 1, **(governance or {})}}
    return cfg


async def _database(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def scrape(gw, headers=ADMIN) -> Scrape:
    resp = httpx.get(gw.url + "/metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return Scrape(resp.text)


def value(s: Scrape, metric: str, /, **labels: str) -> float:
    found = [v for lab, v in s.samples.get(metric, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (metric, labels, s.samples.get(metric))
    return found[0]


@pytest.fixture(scope="module", params=["embedded", "pg_redis"])
def ops(request, mocks, tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp(f"ops-{request.param}")
    general: dict = {}
    governance: dict = {}
    db = prefix = None
    if request.param == "pg_redis":
        db = "lockgate_ops_" + uuid.uuid4().hex[:10]
        asyncio.run(_database(f'CREATE DATABASE "{db}"'))
        prefix = f"lockgate-test-{uuid.uuid4().hex[:10]}:"
        general = {"database_url": f"postgresql://postgres@127.0.0.1:5432/{db}", "redis_url": REDIS_URL}
        governance = {"redis_key_prefix": prefix}
    gw = start_gateway(_config(mocks, general, governance), tmp)
    try:
        yield gw
    finally:
        gw.process.terminate()
        gw.process.wait(10)
        if db:
            asyncio.run(_database(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            import redis

            r = redis.Redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(match=prefix + "*"))
            if keys:
                r.delete(*keys)


def test_remaining_budget_rate_limits_and_spend_per_key_and_team(ops):
    team = httpx.post(ops.url + "/team/new", headers=ADMIN, json={"max_budget": 5.0}, timeout=10).json()["team_id"]
    alias = "ops-" + uuid.uuid4().hex[:6]
    key = httpx.post(ops.url + "/key/generate", headers=ADMIN, timeout=10, json={
        "key_alias": alias, "team_id": team, "max_budget": 1.0, "rpm_limit": 10, "tpm_limit": 100_000,
        "model_rpm_limit": {"priced-mock": 5}}).json()["key"]
    client = openai.OpenAI(base_url=ops.url + "/v1", api_key=key, max_retries=0, timeout=20)
    costs = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="priced-mock", messages=[{"role": "user", "content": "what does it cost"}])
        costs.append(float(raw.headers["x-lockgate-response-cost"]))
        assert costs[-1] > 0
        s = scrape(ops)
        spent = sum(costs)
        assert value(s, "lockgate_budget_remaining_usd", entity="key", name=alias, model="") == \
            pytest.approx(1.0 - spent)
        assert value(s, "lockgate_budget_max_usd", entity="key", name=alias, model="") == 1.0
        assert value(s, "lockgate_budget_remaining_usd", entity="team", name=team, model="") == \
            pytest.approx(5.0 - spent)
        assert value(s, "litellm_remaining_api_key_budget_metric", api_key_alias=alias) == pytest.approx(1.0 - spent)
        assert value(s, "litellm_remaining_team_budget_metric", team=team) == pytest.approx(5.0 - spent)
        assert value(s, "litellm_api_key_max_budget_metric", api_key_alias=alias) == 1.0
        # this minute's window (the two requests may straddle a minute: then 9 / 4 again)
        rpm_left = value(s, "lockgate_rate_limit_remaining", entity="key", name=alias, model="", limit="rpm")
        model_left = value(s, "lockgate_rate_limit_remaining", entity="key", name=alias, model="priced-mock",
                           limit="rpm")
        assert rpm_left in (10 - len(costs), 9) and model_left in (5 - len(costs), 4)
        assert value(s, "lockgate_rate_limit", entity="key", name=alias, model="", limit="rpm") == 10
        assert value(s, "litellm_remaining_api_key_requests_for_model", api_key_alias=alias,
                     model="priced-mock") == model_left
        tpm_left = value(s, "lockgate_rate_limit_remaining", entity="key", name=alias, model="", limit="tpm")
        assert 0 < tpm_left < 100_000
        assert value(s, "lockgate_spend_usd_total", model="priced-mock", key=alias, team=team) == \
            pytest.approx(spent)
        assert value(s, "litellm_spend_metric_total", model="priced-mock", api_key_alias=alias, team=team) == \
            pytest.approx(spent)
    # the key itself, or its full hash, is never a label value
    text = httpx.get(ops.url + "/metrics", headers=ADMIN, timeout=10).text
    import hashlib

    assert key not in text and hashlib.sha256(key.encode()).hexdigest() not in text
    hashed = {lab["hashed_api_key"] for lab, _ in Scrape(text).samples["litellm_remaining_api_key_budget_metric"]
              if lab["api_key_alias"] == alias}
    assert hashed == {hashlib.sha256(key.encode()).hexdigest()[:12]}


def test_retries_fallbacks_cooldowns_and_deployment_state(ops):
    client = openai.OpenAI(base_url=ops.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    before = scrape(ops)
    reply = client.chat.completions.with_raw_response.create(
        model="flaky-model", messages=[{"role": "user", "content": "fall back please"}])
    assert reply.headers["x-lockgate-fallbacks"] == "1"
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="doomed-model", messages=[{"role": "user", "content": "no way"}])
    after = scrape(ops)

    def grew(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    assert grew("lockgate_fallbacks_total", model="flaky-model", fallback_model="priced-mock", outcome="success") == 1
    assert grew("litellm_deployment_successful_fallbacks_total", requested_model="flaky-model",
                fallback_model="priced-mock") == 1
    assert grew("lockgate_fallbacks_total", model="doomed-model", fallback_model="unreachable-model",
                outcome="failure") == 1
    assert grew("litellm_deployment_failed_fallbacks_total", requested_model="doomed-model") == 1
    # allowed_fails 1: the first failure cools the deployment down; the retry then finds none left
    flaky = {lab["deployment"] for lab, _ in after.samples["lockgate_deployment_cooldowns_total"]}
    assert grew("lockgate_deployment_cooldowns_total") >= 2 and len(flaky) >= 2
    for dep in flaky:
        assert value(after, "lockgate_deployment_state", deployment=dep) == 1
        assert value(after, "litellm_deployment_state", model_id=dep) == 1
        assert after.total("litellm_deployment_cooled_down_total", model_id=dep) == \
            after.total("lockgate_deployment_cooldowns_total", deployment=dep)
    states = {lab["deployment"]: v for lab, v in after.samples["lockgate_deployment_state"]}
    assert states and all(v == 0 for dep, v in states.items() if dep not in flaky)


def test_retries_are_counted(ops):
    """num_retries 1 on a provider 500: one retry counted (the deployment then cools down: allowed_fails 1)."""
    client = openai.OpenAI(base_url=ops.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    before = scrape(ops).total("lockgate_retries_total", model="openai-model")
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="openai-model", messages=[{"role": "user", "content": "TRIGGER_500"}])
    assert scrape(ops).total("lockgate_retries_total", model="openai-model") - before == 1


def test_guardrail_verdicts_and_spend_writer_queue(ops):
    client = openai.OpenAI(base_url=ops.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    before = scrape(ops)
    client.chat.completions.create(model="priced-mock", messages=[{"role": "user", "content": f"mail {EMAIL}"}],
                                   extra_body={"guardrails": ["pii"]})
    client.chat.completions.create(model="priced-mock", messages=[{"role": "user", "content": "nothing here"}],
                                   extra_body={"guardrails": ["pii"]})
    client.chat.completions.create(model="priced-mock", messages=[{"role": "user", "content": f"mail {EMAIL}"}])
    after = scrape(ops)
    for verdict in ("masked", "passed"):
        assert after.total("lockgate_guardrail_verdicts_total", guardrail="pii", phase="pre_call", verdict=verdict) - \
            before.total("lockgate_guardrail_verdicts_total", guardrail="pii", phase="pre_call", verdict=verdict) == 1
    # embedded: the journal's writer; shared (PostgreSQL + Redis): the Redis stream every instance drains
    path = "stream" if "pg_redis" in str(ops.log_path) else "journal"
    assert value(after, "lockgate_spend_queue_depth", path=path) >= 0
    assert value(after, "lockgate_spend_journal_lag_bytes") >= 0
    deadline = time.monotonic() + 10
    while True:  # applied in the background: the queue drains, applied grows
        s = scrape(ops)
        if value(s, "lockgate_spend_queue_depth", path=path) == 0 and value(s, "lockgate_spend_journal_lag_bytes") == 0 \
                and value(s, "lockgate_spend_records_applied_total", path=path) >= 3:
            break
        assert time.monotonic() < deadline, "the spend queue never drained"
        time.sleep(0.1)
    assert value(s, "lockgate_spend_write_failures_total", path=path) == 0


def test_metrics_endpoint_auth(mocks, tmp_path):
    cfg = _config(mocks)
    cfg["litellm_settings"]["require_auth_for_metrics_endpoint"] = True
    gw = start_gateway(cfg, tmp_path)
    try:
        anonymous = httpx.get(gw.url + "/metrics", timeout=10)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["message"]
        wrong = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-nope"}, timeout=10)
        assert wrong.status_code == 401 and "error" in wrong.json()
        plain = httpx.post(gw.url + "/key/generate", headers=ADMIN, json={}, timeout=10).json()["key"]
        user = httpx.post(gw.url + "/user/new", headers=ADMIN, json={"user_role": "internal_user"}, timeout=10)
        denied = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {plain}"}, timeout=10)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
        admin_user = httpx.post(gw.url + "/user/new", headers=ADMIN, json={"user_role": "proxy_admin"},
                                timeout=10).json()["user_id"]
        admin_key = httpx.post(gw.url + "/key/generate", headers=ADMIN, json={"user_id": admin_user},
                               timeout=10).json()["key"]
        assert user.status_code == 200
        for key in (MASTER_KEY, admin_key):
            ok = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert ok.status_code == 200 and "lockgate_requests" in ok.text
    finally:
        gw.process.terminate()
        gw.process.wait(10)


def test_metrics_endpoint_open_by_default(ops):
    assert httpx.get(ops.url + "/metrics", timeout=10).status_code == 200


def test_series_cap_and_labels_are_configurable(mocks, tmp_path):
    cfg = _config(mocks)
    cfg["lockgate_settings"]["metrics"] = {"entities": ["key"], "key_label": "hash", "max_series": 1}
    gw = start_gateway(cfg, tmp_path)
    try:
        hashes = []
        for i in range(2):
            key = httpx.post(gw.url + "/key/generate", headers=ADMIN, timeout=10,
                             json={"key_alias": f"cap-{i}", "max_budget": 1.0}).json()["key"]
            import hashlib

            hashes.append(hashlib.sha256(key.encode()).hexdigest()[:12])
            openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
                model="priced-mock", messages=[{"role": "user", "content": "cap"}])
        s = scrape(gw)
        budgets = s.samples["lockgate_budget_remaining_usd"]
        assert len(budgets) == 1 and budgets[0][0]["name"] in hashes  # hash labels, not aliases
        assert value(s, "lockgate_metrics_series_dropped") == 1
        spend = {lab["key"] for lab, _ in s.samples["lockgate_spend_usd_total"]}
        assert len(spend) == 2 and "__other__" in spend  # past max_series: summed as __other__
        assert all(lab["team"] == "" for lab, _ in s.samples["lockgate_spend_usd_total"]  # team not in entities
                   if lab["key"] != "__other__")
    finally:
        gw.process.terminate()
        gw.process.wait(10)


def test_bad_metrics_settings_fail_at_start(mocks, tmp_path):
    cfg = _config(mocks)
    cfg["lockgate_settings"]["metrics"] = {"entities": ["everyone"]}
    with pytest.raises(RuntimeError, match=r"lockgate_settings\.metrics\.entities"):
        start_gateway(cfg, tmp_path)


def test_dashboard_and_alerts_chart_the_operators_metrics():
    import yaml

    from tests.test_metrics_catalog import ALERTS, _dashboard_exprs, _metric_names

    used: set[str] = set()
    for _, expr in _dashboard_exprs():
        used |= _metric_names(expr)
    assert {"lockgate_spend_usd_total", "lockgate_budget_remaining_usd", "lockgate_rate_limit_remaining",
            "lockgate_rate_limit", "lockgate_retries_total", "lockgate_fallbacks_total", "lockgate_deployment_state",
            "lockgate_deployment_cooldowns_total", "lockgate_guardrail_verdicts_total", "lockgate_spend_queue_depth",
            "lockgate_spend_journal_lag_bytes", "lockgate_spend_write_failures_total"} <= used
    rules = {r["alert"]: r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert "lockgate_spend_queue_depth" in rules["LockgateSpendWriterBacklog"]["expr"]
    assert "lockgate_budget_remaining_usd" in rules["LockgateBudgetNearlyExhausted"]["expr"]


def test_deployment_state_outage_from_background_health_checks(mocks, tmp_path):
    """2 (complete outage) while background health checks fail; healthy deployments stay 0."""
    cfg = _config(mocks)
    cfg["general_settings"].update({"background_health_checks": True, "health_check_interval": 1})
    gw = start_gateway(cfg, tmp_path)
    try:
        deployments = httpx.get(gw.url + "/model/info", headers=ADMIN, timeout=10).json()["data"]
        ids = {d["model_name"]: d["model_info"]["id"] for d in deployments}
        deadline = time.monotonic() + 20
        while True:
            s = scrape(gw)
            states = {lab["deployment"]: v for lab, v in s.samples.get("lockgate_deployment_state", [])}
            if states.get(ids["flaky-model"]) == 2:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)
        assert states[ids["priced-mock"]] == 0 and states[ids["openai-model"]] == 0
        assert value(s, "litellm_deployment_state", model_id=ids["flaky-model"]) == 2
    finally:
        gw.process.terminate()
        gw.process.wait(10)
