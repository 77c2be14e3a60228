"""Governance hot-path micro-benchmark: authenticate + authorize + admit + journal + settle per request.

Usage: .venv/bin/python bench/governance_micro.py            # embedded (in-process counters)
       .venv/bin/python bench/governance_micro.py redis      # counters in Redis at 127.0.0.1:6379
A key with rpm, tpm, parallel and budget limits (and a team with budget and rpm), spend journaling on.
"""
import asyncio, time, tempfile, pathlib, uuid, sys
from lockgate.config import from_dict
from lockgate.gateway import Gateway
from lockgate.context import RequestContext
from lockgate.dialects import openai_chat
from lockgate.governance import Governance, hash_key
from lockgate.governance.types import KeyRecord, Limits, Principal, Entity
from lockgate.state.counters import RedisCounters

class Store:
    def __init__(self, p): self.p = p
    async def principal_for_key(self, h): return self.p if h == self.p.key.token_hash else None
    async def customer(self, u): return None
    async def apply_spend(self, rs, fresh=False): return len(rs)
    async def reset_due_budgets(self, now): pass

async def main(redis):
    raw = "sk-" + uuid.uuid4().hex
    p = Principal(key=KeyRecord(token_hash=hash_key(raw), limits=Limits(max_budget=1e9, rpm_limit=10**9, tpm_limit=10**12, max_parallel_requests=10**6)),
                  team=Entity("team", "t", limits=Limits(max_budget=1e9, rpm_limit=10**9)))
    cfg = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "x"}}],
           "general_settings": {"master_key": "sk-master"},
           "lockgate_settings": {"governance": {"spend_journal_dir": tempfile.mkdtemp(), "redis_key_prefix": f"mb-{uuid.uuid4().hex[:6]}:"}}}
    if redis: cfg["general_settings"]["redis_url"] = "redis://127.0.0.1:6379/0"
    s = from_dict(cfg)
    gw = Gateway(s); gw.store = Store(p)
    gov = Governance(gw); await gov.start()
    dep = gw.groups["m"][0]
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 1000}], "max_tokens": 100}
    async def one():
        ctx = RequestContext(request_id=gw.new_request_id(), route="chat", dialect=openai_chat, headers={}, client_ip="127.0.0.1")
        ctx.body = body; ctx.model = "m"
        await gov.authenticate(ctx, raw)
        await gov.authorize(ctx)
        await gov.admit(ctx)
        ctx.deployment = dep; ctx.status = 200
        ctx.usage = {"prompt_tokens": 250, "completion_tokens": 20}
        ctx.grant.finish(ctx)
        await gov.account(ctx)
    for _ in range(200 if redis else 2000): await one()
    print("warm", flush=True)
    n = 20000 if not redis else 2000
    t = time.perf_counter()
    for _ in range(n): await one()
    dt = (time.perf_counter() - t) / n
    print(("redis" if redis else "embedded"), f"{dt*1e6:.1f} us per request (authenticate+authorize+admit+journal+settle)")
    await gov.close()

asyncio.run(main(len(sys.argv) > 1))
