"""Semantic index of the response cache: for a new request, the exact-cache key of an equivalent earlier one.

Opt-in.  The exact cache stores answers under string keys; this index remembers, per tenant scope, the
embedding of each cached request's prompt text with its key, and answers ``lookup(query)`` with
``(key, similarity)`` of a stored request that

- is in the same ``scope`` (scopes never mix) and has the same ``guard`` (the caller's digest of everything
  but the prompt text: system prompt, tools, parameters, model group, route), exactly;
- scores ``similarity >= threshold`` (dot product of L2-normalised vectors: brute force over a numpy matrix
  per scope, oldest rows evicted past ``max_entries_per_scope``, rows older than ``ttl_s`` never served);
- and passes ``terms_match``: numbers (and the arithmetic between them), negations and polarity words
  (on/off, enable/disable, install/uninstall, more/less, ...), quoted terms and capitalised terms (names
  not at a sentence start, acronyms, camelCase) must be equal, and the words the two texts share must come
  in the same order.  The best few candidates above the threshold are tried (``CANDIDATES``); each one
  refused is counted in ``stats.false_hit_rejections``.

Conversations longer than ``max_turns`` messages are neither looked up nor added.  An embedding slower than
``embed_timeout_s`` (or failing) is a miss, counted in ``stats.embed_timeouts`` (``stats.embed_errors``);
the index never raises from ``lookup`` or ``add``.  The query vector of the last texts looked up is kept
(``RECENT_VECTORS``) so that the usual ``lookup`` miss -> provider call -> ``add`` embeds once.

Threshold (``LocalEmbedder``, WordLlama l2_supercat 256; similarities measured):

- close paraphrases: "How do I reset my password?" / "How can I reset my password?" 0.984, / "How to reset
  my password?" 0.990, / "How can I reset my password" 0.965; "What is the capital of France?" / "What's
  the capital of France?" 0.992; "Translate hello to Spanish" / "... into Spanish" 0.995;
- looser paraphrases (missed at the default): "Write a haiku about the sea" / "... the ocean" 0.944,
  "What is the capital of France?" / "Tell me the capital of France." 0.905;
- different questions a vector alone confuses: "Does the dog bite the man?" / "Does the man bite the dog?"
  1.000, "How do I log in?" / "... log out?" 0.964, "Is Python slow?" / "Is Python not slow?" 0.962,
  "How do I turn on dark mode?" / "... turn off ..." 0.957, "Explain recursion simply" / "... in detail"
  0.931, "Sort the list ascending" / "... descending" 0.901, "What is 2+2?" / "What is 2+3?" 0.865,
  "Who founded Microsoft?" / "Who founded Apple?" 0.478.

So the default ``threshold`` is 0.95: high, as a wrong answer costs more than a miss; it serves close
rewordings, and the pairs above it that differ in meaning (order, polarity, negation) are refused by
``terms_match``; "simply" / "in detail" (0.931) passes that check and is kept apart by the threshold alone.
Lower it only with that in mind; the tests pin the false-hit pairs at 0.8.

Lookup cost (256 dimensions, the 2-core dev machine, two guards in the scope): the search (matrix product,
guard and age masks, best candidates) takes about 0.02 ms at 1,000 entries per scope and 0.07-0.4 ms at
10,000 (the 10 MiB matrix in or out of the CPU cache); a whole lookup with the local model (its thread hop
included) 0.13 ms and 0.2 ms median.  The search runs on the event loop.  A scope holds at most
``max_entries_per_scope`` rows of 1 KiB (in matrices of up to twice that); the number of scopes is not
bounded here.

Shared mode (``redis``: a ``redis.asyncio.Redis`` returning bytes): ``add`` also appends the entry to the
stream ``<redis_prefix>sem:<scope>`` (fields ``vector`` float32 little-endian bytes, ``guard``, ``text``,
``key``, ``created`` epoch seconds, ``model`` the embedder's name) with ``XADD MAXLEN ~ max_entries_per_scope``
and ``PEXPIRE ttl`` in one round trip.  Before a lookup the index reads, in one round trip, the stream's
entries after the last id it has seen (``XRANGE (last +``) and the purge marks (hash
``<redis_prefix>sem-purged``: the time of the last purge of each scope, field ``*`` for all scopes), and adds
the entries to its own index (not its own, nor those of another model or dimension).  A purge on another
instance drops the local entries created before it.  A Redis error is a fall back to the local index:
counted in ``stats.redis_errors`` and logged once per outage.  How long a call may wait is the client's
``socket_timeout``: configure it small.
``purge`` removes the local index and the streams (``SCAN MATCH <prefix>sem:* TYPE stream`` for all scopes)
and raises ``CacheError`` when Redis fails (after the local part is done).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from lockgate.cache.backends import SCAN_COUNT, CacheError, glob_escape, redis_errors
from lockgate.cache.embedder import Embedder, Matrix

if TYPE_CHECKING:  # redis is imported where the shared index's client is made
    from redis.asyncio import Redis

log = logging.getLogger("lockgate.cache")

CANDIDATES = 5  # vector hits above the threshold whose terms are checked, best first
RECENT_VECTORS = 256  # query vectors kept for the add that follows a missed lookup
FIRST_ROWS = 64  # rows allocated for a new scope; doubled as needed up to 2 x max_entries_per_scope


# ---------------------------------------------------------------- terms

# letters first (digits are numbers); apostrophes inside (don't, Microsoft's)
WORD = re.compile(r"[^\W\d_][\w'’]*")
# a sentence ends at . ! ? : ; not followed by a word character (3.5, e.g, file.txt do not end one), or a newline
BOUNDARY = re.compile(r"[.!?:;](?!\w)|\n")
TOKEN = re.compile(f"{WORD.pattern}|{BOUNDARY.pattern}")
# numbers (a leading minus when it is a sign) and the arithmetic operator between two numbers
MATH = re.compile(r"(?:(?<![\w.)])-)?\d+(?:\.\d+)?|(?<=[\d)])\s*[-+*/^%×÷=<>]\s*(?=[-(\d])")
POSSESSIVE = re.compile(r"['’]s$")
QUOTED = re.compile(r"\"([^\"\n]+)\"|“([^”\n]+)”|‘([^’\n]+)’|(?<![\w'])'([^'\n]+)'(?!\w)|(`+)(.+?)\5", re.S)

UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
]
TENS = ["thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
NUMBER_WORDS = {word: str(value) for value, word in enumerate(UNITS)} | {
    word: str(10 * value) for value, word in enumerate(TENS, 3)
} | {"hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000", "dozen": "12"}

NEGATIONS = frozenset([
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without",
])
# words whose opposite a static embedding places next to them: present in one text, they must be in the other
POLARITY = frozenset([
    "on", "off", "up", "down", "out", "enable", "disable", "activate", "deactivate", "allow", "disallow",
    "deny", "block", "unblock", "permit", "forbid", "start", "stop", "begin", "end", "open", "close", "show",
    "hide", "lock", "unlock", "include", "exclude", "add", "remove", "delete", "create", "increase", "decrease",
    "raise", "accept", "reject", "true", "false", "yes", "min", "max", "minimum", "maximum", "before", "after",
    "above", "below", "over", "under", "more", "less", "fewer", "most", "least", "greater", "smaller", "larger",
    "bigger", "higher", "lower", "longer", "shorter", "faster", "slower", "better", "worse", "best", "worst",
    "first", "last", "encrypt", "decrypt", "encode", "decode", "compress", "decompress", "zip", "unzip",
    "import", "export", "upload", "download", "install", "uninstall", "connect", "disconnect", "subscribe",
    "unsubscribe", "mount", "unmount", "login", "logout", "signin", "signout", "signup", "ascending",
    "descending", "asc", "desc", "push", "pull", "send", "receive", "left", "right", "success", "failure",
    "fail", "succeed", "valid", "invalid", "safe", "unsafe", "secure", "insecure", "sync", "async", "pros",
    "cons", "advantage", "disadvantage", "benefit", "drawback", "positive", "negative",
])
IRREGULAR = {"hidden": "hide", "hid": "hide", "began": "begin", "begun": "begin", "cannot": "not",
             "can't": "not", "won't": "not", "shan't": "not", "shown": "show"}


@dataclass(frozen=True, slots=True)
class Terms:
    """What of a text must be equal for two similar vectors to be the same question."""

    math: tuple[str, ...]  # numbers and operators, in order
    polarity: frozenset[str]  # negations ("not" for n't) and polarity words, by their base form
    quoted: frozenset[str]
    named: frozenset[str]  # capitalised not at a sentence start, acronyms, camelCase
    once: tuple[str, ...]  # lowercased words that occur once, in order

    @classmethod
    def of(cls, text: str) -> Terms:
        math = [(m.start(), m.group().strip()) for m in MATH.finditer(text)]
        polarity: set[str] = set()
        named: set[str] = set()
        words: list[str] = []
        at_start = True
        for m in TOKEN.finditer(text):
            token = m.group()
            if BOUNDARY.fullmatch(token):
                at_start = True
                continue
            word = token.lower().replace("’", "'")
            words.append(word)
            if word in NUMBER_WORDS:
                math.append((m.start(), NUMBER_WORDS[word]))
            base = polarity_base(word)
            if base:
                polarity.add(base)
            name = POSSESSIVE.sub("", token)
            if name != "I" and not name.startswith(("I'", "I’")) and (
                    any(c.isupper() for c in name[1:]) or (name[0].isupper() and not at_start)):
                named.add(name)
            at_start = False
        counts = Counter(words)
        return cls(
            math=tuple(token for _, token in sorted(math)),
            polarity=frozenset(polarity),
            quoted=frozenset(quoted(m) for m in QUOTED.finditer(text)),
            named=frozenset(named),
            once=tuple(word for word in words if counts[word] == 1),
        )

    def agrees(self, other: Terms) -> bool:
        if (self.math, self.polarity, self.quoted, self.named) != (other.math, other.polarity, other.quoted,
                                                                    other.named):
            return False
        shared = set(self.once) & set(other.once)
        return [w for w in self.once if w in shared] == [w for w in other.once if w in shared]


def quoted(m: re.Match[str]) -> str:
    """The text between the quotes of a ``QUOTED`` match (group 5 is the backtick run)."""
    return next(g for i, g in enumerate(m.groups(), 1) if g and i != 5).strip()


def polarity_base(word: str) -> str | None:
    """The negation or polarity word ``word`` is a form of ("not" for any n't), or None."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if word.endswith("n't"):
        return "not"
    if word in NEGATIONS or word in POLARITY:
        return word
    for suffix in ("s", "es", "d", "ed", "ing", "n"):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            stem = word[:-len(suffix)]
            for base in (stem, stem + "e", stem[:-1] if stem[-1] == stem[-2] else ""):
                if base in POLARITY:
                    return base
    return None


def terms_match(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` agree on numbers, negations and polarity words, quoted and capitalised
    terms, and the order of the words they share: the check a vector hit must pass to be served."""
    return Terms.of(a).agrees(Terms.of(b))


# ---------------------------------------------------------------- index


@dataclass
class SemanticQuery:
    scope: str  # tenant scope, e.g. "team:abc" (never mixed)
    guard: str  # digest of everything but the prompt text; must match exactly for a hit
    text: str  # the user's prompt text (the last user turn)
    turns: int  # number of messages in the conversation


@dataclass
class SemanticStats:
    lookups: int = 0  # lookups of conversations short enough
    hits: int = 0
    misses: int = 0
    false_hit_rejections: int = 0  # vector candidates refused by terms_match
    skipped_long: int = 0  # lookups and adds skipped for turns > max_turns
    embed_timeouts: int = 0
    embed_errors: int = 0
    adds: int = 0
    evictions: int = 0  # oldest rows dropped past max_entries_per_scope
    redis_errors: int = 0
    redis_entries: int = 0  # entries of other instances read from Redis
    redis_skipped: int = 0  # entries read but not used (another model or dimension, malformed)


@dataclass(slots=True)
class _Entry:
    guard: str
    text: str
    key: str
    created: float  # epoch seconds
    terms: Terms | None = None  # computed when the entry is first a candidate

    def agrees(self, terms: Terms) -> bool:
        if self.terms is None:
            self.terms = Terms.of(self.text)
        return self.terms.agrees(terms)


@dataclass(slots=True)
class _Scope:
    """The rows ``start:end`` of the matrices are the live entries, oldest first (``entries`` is aligned)."""

    vectors: Matrix | None = None
    created: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    guards: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    guard_ids: dict[str, int] = field(default_factory=dict)
    entries: list[_Entry] = field(default_factory=list)
    start: int = 0
    end: int = 0
    last_id: tuple[int, int] = (0, 0)  # the last stream id read from Redis
    own_ids: set[bytes] = field(default_factory=set)  # ids of our own XADDs, not to be read back
    purged_at: float = -math.inf  # the latest purge applied: entries created until then are gone

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, vector: Matrix, entry: _Entry, most: int) -> None:
        """Add a row at the end; when the matrices are full, compact them (doubled, up to ``2 * most`` rows,
        if more than half is live): amortised O(1) per row."""
        if self.vectors is None:
            self._resize(FIRST_ROWS, len(vector))
        elif self.end == self.vectors.shape[0]:
            rows = self.vectors.shape[0]
            self._resize(max(min(2 * rows, 2 * most), len(self) + 1) if 2 * len(self) > rows else rows,
                         self.vectors.shape[1])
        assert self.vectors is not None
        self.vectors[self.end] = vector
        self.created[self.end] = entry.created
        self.guards[self.end] = self.guard_ids.setdefault(entry.guard, len(self.guard_ids))
        self.entries.append(entry)
        self.end += 1

    def drop_oldest(self, count: int) -> None:
        self.start += count

    def drop_expired(self, cutoff: float) -> None:
        while self.start < self.end and self.created[self.start] <= cutoff:
            self.start += 1

    def search(self, vector: Matrix, guard: str, threshold: float, cutoff: float) -> list[tuple[_Entry, float]]:
        """The best ``CANDIDATES`` live rows of ``guard`` scoring at least ``threshold``, best first."""
        gid = self.guard_ids.get(guard)
        if gid is None or self.vectors is None or len(vector) != self.vectors.shape[1]:
            return []
        rows = slice(self.start, self.end)
        scores = self.vectors[rows] @ vector
        usable = (self.guards[rows] == gid) & (self.created[rows] > cutoff) & (scores >= threshold)
        found = np.flatnonzero(usable)
        if len(found) > CANDIDATES:
            found = found[np.argpartition(-scores[found], CANDIDATES)[:CANDIDATES]]
        found = found[np.argsort(-scores[found], kind="stable")]
        return [(self.entries[self.start + i], float(scores[i])) for i in found]

    def drop_until(self, cutoff: float) -> None:
        """Drop the entries created at or before ``cutoff`` (epoch seconds), wherever they are."""
        if self.vectors is None:
            return
        keep = np.flatnonzero(self.created[self.start:self.end] > cutoff) + self.start
        vectors, created = self.vectors[keep], self.created[keep]
        self.entries = [self.entries[i] for i in keep]
        self.vectors, self.created = vectors, created
        self.start, self.end = 0, len(keep)
        self._resize(max(FIRST_ROWS, 2 * len(keep)), vectors.shape[1])

    def has(self, guard: str) -> bool:
        return guard in self.guard_ids and len(self) > 0

    def _resize(self, rows: int, dim: int) -> None:
        """Move the live rows to the front of matrices of ``rows`` rows; guard ids renumbered."""
        live = self.entries[self.start:self.end]
        vectors = np.zeros((rows, dim), dtype=np.float32)
        created = np.zeros(rows)
        if self.vectors is not None:
            vectors[:len(live)] = self.vectors[self.start:self.end]
            created[:len(live)] = self.created[self.start:self.end]
        self.guard_ids = {}
        guards = np.zeros(rows, dtype=np.int64)
        for row, entry in enumerate(live):
            guards[row] = self.guard_ids.setdefault(entry.guard, len(self.guard_ids))
        self.vectors, self.created, self.guards, self.entries = vectors, created, guards, live
        self.start, self.end = 0, len(live)


class SemanticIndex:
    def __init__(self, embedder: Embedder, *, threshold: float = 0.95, max_entries_per_scope: int = 10_000,
                 max_turns: int = 4, embed_timeout_s: float = 0.5, redis: Redis | None = None,
                 redis_prefix: str = "", ttl_s: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if max_entries_per_scope <= 0:
            raise ValueError(f"max_entries_per_scope must be positive, got {max_entries_per_scope}")
        if redis is not None and redis.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the semantic cache needs a Redis client with decode_responses=False (vectors are bytes)")
        self.embedder = embedder
        self.threshold = threshold
        self.max_entries_per_scope = max_entries_per_scope
        self.max_turns = max_turns
        self.embed_timeout_s = embed_timeout_s
        self.redis = redis
        self.redis_prefix = redis_prefix
        self.ttl_s = ttl_s
        self.stats = SemanticStats()
        self._clock = clock  # epoch seconds: entries' ages are compared across instances
        self._scopes: dict[str, _Scope] = {}
        self._recent: OrderedDict[str, Matrix] = OrderedDict()
        self._down = False  # a Redis outage is being reported: warned once, not yet recovered

    async def lookup(self, q: SemanticQuery) -> tuple[str, float] | None:
        """``(exact-cache key, similarity)`` of a stored equivalent request, or None.  Never raises."""
        if q.turns > self.max_turns:
            self.stats.skipped_long += 1
            return None
        self.stats.lookups += 1
        if self.redis is not None:
            await self._pull(q.scope)
        found = None
        if (scope := self._scopes.get(q.scope)) is not None and scope.has(q.guard):
            found = await self._search(q)
        if found is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return found

    async def add(self, q: SemanticQuery, key: str) -> None:
        """Remember that the answer to ``q`` is cached under ``key``.  Never raises."""
        if q.turns > self.max_turns:
            self.stats.skipped_long += 1
            return
        vector = await self._vector(q.text)
        if vector is None:
            return
        entry = _Entry(q.guard, q.text, key, self._clock())
        scope = self._scopes.setdefault(q.scope, _Scope())
        self._insert(scope, vector, entry)
        self.stats.adds += 1
        if self.redis is not None:
            await self._push(q.scope, vector, entry)

    async def purge(self, scope: str | None = None) -> int:
        """Forget one scope, or all; how many entries (in shared mode: of the Redis streams) were removed.

        Raises ``CacheError`` when Redis fails, after the local index is emptied.
        """
        if scope is None:
            local = sum(self.count(name) for name in self._scopes)
            self._scopes.clear()
        else:
            local = self.count(scope)
            self._scopes.pop(scope, None)
        self._recent.clear()
        if self.redis is None:
            return local
        try:
            return await self._purge_streams(scope)
        except redis_errors() as e:
            self._failed("purge", e)
            raise CacheError(f"semantic cache: Redis purge under {self.redis_prefix!r} failed: "
                             f"{type(e).__name__}: {e}") from e

    def count(self, scope: str) -> int:
        """Live entries of ``scope`` in this instance's index."""
        found = self._scopes.get(scope)
        if found is None:
            return 0
        found.drop_expired(self._cutoff())
        return len(found)

    # ------------------------------------------------------------ local

    async def _search(self, q: SemanticQuery) -> tuple[str, float] | None:
        vector = await self._vector(q.text)
        scope = self._scopes.get(q.scope)  # again: a purge may have run meanwhile
        if vector is None or scope is None:
            return None
        candidates = scope.search(vector, q.guard, self.threshold, self._cutoff())
        if not candidates:
            return None
        terms = Terms.of(q.text)
        for entry, score in candidates:
            if entry.agrees(terms):
                return entry.key, score
            self.stats.false_hit_rejections += 1
        return None

    async def _vector(self, text: str) -> Matrix | None:
        vector = self._recent.get(text)
        if vector is not None:
            self._recent.move_to_end(text)
            return vector
        try:
            vector = (await asyncio.wait_for(self.embedder.embed([text]), self.embed_timeout_s))[0]
        except TimeoutError:
            self.stats.embed_timeouts += 1
            return None
        except Exception as e:  # noqa: BLE001 - a failing embedder is a miss, never a failed request
            self.stats.embed_errors += 1
            log.warning("semantic cache: embedding failed (%s: %s)", type(e).__name__, e)
            return None
        self._recent[text] = vector
        if len(self._recent) > RECENT_VECTORS:
            self._recent.popitem(last=False)
        return vector

    def _insert(self, scope: _Scope, vector: Matrix, entry: _Entry) -> None:
        if scope.vectors is not None and len(vector) != scope.vectors.shape[1]:
            self.stats.redis_skipped += 1  # another model's dimension: only from a misconfigured instance
            return
        scope.append(vector, entry, self.max_entries_per_scope)
        scope.drop_expired(self._cutoff())
        if len(scope) > self.max_entries_per_scope:
            excess = len(scope) - self.max_entries_per_scope
            scope.drop_oldest(excess)
            self.stats.evictions += excess

    def _cutoff(self) -> float:
        """Entries created at or before this epoch time have expired."""
        return -math.inf if self.ttl_s is None else self._clock() - self.ttl_s

    # ------------------------------------------------------------ shared (Redis)

    def _stream(self, scope: str) -> str:
        return f"{self.redis_prefix}sem:{scope}"

    def _marks_key(self) -> str:
        return f"{self.redis_prefix}sem-purged"

    async def _push(self, scope: str, vector: Matrix, entry: _Entry) -> None:
        assert self.redis is not None
        fields: dict[str, bytes | str] = {
            "vector": vector.astype("<f4").tobytes(), "guard": entry.guard, "text": entry.text, "key": entry.key,
            "created": repr(entry.created), "model": self.embedder.name,
        }
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._stream(scope), fields,  # type: ignore[arg-type]
                          maxlen=self.max_entries_per_scope, approximate=True)
                if self.ttl_s is not None:
                    pipe.pexpire(self._stream(scope), max(1, math.ceil(self.ttl_s * 1000)))
                added = cast(list[bytes], await pipe.execute())[0]
        except redis_errors() as e:
            self._failed("add", e)
            return
        self._succeeded()
        state = self._scopes.get(scope)
        if state is not None:
            if len(state.own_ids) >= self.max_entries_per_scope:
                state.own_ids.clear()  # never read back (no lookups here): at worst a few duplicates
            state.own_ids.add(added)

    async def _pull(self, scope: str) -> None:
        """Add the stream's entries newer than the last one seen to the local index (one round trip)."""
        assert self.redis is not None
        state = self._scopes.setdefault(scope, _Scope())
        after = state.last_id
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xrange(self._stream(scope), min=f"({after[0]}-{after[1]}" if after != (0, 0) else "-",
                            count=self.max_entries_per_scope)
                pipe.hmget(self._marks_key(), [scope, "*"])
                read, marks = cast(tuple[list[tuple[bytes, dict[bytes, bytes]]], list[bytes | None]],
                                   await pipe.execute())
        except redis_errors() as e:
            self._failed("read", e)
            return
        self._succeeded()
        current = self._scopes.get(scope)
        if current is None:
            return  # purged meanwhile
        state = current
        purged_at = max((float(mark) for mark in marks if mark is not None), default=-math.inf)
        if purged_at > state.purged_at:  # a purge by any instance: drop what was added before it
            state.drop_until(purged_at)
            state.purged_at = purged_at
        for stream_id, fields in read:
            position = stream_position(stream_id)
            if position <= state.last_id:
                continue  # read by a concurrent lookup
            state.last_id = position
            if stream_id in state.own_ids:
                state.own_ids.discard(stream_id)
                continue
            parsed = self._parse(fields)
            if parsed is None:
                self.stats.redis_skipped += 1
                continue
            self.stats.redis_entries += 1
            self._insert(state, *parsed)

    def _parse(self, fields: dict[bytes, bytes]) -> tuple[Matrix, _Entry] | None:
        try:
            if fields[b"model"].decode() != self.embedder.name:
                return None
            vector = np.frombuffer(fields[b"vector"], dtype="<f4").astype(np.float32)
            entry = _Entry(fields[b"guard"].decode(), fields[b"text"].decode(), fields[b"key"].decode(),
                           float(fields[b"created"]))
        except (KeyError, ValueError):  # UnicodeDecodeError is a ValueError
            return None
        return vector, entry

    async def _purge_streams(self, scope: str | None) -> int:
        assert self.redis is not None
        mark = repr(self._clock())
        if scope is not None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self._stream(scope))
                pipe.unlink(self._stream(scope))
                pipe.hset(self._marks_key(), scope, mark)
                removed = cast(int, (await pipe.execute())[0])
        else:
            removed = 0
            async for batch in self._stream_batches():
                async with self.redis.pipeline(transaction=False) as pipe:
                    for name in batch:
                        pipe.xlen(name)
                    pipe.unlink(*batch)
                    removed += sum(cast(list[int], await pipe.execute())[:-1])
            await self.redis.hset(self._marks_key(), "*", mark)
        self._succeeded()
        return removed

    async def _stream_batches(self) -> AsyncIterator[list[bytes]]:
        assert self.redis is not None
        match = glob_escape(self._stream("")) + "*"
        cursor = 0
        while True:
            cursor, found = await self.redis.scan(cursor, match=match, count=SCAN_COUNT, _type="stream")
            if found:
                yield cast(list[bytes], found)
            if cursor == 0:
                break

    def _failed(self, operation: str, error: Exception) -> None:
        self.stats.redis_errors += 1
        if not self._down:
            self._down = True
            log.warning("semantic cache: Redis %s failed, using this instance's index until it answers again "
                        "(%s: %s)", operation, type(error).__name__, error)

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            log.info("semantic cache: Redis answers again (%d failed calls so far)", self.stats.redis_errors)


def stream_position(stream_id: bytes) -> tuple[int, int]:
    """A Redis stream id (``b"<ms>-<seq>"``) as a comparable pair."""
    ms, _, seq = stream_id.partition(b"-")
    return int(ms), int(seq)
