"""The counters service of ``serve --workers N`` (state/counters_service.py), driven over its real socket."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from lockgate.state.counters import BUDGET_KIND, PARALLEL_KIND, WINDOW_KIND, Item
from lockgate.state.counters_client import CountersUnavailable, ServiceCounters
from lockgate.state.counters_service import ServiceProcess


@pytest.fixture
def service():
    proc = ServiceProcess()
    proc.start()
    yield proc
    proc.stop()


async def _client(service: ServiceProcess) -> ServiceCounters:
    client = ServiceCounters(service.path)
    await client.connect()
    return client


def test_the_socket_is_private(service):
    assert os.stat(service.directory).st_mode & 0o777 == 0o700
    assert os.stat(service.path).st_mode & 0o077 == 0


async def test_two_clients_share_one_set_of_counters(service):
    a, b = await _client(service), await _client(service)
    rpm = Item(WINDOW_KIND, "k:x:rpm", 3, 1, "key rpm limit", "requests")
    results = [await (a if i % 2 else b).admit([rpm], f"r{i}", 60) for i in range(5)]
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert results[3].failed == 0 and results[3].values == [3.0]
    tpm = Item(WINDOW_KIND, "k:x:tpm", 100, 80, "key tpm limit", "tokens")
    first = await a.admit([tpm], "t1", 60)
    await a.settle([tpm], first, "t1", token_delta=-70, cost=0)  # real usage: 10 tokens
    assert (await b.admit([tpm], "t2", 60)).ok  # 10 + 80 <= 100
    budget = Item(BUDGET_KIND, "k:x:spend:0", 1.0, 0.5, "key budget")  # initial spend 0.5 from storage
    adm = await a.admit([budget], "b1", 60)
    await a.settle([budget], adm, "b1", 0, 0.6)
    refused = await b.admit([budget], "b2", 60)
    assert not refused.ok and refused.values == [pytest.approx(1.1)]
    await b.reset("k:x:spend:0", 0.25)  # /key/update with spend: the running spend restarts from it
    after = await a.admit([budget], "b3", 60)
    assert after.ok and after.values == [0.25]
    await b.forget(["k:x:spend:0"])  # dropped: created again from the caller's stored value next time
    assert (await a.admit([Item(BUDGET_KIND, "k:x:spend:0", 1.0, 0.0, "key budget")], "b4", 60)).values == [0.0]
    await a.close()
    await b.close()


async def test_slots_of_a_worker_that_went_away_are_released_at_once(service):
    a, b = await _client(service), await _client(service)
    par = Item(PARALLEL_KIND, "k:y:par", 2, 0, "key parallel request limit")
    assert (await a.admit([par], "a1", 600)).ok
    assert (await a.admit([par], "a2", 600)).ok
    assert not (await b.admit([par], "b1", 600)).ok
    await a.close()  # the worker died with two requests in flight: their 600 s leases do not matter
    for _ in range(50):
        if (await b.admit([par], "b2", 600)).ok:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the slots of the closed connection were not released")
    await b.close()


async def test_messages_reach_every_other_worker(service):
    a, b, c = await _client(service), await _client(service), await _client(service)
    got: dict[str, list] = {"a": [], "b": [], "c": []}
    a.listeners.append(got["a"].append)
    b.listeners.append(got["b"].append)
    c.listeners.append(got["c"].append)
    for client in (a, b, c):  # one round trip each: the service has accepted every connection
        await client.forget(["nothing"])
    a.publish(["invalidate", "key", "h" * 64])
    await asyncio.wait_for(_until(lambda: got["b"] and got["c"]), 5)
    assert got["b"] == got["c"] == [["invalidate", "key", "h" * 64]]
    assert got["a"] == []  # not back to the sender
    for client in (a, b, c):
        await client.close()


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_a_dead_service_is_restarted_and_clients_reconnect(service):
    client = await _client(service)
    events: list = []
    client.listeners.append(events.append)
    rpm = Item(WINDOW_KIND, "k:z:rpm", 100, 1, "key rpm limit", "requests")
    assert (await client.admit([rpm], "r1", 60)).ok
    os.kill(service.process.pid, signal.SIGKILL)
    with pytest.raises(CountersUnavailable):  # in flight or just after: a clear 503, never a hang
        for _ in range(100):
            await client.admit([rpm], "r2", 60)
            await asyncio.sleep(0.01)
    deadline = time.monotonic() + 20
    while True:
        try:
            assert (await client.admit([rpm], "r3", 60)).ok
            break
        except CountersUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    # reconnected (maybe twice: once into the dying service's backlog): the worker drops what it cached
    assert events and set(events) == {None}
    await client.close()


def test_the_service_ends_with_a_supervisor_killed_with_sigkill(tmp_path):
    script = ("import sys, time\nfrom lockgate.state.counters_service import ServiceProcess\n"
              "p = ServiceProcess(); p.start(); print(p.process.pid, flush=True); time.sleep(60)\n")
    supervisor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    pid = int(supervisor.stdout.readline())
    directory = f"/proc/{pid}/cmdline"
    with open(directory, "rb") as f:
        socket_dir = os.path.dirname(f.read().split(b"\0")[4].decode())  # ... --socket PATH ...
    supervisor.kill()
    supervisor.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _alive(pid):
            time.sleep(0.2)
            assert not os.path.exists(socket_dir)  # its private directory went with it
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the counters service outlived its supervisor")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
