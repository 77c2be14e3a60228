"""``malloc.one_arena``: glibc's malloc capped at one arena in a serving process (the threads' own heaps
cost RSS, docs/performance.md).  Checked in a child process by glibc's own ``malloc_stats`` report."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import ctypes, sys, threading
from lockgate import malloc
if sys.argv[1] == "one":
    print("capped", malloc.one_arena(), file=sys.stderr)
def work():
    keep = [bytearray(200) for _ in range(20000)]
    threading.Event().wait(0.05)  # the threads allocate at the same time
    del keep
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str, **env: str) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=environ,
                         check=True).stderr
    return sum(line.startswith("Arena ") for line in out.splitlines()), out


def test_one_arena_keeps_every_thread_on_the_main_heap() -> None:
    count, out = arenas("one")
    assert "capped True" in out and count == 1, out
    count, out = arenas("many")
    assert count > 1, out  # without it, the threads grow heaps of their own


def test_an_operators_malloc_arena_max_wins() -> None:
    count, out = arenas("one", MALLOC_ARENA_MAX="3")
    assert "capped False" in out and count > 1, out
