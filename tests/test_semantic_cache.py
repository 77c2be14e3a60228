"""The semantic cache index (cache/semantic.py) and its embedders (cache/embedder.py).

With the real local model (WordLlama from its wheel; no network): false-hit pairs miss even at a permissive
threshold, close paraphrases hit at the default one.  Shared mode runs against the real Redis at REDIS_URL
and fails (never skips) without it; every test writes under its own ``lt-<uuid>:`` prefix and removes it after.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lockgate.cache.backends import CacheError
from lockgate.cache.embedder import DeploymentEmbedder, LocalEmbedder, unit_rows
from lockgate.cache.semantic import SemanticIndex, SemanticQuery, terms_match

REDIS_URL = "redis://127.0.0.1:6379/0"
GUARD = "guard-1"


def query(text: str, *, scope: str = "team:a", guard: str = GUARD, turns: int = 1) -> SemanticQuery:
    return SemanticQuery(scope=scope, guard=guard, text=text, turns=turns)


def hashed_rows(texts: list[str], dim: int = 64) -> list[list[float]]:
    """A deterministic stand-in model: each word hashed to one dimension."""
    rows = []
    for text in texts:
        row = [0.0] * dim
        for word in text.lower().split():
            row[int(hashlib.sha1(word.encode()).hexdigest(), 16) % dim] += 1.0
        rows.append(row)
    return rows


class FakeModel:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        return hashed_rows(texts)


@pytest.fixture(scope="session")
async def local() -> LocalEmbedder:
    embedder = LocalEmbedder()
    started = time.perf_counter()
    await embedder.warm()
    print(f"\nLocalEmbedder load: {(time.perf_counter() - started) * 1000:.0f} ms")
    return embedder


async def similarity(embedder: LocalEmbedder, a: str, b: str) -> float:
    vectors = await embedder.embed([a, b])
    return float(vectors[0] @ vectors[1])


# ---------------------------------------------------------------- the local model


async def test_local_embedder_rows_are_unit_float32(local: LocalEmbedder) -> None:
    vectors = await local.embed(["How do I reset my password?", "", "   "])
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 256)
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-5)
    assert not vectors[1].any() and not vectors[2].any()  # no tokens: a zero row, never a hit


def test_importing_the_index_loads_no_model() -> None:
    # gateway start-up without a semantic cache pays nothing; and wordllama's own package (which configures
    # the root logger when imported) is never imported, only its files are read
    code = ("import sys, logging, lockgate.cache.semantic, lockgate.cache.embedder as e;"
            "assert not {'tokenizers', 'safetensors', 'wordllama'} & set(sys.modules), sys.modules.keys();"
            "import asyncio; asyncio.run(e.LocalEmbedder().embed(['hi']));"
            "assert 'wordllama' not in sys.modules and not logging.getLogger().handlers")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


async def test_embedding_runs_off_the_event_loop(local: LocalEmbedder) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await local.embed(["word " * 200_000])  # long enough to take a while in the thread
    ticker.cancel()
    assert ticks > 1


async def test_deployment_embedder_normalises() -> None:
    async def embed_fn(texts: list[str]) -> list[list[float]]:
        return [[3.0, 4.0], [0.0, 0.0]][:len(texts)]

    embedder = DeploymentEmbedder(embed_fn, name="emb-small")
    vectors = await embedder.embed(["a", "b"])
    assert vectors.dtype == np.float32
    assert vectors.tolist() == [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    with pytest.raises(ValueError, match="returned 2 vectors for 3 texts"):
        await embedder.embed(["a", "b", "c"])
    assert unit_rows([[0.0, 2.0]]).tolist() == [[0.0, 1.0]]


# ---------------------------------------------------------------- false hits and paraphrases

FALSE_HITS = [
    ("How do I turn on dark mode?", "How do I turn off dark mode?"),  # polarity
    ("What is 2+2?", "What is 2+3?"),  # numbers
    ("Is Python slow?", "Is Python not slow?"),  # negation
    ('What does the "--force" flag of git push do?', 'What does the "--quiet" flag of git push do?'),  # quoted
    ("Who founded Microsoft?", "Who founded Apple?"),  # capitalised names
    ("How do I log in?", "How do I log out?"),
    ("Does the dog bite the man?", "Does the man bite the dog?"),  # order: the static model scores 1.0
    ("How do I enable logging?", "How do I disable logging?"),
]


@pytest.mark.parametrize(("stored", "asked"), FALSE_HITS)
async def test_false_hit_pairs_miss_even_at_a_permissive_threshold(local: LocalEmbedder, stored: str,
                                                                   asked: str) -> None:
    assert not terms_match(stored, asked)
    index = SemanticIndex(local, threshold=0.8)
    await index.add(query(stored), "key-stored")
    score = await similarity(local, stored, asked)
    print(f"\n{score:.4f}  {stored!r} / {asked!r}")
    assert await index.lookup(query(asked)) is None
    # the pairs the vector alone would serve are refused by the terms check, and counted
    assert index.stats.false_hit_rejections == (1 if score >= 0.8 else 0)
    assert index.stats.misses == 1 and index.stats.hits == 0


PARAPHRASES = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("How do I reset my password?", "How to reset my password?"),
    ("What is the capital of France?", "What's the capital of France?"),
    ("Translate hello to Spanish", "Translate hello into Spanish"),
    ("Why isn't my build working?", "Why is my build not working?"),
]


@pytest.mark.parametrize(("stored", "asked"), PARAPHRASES)
async def test_close_paraphrases_hit_at_the_default_threshold(local: LocalEmbedder, stored: str, asked: str) -> None:
    index = SemanticIndex(local)
    await index.add(query(stored), "key-stored")
    found = await index.lookup(query(asked))
    print(f"\n{found[1] if found else await similarity(local, stored, asked):.4f}  {stored!r} / {asked!r}")
    assert found is not None
    assert found[0] == "key-stored" and found[1] >= index.threshold == 0.95
    assert index.stats.hits == 1


async def test_the_next_best_candidate_is_tried_when_the_best_fails_the_terms_check(local: LocalEmbedder) -> None:
    index = SemanticIndex(local, threshold=0.85)
    await index.add(query("How do I turn off dark mode?"), "key-off")  # 0.957
    await index.add(query("How do I turn on dark mode in the app?"), "key-on")  # 0.911
    found = await index.lookup(query("How do I turn on dark mode?"))
    assert found is not None and found[0] == "key-on"
    assert index.stats.false_hit_rejections == 1  # "turn off" scored higher and was refused


def test_terms_match() -> None:
    assert terms_match("Why isn't it working?", "Why is it not working?")
    assert terms_match("What is two plus two?", "What is 2 plus 2?")
    assert terms_match("Don't use 'foo' here", "Do not use 'foo' here")
    assert terms_match("How do I reset my password?", "how do I reset my password?")  # sentence start
    assert terms_match("I'm stuck. How do I sort a list?", "I'm stuck. How can I sort a list?")
    assert not terms_match("Convert 5 USD to EUR", "Convert 5 EUR to USD")
    assert not terms_match("What is 2+2?", "What is 2*2?")
    assert not terms_match("Is -5 less than 3?", "Is 5 less than 3?")
    assert not terms_match("Is 3.5 bigger than 3.14?", "Is 3.5 bigger than 3.15?")
    assert not terms_match("Explain the `--force` flag", "Explain the `--quiet` flag")
    assert not terms_match("Explain the 'force' flag", "Explain the force flag")
    assert not terms_match("Compare GPT4 and Claude", "Compare GPT5 and Claude")
    assert not terms_match("Tell me about iPhone", "Tell me about Android")
    assert not terms_match("The feature was enabled", "The feature was disabled")
    assert not terms_match("How do I install numpy?", "How do I uninstall numpy?")
    assert not terms_match("Sort the list ascending", "Sort the list descending")
    assert not terms_match("Can I do it without sudo?", "Can I do it with sudo?")
    assert not terms_match("It never fails", "It always fails")


# ---------------------------------------------------------------- what must miss


async def test_a_different_guard_or_scope_misses(local: LocalEmbedder) -> None:
    index = SemanticIndex(local)
    await index.add(query("How do I reset my password?"), "key-1")
    assert await index.lookup(query("How do I reset my password?", guard="guard-2")) is None
    assert await index.lookup(query("How do I reset my password?", scope="team:b")) is None
    assert await index.lookup(query("How do I reset my password?")) == ("key-1", pytest.approx(1.0, abs=1e-5))


async def test_long_conversations_are_neither_looked_up_nor_added(local: LocalEmbedder) -> None:
    index = SemanticIndex(local, max_turns=4)
    await index.add(query("How do I reset my password?", turns=5), "key-long")
    assert index.count("team:a") == 0
    await index.add(query("How do I reset my password?", turns=4), "key-1")
    assert await index.lookup(query("How do I reset my password?", turns=5)) is None
    assert index.stats.skipped_long == 2 and index.stats.lookups == 0
    assert await index.lookup(query("How do I reset my password?", turns=4)) is not None


async def test_a_slow_embedding_is_a_counted_miss() -> None:
    model = FakeModel()
    index = SemanticIndex(DeploymentEmbedder(model), embed_timeout_s=0.05)
    await index.add(query("reset my password"), "key-1")
    model.delay_s = 1.0
    started = time.perf_counter()
    assert await index.lookup(query("please reset my password")) is None
    assert time.perf_counter() - started < 0.5
    assert index.stats.embed_timeouts == 1 and index.stats.misses == 1
    await index.add(query("another prompt"), "key-2")  # an add times out too: nothing stored
    assert index.stats.embed_timeouts == 2 and index.count("team:a") == 1


async def test_a_failing_embedding_is_a_counted_miss() -> None:
    async def broken(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("deployment down")

    index = SemanticIndex(DeploymentEmbedder(broken))
    await index.add(query("reset my password"), "key-1")
    assert index.stats.embed_errors == 1 and index.count("team:a") == 0


async def test_a_lookup_then_add_embeds_once() -> None:
    model = FakeModel()
    index = SemanticIndex(DeploymentEmbedder(model))
    await index.add(query("first prompt here"), "key-1")
    assert await index.lookup(query("a different prompt")) is None
    await index.add(query("a different prompt"), "key-2")
    assert model.calls == 2


async def test_the_oldest_entries_are_evicted_past_the_bound() -> None:
    index = SemanticIndex(DeploymentEmbedder(FakeModel()), max_entries_per_scope=3)
    texts = [f"prompt alpha{i} beta{i} gamma{i}" for i in range(50)]
    for i, text in enumerate(texts):
        await index.add(query(text), f"key-{i}")
        assert index.count("team:a") == min(i + 1, 3)
    assert index.stats.evictions == 47
    assert await index.lookup(query(texts[0])) is None
    assert await index.lookup(query(texts[46])) is None
    for i in (47, 48, 49):
        found = await index.lookup(query(texts[i]))
        assert found is not None and found[0] == f"key-{i}"


async def test_entries_expire_after_the_ttl() -> None:
    now = [1000.0]
    index = SemanticIndex(DeploymentEmbedder(FakeModel()), ttl_s=60, clock=lambda: now[0])
    await index.add(query("reset my password"), "key-old")
    now[0] += 30
    await index.add(query("change my email"), "key-new")
    assert await index.lookup(query("reset my password")) is not None
    now[0] += 31  # the first is 61 s old, the second 31 s
    assert await index.lookup(query("reset my password")) is None
    assert await index.lookup(query("change my email")) is not None
    assert index.count("team:a") == 1


async def test_purge_local() -> None:
    index = SemanticIndex(DeploymentEmbedder(FakeModel()))
    await index.add(query("reset my password"), "k1")
    await index.add(query("reset my password", scope="team:b"), "k2")
    await index.add(query("change my email", scope="team:b"), "k3")
    assert await index.purge("team:b") == 2
    assert await index.lookup(query("reset my password", scope="team:b")) is None
    assert await index.lookup(query("reset my password")) is not None
    assert await index.purge() == 1
    assert index.count("team:a") == 0


# ---------------------------------------------------------------- latency


@pytest.mark.parametrize("entries", [1_000, 10_000])
async def test_lookup_latency(entries: int) -> None:
    rng = np.random.default_rng(7)
    stored = unit_rows(rng.standard_normal((entries, 256)))
    vectors = {f"prompt {i}": stored[i].tolist() for i in range(entries)}

    async def embed_fn(texts: list[str]) -> list[list[float]]:
        return [vectors.get(text) or rng.standard_normal(256).tolist() for text in texts]

    index = SemanticIndex(DeploymentEmbedder(embed_fn), max_entries_per_scope=entries)
    for i in range(entries):
        await index.add(query(f"prompt {i}", guard=f"guard-{i % 2}"), f"key-{i}")
    assert index.count("team:a") == entries
    timings = []
    for i in range(200):
        started = time.perf_counter()
        assert await index.lookup(query(f"new prompt {i}", guard="guard-0")) is None
        timings.append(time.perf_counter() - started)
    median, worst = statistics.median(timings) * 1000, max(timings) * 1000
    print(f"\nlookup at {entries} entries per scope: median {median:.3f} ms, max {worst:.3f} ms")
    assert median < 50
    found = await index.lookup(query("prompt 10", guard="guard-0"))
    assert found is not None and found[0] == "key-10"


# ---------------------------------------------------------------- shared mode (Redis)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"lt-{uuid.uuid4().hex}:"
    yield name
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        async for key in client.scan_iter(match=f"{name}*"):
            await client.unlink(key)
    finally:
        await client.aclose()


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    assert await c.ping()  # no Redis is a failure, not a skip
    yield c
    await c.aclose()


async def test_an_entry_added_on_one_instance_is_found_by_another(local: LocalEmbedder, client: aioredis.Redis,
                                                                  prefix: str) -> None:
    one = SemanticIndex(local, redis=client, redis_prefix=prefix, ttl_s=600)
    two = SemanticIndex(local, redis=client, redis_prefix=prefix, ttl_s=600)
    assert await two.lookup(query("How can I reset my password?")) is None
    await one.add(query("How do I reset my password?"), "key-1")
    found = await two.lookup(query("How can I reset my password?"))
    assert found is not None and found[0] == "key-1"
    assert two.stats.redis_entries == 1 and two.count("team:a") == 1
    assert await two.lookup(query("How can I reset my password?")) is not None  # read once, not twice
    assert two.count("team:a") == 1
    # the instance that added it does not read its own entry back
    assert await one.lookup(query("How can I reset my password?")) is not None
    assert one.stats.redis_entries == 0 and one.count("team:a") == 1
    # other scopes stay apart
    assert await two.lookup(query("How can I reset my password?", scope="team:b")) is None

    stream = f"{prefix}sem:team:a"
    [(_, fields)] = await client.xrange(stream)
    assert set(fields) == {b"vector", b"guard", b"text", b"key", b"created", b"model"}
    assert len(fields[b"vector"]) == 256 * 4 and fields[b"key"] == b"key-1" and fields[b"guard"] == GUARD.encode()
    assert 0 < await client.pttl(stream) <= 600_000


async def test_the_stream_is_capped(client: aioredis.Redis, prefix: str) -> None:
    index = SemanticIndex(DeploymentEmbedder(FakeModel()), redis=client, redis_prefix=prefix, max_entries_per_scope=5)
    for i in range(500):
        await index.add(query(f"prompt alpha{i} beta{i}"), f"key-{i}")
    assert await client.xlen(f"{prefix}sem:team:a") < 200  # MAXLEN ~ trims by whole nodes (100 entries)
    assert await client.pttl(f"{prefix}sem:team:a") == -1  # no ttl_s, no expiry
    other = SemanticIndex(DeploymentEmbedder(FakeModel()), redis=client, redis_prefix=prefix, max_entries_per_scope=5)
    assert await other.lookup(query("prompt alpha499 beta499")) is not None
    assert other.count("team:a") == 5


async def test_entries_of_another_model_are_not_used(local: LocalEmbedder, client: aioredis.Redis,
                                                     prefix: str) -> None:
    one = SemanticIndex(DeploymentEmbedder(FakeModel(), name="other-model"), redis=client, redis_prefix=prefix)
    two = SemanticIndex(local, redis=client, redis_prefix=prefix)
    await one.add(query("How do I reset my password?"), "key-1")
    assert await two.lookup(query("How do I reset my password?")) is None
    assert two.stats.redis_skipped == 1


async def test_purge_reaches_the_other_instances(client: aioredis.Redis, prefix: str) -> None:
    one = SemanticIndex(DeploymentEmbedder(FakeModel()), redis=client, redis_prefix=prefix)
    two = SemanticIndex(DeploymentEmbedder(FakeModel()), redis=client, redis_prefix=prefix)
    await one.add(query("reset my password"), "k1")
    await one.add(query("reset my password", scope="team:b"), "k2")
    await one.add(query("change my email", scope="team:b"), "k3")
    assert await two.lookup(query("reset my password")) is not None
    assert await two.lookup(query("reset my password", scope="team:b")) is not None

    assert await one.purge("team:b") == 2
    assert not await client.exists(f"{prefix}sem:team:b")
    assert await two.lookup(query("reset my password", scope="team:b")) is None  # its copy is dropped too
    assert await two.lookup(query("reset my password")) is not None

    await client.set(f"{prefix}sem:not-a-stream", b"x")  # SCAN ... TYPE stream: other keys are left alone
    assert await two.purge() == 1
    assert await client.exists(f"{prefix}sem:not-a-stream")
    assert await one.lookup(query("reset my password")) is None
    assert one.count("team:a") == 0
    # new entries after a purge are shared again
    await two.add(query("reset my password"), "k4")
    assert await one.lookup(query("reset my password")) == ("k4", pytest.approx(1.0, abs=1e-5))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


async def test_unreachable_redis_falls_back_to_the_local_index(local: LocalEmbedder,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    down = aioredis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=0.5,
                                   socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    index = SemanticIndex(local, redis=down, redis_prefix="lt-down:")
    with caplog.at_level(logging.WARNING, logger="lockgate.cache"):
        await index.add(query("How do I reset my password?"), "key-1")
        found = await index.lookup(query("How can I reset my password?"))
        assert await index.lookup(query("How do I turn on dark mode?")) is None
    assert found is not None and found[0] == "key-1"
    assert index.stats.redis_errors == 3
    assert len([r for r in caplog.records if "Redis" in r.getMessage()]) == 1  # logged once per outage
    with pytest.raises(CacheError):
        await index.purge()
    assert index.count("team:a") == 0
    await down.aclose()


async def test_a_decoding_client_is_refused(local: LocalEmbedder) -> None:
    decoding = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        SemanticIndex(local, redis=decoding)
    await decoding.aclose()
