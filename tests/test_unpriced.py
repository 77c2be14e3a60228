"""Deployments without a price: named at start-up, shown in GET /model/info, and (with
``general_settings.reject_unpriced_for_budgets``) refused to requests under a budget."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, start_gateway
from tests.mocks import MOCK_API_KEY

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
SECRET = "sk-provider-secret-do-not-show-42"


def _config(mocks, reject: bool) -> dict:
    openai_base = mocks["openai"].url + "/v1"
    return {
        "model_list": [
            {"model_name": "table-priced", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": MOCK_API_KEY,
                                                              "api_base": openai_base}},
            {"model_name": "info-priced", "litellm_params": {"model": "mock/in-house", "mock_response": "ok"},
             "model_info": {"id": "info-priced-1", "input_cost_per_token": 2e-6, "output_cost_per_token": 4e-6}},
            {"model_name": "free-on-purpose", "litellm_params": {"model": "mock/free", "mock_response": "ok"},
             "model_info": {"input_cost_per_token": 0, "output_cost_per_token": 0}},
            {"model_name": "unpriced", "litellm_params": {"model": "mock/nobody-knows", "mock_response": "ok"},
             "model_info": {"id": "unpriced-1"}},
            {"model_name": "unpriced-remote", "litellm_params": {
                "model": "openai/my-finetune-xyz", "api_key": SECRET,
                "api_base": openai_base.replace("http://", "http://user:pa55word@")}},
            {"model_name": "wild/*", "litellm_params": {"model": "openai/*", "api_key": MOCK_API_KEY,
                                                        "api_base": openai_base}},
        ],
        "general_settings": {"master_key": MASTER_KEY, "reject_unpriced_for_budgets": reject},
        "router_settings": {"fallbacks": [{"info-priced": ["unpriced"]}]},
    }


@pytest.fixture(scope="module")
def lenient(mocks, tmp_path_factory):
    gw = start_gateway(_config(mocks, False), tmp_path_factory.mktemp("unpriced-lenient"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


@pytest.fixture(scope="module")
def strict(mocks, tmp_path_factory):
    gw = start_gateway(_config(mocks, True), tmp_path_factory.mktemp("unpriced-strict"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


def _key(gw, **fields) -> str:
    r = httpx.post(gw.url + "/key/generate", headers=ADMIN, json=fields, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["key"]


def _oa(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def _ask(gw, key: str, model: str):
    return _oa(gw, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}])


def test_start_up_names_each_unpriced_deployment(lenient):
    log = lenient.log()
    warned = [line for line in log.splitlines() if "has no price" in line]
    assert any("mock/nobody-knows" in line and "unpriced-1" in line for line in warned), warned
    assert any("openai/my-finetune-xyz" in line for line in warned), warned
    assert any("openai/*" in line for line in warned)  # a wildcard: its models are not known in advance
    for priced in ("gpt-4o-mini", "mock/in-house", "mock/free"):
        assert not any(priced in line for line in warned), warned
    assert SECRET not in log and "pa55word" not in log


def test_model_info_shows_prices_and_no_secret(lenient):
    for path in ("/model/info", "/v1/model/info"):
        r = httpx.get(lenient.url + path, headers=ADMIN, timeout=10)
        assert r.status_code == 200, r.text
        assert SECRET not in r.text and "pa55word" not in r.text and MOCK_API_KEY not in r.text
        data = {d["model_name"]: d for d in r.json()["data"]}
        assert set(data) == {"table-priced", "info-priced", "free-on-purpose", "unpriced", "unpriced-remote", "wild/*"}
        assert data["table-priced"]["model_info"]["priced"] is True
        assert data["table-priced"]["model_info"]["input_cost_per_token"] > 0
        assert data["table-priced"]["litellm_params"]["model"] == "openai/gpt-4o-mini"
        assert "api_key" not in data["table-priced"]["litellm_params"]
        info = data["info-priced"]["model_info"]
        assert info["id"] == "info-priced-1" and info["priced"] is True
        assert info["input_cost_per_token"] == 2e-6 and info["output_cost_per_token"] == 4e-6
        assert data["free-on-purpose"]["model_info"]["priced"] is True  # a price of 0 is a price
        assert data["free-on-purpose"]["model_info"]["input_cost_per_token"] == 0
        for name in ("unpriced", "unpriced-remote"):
            assert data[name]["model_info"]["priced"] is False
            assert data[name]["model_info"]["input_cost_per_token"] is None
        assert data["unpriced-remote"]["litellm_params"]["api_base"].startswith("http://127.0.0.1:")
    one = httpx.get(lenient.url + "/model/info", headers=ADMIN, params={"litellm_model_id": "unpriced-1"}).json()
    assert [d["model_name"] for d in one["data"]] == ["unpriced"]


def test_model_info_needs_a_key_and_shows_a_key_its_models(lenient):
    assert httpx.get(lenient.url + "/model/info", timeout=10).status_code == 401
    key = _key(lenient, models=["unpriced", "table-priced"])
    r = httpx.get(lenient.url + "/model/info", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200
    assert sorted(d["model_name"] for d in r.json()["data"]) == ["table-priced", "unpriced"]


def test_by_default_an_unpriced_deployment_escapes_the_budget(lenient):
    key = _key(lenient, max_budget=0.000001)
    for _ in range(3):
        raw = _ask(lenient, key, "unpriced")
        assert raw.http_response.status_code == 200
        assert float(raw.headers["x-lockgate-response-cost"]) == 0.0


def test_wildcard_models_are_priced_each_by_its_own_model(lenient):
    mini = _ask(lenient, MASTER_KEY, "wild/gpt-4o-mini")
    big = _ask(lenient, MASTER_KEY, "wild/gpt-4o")
    cost_mini = float(mini.headers["x-lockgate-response-cost"])
    cost_big = float(big.headers["x-lockgate-response-cost"])
    assert 0 < cost_mini < cost_big  # not the first model's price for every model of the wildcard


def test_strict_refuses_budgets_on_unpriced_deployments(strict):
    budgeted = _key(strict, max_budget=10)
    with pytest.raises(openai.PermissionDeniedError) as info:
        _ask(strict, budgeted, "unpriced")
    assert info.value.status_code == 403
    assert "without a price" in info.value.message and "reject_unpriced_for_budgets" in info.value.message
    assert info.value.body["code"] == "unpriced_model"
    # the client's own dialect: Anthropic's error shape on /v1/messages
    client = anthropic.Anthropic(base_url=strict.url, api_key=budgeted, max_retries=0, timeout=20)
    with pytest.raises(anthropic.PermissionDeniedError) as ainfo:
        client.messages.create(model="unpriced-remote", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ainfo.value.body["type"] == "error" and ainfo.value.body["error"]["type"] == "permission_error"
    # a fallback that leads to an unpriced deployment is refused too
    with pytest.raises(openai.PermissionDeniedError):
        _ask(strict, budgeted, "info-priced")
    # priced (also free on purpose) deployments serve the budgeted key
    assert _ask(strict, budgeted, "table-priced").http_response.status_code == 200
    assert _ask(strict, budgeted, "free-on-purpose").http_response.status_code == 200
    # a key without any budget may still use an unpriced deployment
    free = _key(strict)
    assert _ask(strict, free, "unpriced").http_response.status_code == 200


def test_check_config_names_unpriced_deployments(mocks, tmp_path):
    import subprocess
    import sys

    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(mocks, False)))
    out = subprocess.run([sys.executable, "-m", "lockgate.cli", "check-config", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.splitlines() if "has no price" in line]
    assert len(warned) == 3, warned  # mock/nobody-knows, openai/my-finetune-xyz, openai/*
    assert any("unpriced-1" in line for line in warned)
    assert SECRET not in out.stdout + out.stderr
