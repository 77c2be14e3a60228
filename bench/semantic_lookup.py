#!/usr/bin/env python3
"""Time of one semantic-cache lookup (``lockgate.cache.semantic.SemanticIndex``), in process.

For 1,000 and 10,000 entries in one tenant scope (two guards, alternating, as a gateway with two model
groups or system prompts would have), three figures:

- ``search``: the index's own matrix search for one query vector (``_Scope.search``: the product, the guard
  and age masks, the best candidates), no embedding;
- ``lookup, in-loop embedder``: ``await index.lookup(q)`` with an embedder that returns a precomputed
  vector on the event loop (no thread hop): the index's whole cost, terms check included;
- ``lookup, local model``: ``await index.lookup(q)`` with ``LocalEmbedder`` (WordLlama from the wheel,
  run in a worker thread): what a request pays, embedding and thread hop included.

each for a miss (a question not stored) and a hit (a stored question, reworded by one word so that its
text is new and is embedded). Every query text is new (the index keeps the vectors of recent texts, which
would skip the embedding). Medians, p90 and p99 in ms; JSON with ``--output``.

    .venv/bin/python bench/semantic_lookup.py                 # 1k and 10k, 2,000 lookups each
    .venv/bin/python bench/semantic_lookup.py --sizes 1000 --lookups 500
    taskset -c 0 .venv/bin/python bench/semantic_lookup.py    # pinned, as the gateway is in run.sh

Run it when the machine is otherwise idle (no bench/run.sh at the same time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time

import numpy as np

from lockgate.cache.embedder import LocalEmbedder, unit_rows
from lockgate.cache.semantic import SemanticIndex, SemanticQuery

TOPICS = ["password", "invoice", "database", "deployment", "cluster", "certificate", "backup", "firewall",
          "webhook", "dashboard", "token", "mailbox", "printer", "calendar", "license", "repository",
          "container", "payment", "schedule", "report", "queue", "cache", "network", "account"]
VERBS = ["reset", "configure", "rotate", "export", "migrate", "monitor", "renew", "archive", "audit",
         "schedule", "restore", "share", "rename", "verify", "debug", "upgrade"]
PLACES = ["on Linux", "for my team", "in production", "from the console", "with the API", "at night",
          "for a new customer", "in the staging region", "without downtime", "from a script"]
WORDS = ["How do I", "How can I", "What is the way to", "Explain how to"]


def question(i: int) -> str:
    """A distinct question per i (numbers differ too, so no two are the same request)."""
    r = random.Random(i)
    return (f"{r.choice(WORDS)} {r.choice(VERBS)} the {r.choice(TOPICS)} {r.choice(PLACES)} "
            f"for project {i}?")


def reworded(i: int) -> str:
    """question(i) with its first words changed: a paraphrase the index should serve."""
    text = question(i)
    for a, b in (("How do I", "How can I"), ("How can I", "How do I"), ("What is the way to", "How do I"),
                 ("Explain how to", "How do I")):
        if text.startswith(a):
            return b + text[len(a):]
    return text


class InLoop:
    """Embedder answering from precomputed vectors, on the event loop: the index's own cost only."""

    name = "in-loop"

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors

    async def embed(self, texts: list[str]) -> np.ndarray:
        return unit_rows(np.stack([self.vectors[t] for t in texts]))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p90_ms": pct(ms, 90), "p99_ms": pct(ms, 99)}


async def fill(index: SemanticIndex, size: int, scope: str) -> None:
    for i in range(size):
        await index.add(SemanticQuery(scope, f"guard-{i % 2}", question(i), 1), f"{scope}/key-{i}")


async def measure(size: int, lookups: int, local: LocalEmbedder) -> dict:
    scope = "team:bench"
    stored = list(range(size))
    rng = random.Random(size)
    hit_ids = [rng.choice(stored) for _ in range(lookups)]
    miss_ids = list(range(size + 1, size + 1 + lookups))  # never stored
    hit_texts = [reworded(i) for i in hit_ids]
    miss_texts = [question(i) for i in miss_ids]

    # every vector once, with the local model (the in-loop embedder replays them)
    texts = [question(i) for i in stored] + hit_texts + miss_texts
    vectors: dict[str, np.ndarray] = {}
    for k in range(0, len(texts), 256):
        batch = texts[k:k + 256]
        for t, v in zip(batch, await local.embed(batch)):
            vectors[t] = v

    out: dict = {"entries": size}

    # 1. the search alone
    inloop = SemanticIndex(InLoop(vectors), max_entries_per_scope=max(size, 10_000))
    await fill(inloop, size, scope)
    sc = inloop._scopes[scope]  # noqa: SLF001 - the micro-benchmark times the index's own search
    for kind, ids, tx in (("miss", miss_ids, miss_texts), ("hit", hit_ids, hit_texts)):
        ms = []
        for i, t in zip(ids, tx):
            v = vectors[t]
            t0 = time.perf_counter()
            sc.search(v, f"guard-{i % 2}", inloop.threshold, inloop._cutoff())  # noqa: SLF001
            ms.append((time.perf_counter() - t0) * 1000)
        out[f"search_{kind}"] = summary(ms)

    # 2. and 3. whole lookups; the recent-vector memo is cleared so that every query is embedded
    local_index = SemanticIndex(local, max_entries_per_scope=max(size, 10_000))
    await fill(local_index, size, scope)
    for name, index in (("inloop", inloop), ("local", local_index)):
        for kind, ids, tx in (("miss", miss_ids, miss_texts), ("hit", hit_ids, hit_texts)):
            index._recent.clear()  # noqa: SLF001
            ms, found = [], 0
            for i, t in zip(ids, tx):
                q = SemanticQuery(scope, f"guard-{i % 2}", t, 1)
                t0 = time.perf_counter()
                r = await index.lookup(q)
                ms.append((time.perf_counter() - t0) * 1000)
                found += r is not None and r[0] == f"{scope}/key-{i}"
            out[f"lookup_{name}_{kind}"] = dict(summary(ms), served=found)
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="entries per scope, comma-separated")
    ap.add_argument("--lookups", type=int, default=2000, help="lookups timed per figure")
    ap.add_argument("--output", help="write the results as JSON here")
    args = ap.parse_args()

    local = LocalEmbedder()
    t0 = time.perf_counter()
    await local.warm()
    load_s = time.perf_counter() - t0
    results = [await measure(int(n), args.lookups, local) for n in args.sizes.split(",")]

    rows = [("search, miss", "search_miss"), ("search, hit", "search_hit"),
            ("lookup in-loop embedder, miss", "lookup_inloop_miss"), ("lookup in-loop embedder, hit", "lookup_inloop_hit"),
            ("lookup local model, miss", "lookup_local_miss"), ("lookup local model, hit", "lookup_local_hit")]
    print(f"local model loaded in {load_s:.2f} s; {args.lookups} lookups per figure; ms p50 / p90 / p99")
    print(f"{'':32s}" + "".join(f"{str(r['entries']) + ' entries':>40s}" for r in results))
    for label, key in rows:
        cells = []
        for r in results:
            s = r[key]
            served = f" ({s['served']} served)" if "served" in s and key.endswith("hit") else ""
            cells.append(f"{s['p50_ms']:.3f} / {s['p90_ms']:.3f} / {s['p99_ms']:.3f}{served}")
        print(f"{label:32s}" + "".join(f"{c:>40s}" for c in cells))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                   "numpy": np.__version__},
                       "affinity": sorted(os.sched_getaffinity(0)), "model_load_s": load_s,
                       "lookups": args.lookups, "results": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
