"""Effective policy (key ∩ user ∩ team ∩ organization) and the price table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lockgate.config import Deployment
from lockgate.errors import AuthenticationError, PermissionDenied
from lockgate.governance import policy
from lockgate.governance.cost import lookup, price_for, table
from lockgate.governance.types import Entity, KeyRecord, Principal

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def dep(name: str, provider: str, model: str, **info) -> Deployment:
    return Deployment(model_name=name, provider=provider, model=model, id=name, model_info=info)


CATALOG = policy.ModelCatalog({
    "gpt-4o": [dep("gpt-4o", "openai", "gpt-4o", access_groups=["beta"])],
    "openai/gpt-4.1": [dep("openai/gpt-4.1", "openai", "gpt-4.1")],
    "claude": [dep("claude", "anthropic", "claude-sonnet-4-5", access_groups=["beta", "anthropic"])],
    "groq-llama": [dep("groq-llama", "groq", "llama-3.1-8b-instant")],
})


def principal(key_models=(), team_models=None, org_models=None, user_models=None, **key) -> Principal:
    p = Principal(key=KeyRecord(token_hash="h" * 64, models=list(key_models), **key))
    if team_models is not None:
        p.team = Entity("team", "t1", models=list(team_models))
    if org_models is not None:
        p.organization = Entity("organization", "o1", models=list(org_models))
    if user_models is not None:
        p.user = Entity("user", "u1", models=list(user_models))
    return p


@pytest.mark.parametrize("allowed,model,ok", [
    (["gpt-4o"], "gpt-4o", True),
    (["gpt-4o"], "claude", False),
    (["openai/*"], "gpt-4o", True),  # matches the deployment's provider/model
    (["openai/*"], "openai/gpt-4.1", True),  # matches the requested name
    (["openai/*"], "claude", False),
    (["beta"], "claude", True),  # access group
    (["beta"], "groq-llama", False),
    (["anthropic"], "gpt-4o", False),
    (["all-proxy-models"], "groq-llama", True),
])
def test_model_entries(allowed, model, ok):
    assert CATALOG.allows(allowed, model) is ok


def test_every_level_must_allow_the_model():
    policy.check_model(principal(["beta"], team_models=["claude", "gpt-4o"]), CATALOG, "claude")
    with pytest.raises(PermissionDenied, match="team model access"):
        policy.check_model(principal([], team_models=["gpt-4o"]), CATALOG, "claude")
    with pytest.raises(PermissionDenied, match="organization model access"):
        policy.check_model(principal(["claude"], team_models=[], org_models=["gpt-4o"]), CATALOG, "claude")
    with pytest.raises(PermissionDenied, match="user model access"):
        policy.check_model(principal([], user_models=["gpt-4o"]), CATALOG, "claude")
    policy.check_model(principal([], team_models=[], org_models=[]), CATALOG, "groq-llama")  # empty = all


def test_blocked_and_expired():
    with pytest.raises(AuthenticationError, match="blocked"):
        policy.check_key_state(principal(blocked=True), NOW)
    with pytest.raises(AuthenticationError, match="expired"):
        policy.check_key_state(principal(expires=NOW - timedelta(seconds=1)), NOW)
    policy.check_key_state(principal(expires=NOW + timedelta(seconds=1)), NOW)
    policy.check_key_state(principal(expires=(NOW + timedelta(hours=1)).replace(tzinfo=None)), NOW)  # naive = UTC
    p = principal(team_models=[])
    p.team.blocked = True
    with pytest.raises(PermissionDenied, match="team of this API key is blocked"):
        policy.check_key_state(p, NOW)


def test_routes():
    policy.check_route(principal(), "embeddings")
    policy.check_route(principal(allowed_routes=["/v1/chat/completions"]), "chat")
    policy.check_route(principal(allowed_routes=["/chat/completions"]), "chat")
    policy.check_route(principal(allowed_routes=["llm_api_routes"]), "messages")
    with pytest.raises(PermissionDenied, match="embeddings route"):
        policy.check_route(principal(allowed_routes=["/v1/chat/completions"]), "embeddings")
    with pytest.raises(PermissionDenied):
        policy.check_route(principal(allowed_routes=["openai_routes"]), "messages")


def test_ip_allowlist():
    assert policy.ip_allowed([], None)
    assert policy.ip_allowed(["10.0.0.0/8"], "10.1.2.3")
    assert not policy.ip_allowed(["10.0.0.0/8"], "11.1.2.3")
    assert policy.ip_allowed(["127.0.0.1"], "::ffff:127.0.0.1")
    assert policy.ip_allowed(["2001:db8::/32"], "2001:db8::1")
    assert not policy.ip_allowed(["127.0.0.1"], None)
    assert not policy.ip_allowed(["127.0.0.1"], "not-an-ip")
    with pytest.raises(PermissionDenied, match="IP address"):
        policy.check_ip(principal(allowed_ips=["192.168.0.0/16"]), "127.0.0.1")
    p = principal(allowed_ips=["127.0.0.0/8"], team_models=[])
    p.team.metadata["allowed_ips"] = ["10.0.0.0/8"]
    with pytest.raises(PermissionDenied, match="team"):
        policy.check_ip(p, "127.0.0.1")


def test_price_table_covers_every_provider_family():
    prices = table()
    for name in ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "o4-mini", "gpt-5", "gpt-5-mini", "text-embedding-3-small",
                 "claude-3-5-sonnet-20241022", "claude-3-7-sonnet-20250219", "claude-sonnet-4-0", "claude-sonnet-4-5",
                 "claude-haiku-4-5", "claude-opus-4-1", "claude-opus-4-5", "gemini-2.0-flash", "gemini-2.5-flash",
                 "gemini-2.5-pro", "llama-3.1-8b-instant", "mistral-large-latest", "deepseek-chat", "grok-4",
                 "anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5@20250929"]:
        assert prices[name].input > 0, name
    for name, p in prices.items():
        assert p.input >= 0 and p.output >= 0 and p.cache_read <= p.input + 1e-12, name


def test_lookup_spellings():
    assert lookup("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == table()["claude-sonnet-4-5"]
    assert lookup("claude-sonnet-4-5-20250929") == table()["claude-sonnet-4-5"]
    assert lookup("claude-opus-4-5@20251101") == table()["claude-opus-4-5"]
    assert lookup("models/gemini-2.5-flash") == table()["gemini-2.5-flash"]
    assert lookup("no-such-model") is None


def test_cost_of_usage_with_cache_parts():
    price = price_for(dep("c", "anthropic", "claude-sonnet-4-5"))
    usage = {"prompt_tokens": 1000 + 2000 + 500, "completion_tokens": 100,
             "prompt_tokens_details": {"cached_tokens": 2000}, "cache_creation_input_tokens": 500}
    expected = (1000 * 3.00 + 2000 * 0.30 + 500 * 3.75 + 100 * 15.00) / 1e6
    assert price.cost(usage) == pytest.approx(expected)
    mini = price_for(dep("m", "openai", "gpt-4o-mini"))
    assert mini.cost({"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}) == pytest.approx(0.75)
    assert mini.cost(None) == 0


def test_model_info_overrides_the_table():
    price = price_for(dep("o", "openai", "gpt-4o", input_cost_per_token=1e-3, output_cost_per_token=2e-3,
                          cache_read_input_token_cost=1e-4))
    assert price.cost({"prompt_tokens": 10, "completion_tokens": 5,
                       "prompt_tokens_details": {"cached_tokens": 4}}) == pytest.approx(6e-3 + 4e-4 + 1e-2)
    unknown = price_for(dep("u", "openai", "private-model", input_cost_per_token=1e-6))
    assert unknown.cost({"prompt_tokens": 100, "completion_tokens": 100}) == pytest.approx(1e-4)
