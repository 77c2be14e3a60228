"""Micro-benchmark of the key cache's lookup (governance/cache.py): ns per ``get`` of a fresh found entry
(the hot path of every virtual-key request) and of a cached not-found entry.

    python bench/key_cache_lookup.py [OLD_CACHE_MODULE_PATH]

With a path to another version of cache.py (for example ``git show main:src/lockgate/governance/cache.py >
/tmp/cache_old.py``), both are measured interleaved in one run (A/B).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from types import ModuleType

N, ROUNDS, REPEATS = 10_000, 15, 20


def _module(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _ns_per_get(module: ModuleType, found: bool) -> float:
    async def loader(ident: str) -> object:
        return None if ident.startswith("bad") else ("principal", ident)

    cache = module.TTLCache(loader, ttl=1e9)
    good = [f"good{i:060d}" for i in range(N)]
    bad = [f"bad{i:061d}" for i in range(N)]
    for ident in good + bad:
        await cache.get(ident)
    keys = good if found else bad
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for ident in keys:
            await cache.get(ident)
        best = min(best, time.perf_counter() - started)
    return best / N * 1e9


async def main() -> None:
    from lockgate.governance import cache

    versions = {"current": cache}
    if len(sys.argv) > 1:
        versions["other"] = _module(sys.argv[1], "other_cache")
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(REPEATS):
        for name, module in versions.items():
            for kind, found in (("found", True), ("not found", False)):
                results.setdefault((name, kind), []).append(await _ns_per_get(module, found))
    for (name, kind), values in sorted(results.items()):
        values.sort()
        print(f"{name:8} {kind:10} min {values[0]:6.1f} ns  median {values[len(values) // 2]:6.1f} ns per get")


if __name__ == "__main__":
    asyncio.run(main())
