"""The upstream I/O thread's scheduling follows the load (transport/scheduling.py)."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiohttp import web

from lockgate.transport.client import Upstream


def io_thread_policies() -> list[int]:
    out = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/comm") as f:
            if f.read().startswith("pyreqwest"):
                out.append(os.sched_getscheduler(int(tid)))
    return out


@pytest.fixture
async def slow_server():
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "0.4")))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/slow", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/slow"
    await runner.cleanup()


async def test_many_requests_in_flight_batch_the_io_thread_and_idle_restores_it(slow_server):
    upstream = Upstream(batch_at=3, plain=False)
    upstream.policy.period = 0.05
    try:
        calls = [asyncio.ensure_future(upstream.post(slow_server, {}, b"{}", 5)) for _ in range(4)]
        await asyncio.sleep(0.2)
        assert io_thread_policies() and set(io_thread_policies()) == {os.SCHED_BATCH}
        assert upstream.policy.batch
        replies = await asyncio.gather(*calls)
        assert [r.status for r in replies] == [200] * 4
        await asyncio.sleep(0.25)  # two quiet periods: back to the normal policy, and no timer left
        assert set(io_thread_policies()) == {os.SCHED_OTHER}
        assert not upstream.policy.batch and upstream.policy._timer is None
    finally:
        await upstream.close()


async def test_few_requests_in_flight_or_disabled_leave_the_io_thread_alone(slow_server):
    for batch_at, concurrent in ((3, 2), (0, 6)):
        upstream = Upstream(batch_at=batch_at, plain=False)
        upstream.policy.period = 0.05
        try:
            calls = [asyncio.ensure_future(upstream.post(slow_server + "?delay=0.3", {}, b"{}", 5))
                     for _ in range(concurrent)]
            await asyncio.sleep(0.2)
            assert set(io_thread_policies()) == {os.SCHED_OTHER}
            await asyncio.gather(*calls)
        finally:
            await upstream.close()
