"""PII detection and request-scoped reversible masking: LiteLLM's `presidio` guardrail, in process and offline.

LiteLLM sends the text to a Presidio analyzer server.  Here Presidio's own *pattern* recognizers run in process,
with their validators (Luhn for cards, mod-97 for IBANs, the SSN rules, checksums for crypto addresses,
`phonenumbers` for phones), and without Presidio's AnalyzerEngine: that engine wants a spaCy model, which is a
download.  What the engine adds on top of the recognizers is redone here in a few lines: the context-word boost
(+0.35, at least 0.4, when one of the recognizer's context words is among the five words before the match;
Presidio compares spaCy lemmas, this compares lower-cased words by substring, which covers plurals and
"-ed" forms), the per-entity score thresholds (LiteLLM's `presidio_score_thresholds`, with its "ALL" key),
and overlap resolution (the higher score wins, then the longer span).  Two fixes to Presidio's URL pattern,
which has no word boundaries: a match starting or ending inside a word is dropped ('ctx.body' gave 'ctx.bo'),
and sentence punctuation after a path is left out.

Offline: the e-mail validator uses tldextract, whose default extractor fetches the public-suffix list and caches
it under ~/.cache; the e-mail recognizer here gets its own extractor on the snapshot bundled with tldextract
(no URL, no cache directory), so nothing is fetched or written.  PERSON (and LOCATION, ...) need spaCy's NER
model, which no official PyPI package ships: they are not supported, and asking for them is a config error.

Phones: Presidio's PhoneRecognizer runs phonenumbers' matcher over the whole text once per region (8 regions),
about 10 ms per KB.  Here it runs only on windows around runs of digits long enough to be a valid number in one
of those regions (padded to whitespace), with the same results (tests compare both), and with the spans of
detections that outrank any phone (cards, IBANs, e-mails: score 1.0 > 0.75) blanked, since a phone there would
lose the overlap anyway.

Measured on this machine (2 cores, Python 3.11, presidio-analyzer 2.2.366, best of 5 x 50 calls):
  - first analyze() in a fresh process (imports presidio, spaCy (presidio imports it even though it is not
    used here), phonenumbers and tldextract, builds the recognizers): 1.2-1.35 s, RSS 12 MB -> 114 MB;
  - warm analyze() of 1 KB: 5.6 ms for dense PII (e-mail, two phones, card, IBAN, IP, URL, four times over;
    Presidio's whole-text PhoneRecognizer alone took 10-15 ms on it), 0.7 ms for prose, 0.45 ms for Python code;
  - install: presidio-analyzer brings spaCy, thinc, blis and ~20 smaller packages, ~+250 MB of site-packages.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from lockgate.guardrails.types import Action, Detection, Verdict

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer
    from presidio_analyzer.nlp_engine import NlpArtifacts

SUPPORTED = frozenset(
    {
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
        "URL",
        "CRYPTO",
        "US_BANK_NUMBER",
    }
)
NEEDS_NER = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})  # spaCy NER only: a model download

_ACTIONS: dict[str, Action] = {"MASK": "mask", "BLOCK": "block"}
_CONTEXT_BOOST = 0.35  # Presidio's LemmaContextAwareEnhancer defaults
_CONTEXT_FLOOR = 0.4
_CONTEXT_WORDS_BEFORE = 5
_STOP_WORDS = frozenset(
    (
        *("a", "an", "the", "is", "are", "was", "were", "be", "been", "am", "as", "here", "there", "and", "or"),
        *("i", "me", "my", "we", "our", "us", "you", "your", "he", "him", "his", "she", "her", "it", "its"),
        *("they", "them", "their", "this", "that", "these", "those", "of", "to", "at", "in", "on", "for", "from"),
        *("by", "with"),
    )
)
_WORD = re.compile(r"[^\W\d_]+")
_TOKEN = re.compile(r"<[A-Z][A-Z0-9_]*_[0-9]+>")
# A superset of what phonenumbers' matcher can take as one number: digits, punctuation, spaces and 'x'.
_DIGIT_RUN = re.compile(r"(?:[\d\W_]|[xX])+")
_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")  # PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS
_WINDOW_PAD = 40


@dataclass(frozen=True, slots=True)
class _Recognizer:
    entity: str
    impl: EntityRecognizer
    context: tuple[str, ...]
    min_digits: int = 0  # > 0: run only on windows around digit runs at least this long (phones)
    ceiling: float = 1.0  # the highest score it can give, context included


class PiiDetector:
    """Finds PII entities; one per guardrail configuration, shared by all requests (thread-safe)."""

    supported: frozenset[str] = SUPPORTED

    def __init__(
        self,
        entities: dict[str, str] | None,
        *,
        language: str = "en",
        thresholds: dict[str, float] | None = None,
    ) -> None:
        if entities is None:
            entities = dict.fromkeys(SUPPORTED, "MASK")
        unknown = sorted(set(entities) - SUPPORTED)
        if unknown:
            ner = [name for name in unknown if name in NEEDS_NER]
            why = f" ({', '.join(ner)} need an NER model, which is not available offline)" if ner else ""
            raise ValueError(f"unsupported PII entities: {', '.join(unknown)}{why}; supported: {sorted(SUPPORTED)}")
        actions: dict[str, Action] = {}
        for name, action in entities.items():
            if str(action).upper() not in _ACTIONS:
                raise ValueError(f"PII entity {name}: action must be MASK or BLOCK, not {action!r}")
            actions[name] = _ACTIONS[str(action).upper()]
        self.actions = actions
        self.language = language
        self.thresholds = dict(thresholds or {})
        self._recognizers: tuple[_Recognizer, ...] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Import Presidio and build the recognizers (the first analyze() does it; call early to warm up)."""
        self._loaded()

    def _loaded(self) -> tuple[_Recognizer, ...]:
        recognizers = self._recognizers
        if recognizers is None:
            with self._lock:
                if self._recognizers is None:
                    self._recognizers = _build(self.language, frozenset(self.actions))
                recognizers = self._recognizers
        return recognizers

    def analyze(self, text: str) -> list[Detection]:
        """Non-overlapping detections sorted by start, each with its configured action."""
        if not text.strip():
            return []
        found: list[Detection] = []
        for recognizer in self._loaded():  # the windowed (phone) recognizers come last
            scanned = _blank_outranking(text, found, recognizer.ceiling) if recognizer.min_digits else text
            for start, end, score in _run(recognizer, scanned):
                if recognizer.context and score < 1.0 and _has_context(text, start, recognizer.context):
                    score = min(1.0, max(score + _CONTEXT_BOOST, _CONTEXT_FLOOR))
                if score < self._threshold(recognizer.entity):
                    continue
                if recognizer.entity == "URL":
                    end = len(text[start:end].rstrip(".,;:!?")) + start  # sentence punctuation after a path
                    if _cut_in_word(text, start, end):
                        continue
                found.append(Detection(recognizer.entity, start, end, score, self.actions[recognizer.entity]))
        return _non_overlapping(found)

    def _threshold(self, entity: str) -> float:
        threshold = self.thresholds.get(entity, self.thresholds.get("ALL"))
        return 0.0 if threshold is None else threshold


def _build(language: str, entities: frozenset[str]) -> tuple[_Recognizer, ...]:
    import phonenumbers
    import tldextract
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsBankRecognizer,
        UsSsnRecognizer,
    )

    # The suffix-list snapshot bundled with tldextract: no download, no cache directory.
    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    factories: dict[str, Callable[[], EntityRecognizer]] = {
        "EMAIL_ADDRESS": lambda: OfflineEmailRecognizer(supported_language=language),
        "PHONE_NUMBER": lambda: PhoneRecognizer(supported_language=language, supported_regions=_PHONE_REGIONS),
        "CREDIT_CARD": lambda: CreditCardRecognizer(supported_language=language),
        "IBAN_CODE": lambda: IbanRecognizer(supported_language=language),
        "US_SSN": lambda: UsSsnRecognizer(supported_language=language),
        "IP_ADDRESS": lambda: IpRecognizer(supported_language=language),
        "URL": lambda: UrlRecognizer(supported_language=language),
        "CRYPTO": lambda: CryptoRecognizer(supported_language=language),
        "US_BANK_NUMBER": lambda: UsBankRecognizer(supported_language=language),
    }
    # The fewest digits a valid number has in any of the regions: shorter digit runs are skipped.
    phone_min_digits = 1
    lengths = []
    for region in _PHONE_REGIONS:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        desc = metadata.general_desc if metadata is not None else None
        if desc is None or not desc.possible_length:
            break
        lengths.append(min(desc.possible_length))
    else:
        phone_min_digits = min(lengths)
    built = []
    for entity in sorted(entities, key=lambda name: (name == "PHONE_NUMBER", name)):
        impl = factories[entity]()
        context = tuple(word.lower() for word in (impl.context or ()))
        if entity == "PHONE_NUMBER":
            ceiling = min(1.0, max(PhoneRecognizer.SCORE + _CONTEXT_BOOST, _CONTEXT_FLOOR))
            built.append(_Recognizer(entity, impl, context, phone_min_digits, ceiling))
        else:
            built.append(_Recognizer(entity, impl, context))
    return tuple(built)


def _run(recognizer: _Recognizer, text: str) -> list[tuple[int, int, float]]:
    entities = [recognizer.entity]
    no_nlp = cast("NlpArtifacts", None)  # pattern recognizers take None (Presidio's own default), typed otherwise
    if not recognizer.min_digits:
        return [(r.start, r.end, r.score) for r in recognizer.impl.analyze(text, entities, no_nlp) if r.score > 0]
    spans = []
    for lo, hi in digit_windows(text, recognizer.min_digits):
        for r in recognizer.impl.analyze(text[lo:hi], entities, no_nlp):
            if r.score > 0:
                spans.append((lo + r.start, lo + r.end, r.score))
    return spans


def digit_windows(text: str, min_digits: int) -> list[tuple[int, int]]:
    """Disjoint spans of `text` around each run of digits and punctuation holding at least `min_digits` digits,
    padded by a few words on each side and widened to whitespace (so no word or number is cut)."""
    windows: list[tuple[int, int]] = []
    size = len(text)
    for match in _DIGIT_RUN.finditer(text):
        run = match.group()
        if sum(ch.isdigit() for ch in run) < min_digits:
            continue
        lo, hi = max(0, match.start() - _WINDOW_PAD), min(size, match.end() + _WINDOW_PAD)
        limit = max(0, lo - _WINDOW_PAD)
        while lo > limit and not text[lo - 1].isspace():
            lo -= 1
        limit = min(size, hi + _WINDOW_PAD)
        while hi < limit and not text[hi].isspace():
            hi += 1
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    return windows


def _blank_outranking(text: str, found: list[Detection], ceiling: float) -> str:
    """`text` with the spans that outrank anything the next recognizer can find blanked out: its matches there
    would lose the overlap anyway, and phonenumbers would spend most of its time on card and IBAN digits."""
    spans = [d for d in _non_overlapping(found) if d.score > ceiling]
    if not spans:
        return text
    parts: list[str] = []
    at = 0
    for d in spans:
        parts += (text[at : d.start], " " * (d.end - d.start))
        at = d.end
    parts.append(text[at:])
    return "".join(parts)


def _cut_in_word(text: str, start: int, end: int) -> bool:
    """Presidio's URL pattern has no word boundaries: 'ctx.body' yields 'ctx.bo' (.bo is a TLD).  Such matches,
    starting or ending inside a word, are dropped."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return before.isalnum() or before == "_" or after.isalnum() or after == "_"


def _has_context(text: str, start: int, context: Sequence[str]) -> bool:
    before = [w.lower() for w in _WORD.findall(text, max(0, start - 300), start)]
    words = [w for w in before if w not in _STOP_WORDS][-_CONTEXT_WORDS_BEFORE:]
    return any(c in w for c in context for w in words)


def _non_overlapping(found: list[Detection]) -> list[Detection]:
    kept: list[Detection] = []
    for d in sorted(found, key=lambda d: (-d.score, -(d.end - d.start), d.start)):
        if all(d.end <= k.start or d.start >= k.end for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: d.start)


class MaskSession:
    """Request-scoped reversible masking: '<EMAIL_ADDRESS_1>' style tokens; the same value gets the same token
    within the session; two sessions never share a map."""

    def __init__(self, detector: PiiDetector) -> None:
        self.detector = detector
        self._values: dict[str, str] = {}  # token -> original value
        self._tokens: dict[tuple[str, str], str] = {}  # (entity, value) -> token
        self._counts: dict[str, int] = {}  # entity -> last number used

    def mask(self, text: str) -> Verdict:
        """'block' (text unchanged) if a BLOCK entity is found, else 'mask' with tokens in place, else 'pass'.
        This session's own tokens already in the text (a later turn of the conversation) are left as they are."""
        scanned = _TOKEN.sub(self._blank_own, text) if self._values and "<" in text else text
        detections = self.detector.analyze(scanned)
        if not detections:
            return Verdict("pass", text)
        blocked = sorted({d.type for d in detections if d.action == "block"})
        if blocked:
            return Verdict("block", text, detections, message=f"PII not allowed: {', '.join(blocked)}")
        parts: list[str] = []
        at = 0
        for d in detections:
            parts += (text[at : d.start], self._token(d.type, text[d.start : d.end], text))
            at = d.end
        parts.append(text[at:])
        return Verdict("mask", "".join(parts), detections)

    def _blank_own(self, match: re.Match[str]) -> str:
        token = match.group()
        return " " * len(token) if token in self._values else token

    def _token(self, entity: str, value: str, text: str) -> str:
        token = self._tokens.get((entity, value))
        if token is None:
            number = self._counts.get(entity, 0)
            while True:  # never a token that the text already holds literally (restore would change it)
                number += 1
                token = f"<{entity}_{number}>"
                if token not in text:
                    break
            self._counts[entity] = number
            self._tokens[(entity, value)] = token
            self._values[token] = value
        return token

    def is_token_prefix(self, text: str) -> bool:
        """Whether `text` is the beginning of one of this session's tokens (a stream may have cut it)."""
        return any(token.startswith(text) for token in self._values)

    def restore(self, text: str) -> str:
        """This session's tokens back to the original values; any other text, token-like or not, is left as is."""
        if not self._values or "<" not in text:
            return text
        return _TOKEN.sub(lambda m: self._values.get(m.group(), m.group()), text)

    def restore_json(self, text: str) -> str:
        """restore() inside JSON text (tool-call arguments): the values are escaped for a JSON string."""
        if not self._values or "<" not in text:
            return text
        return _TOKEN.sub(lambda m: _json_escaped(self._values[m.group()]) if m.group() in self._values
                          else m.group(), text)

    def restorer(self, *, in_json: bool = False) -> StreamRestorer:
        """A restorer for one stream (one per choice, or per tool call's arguments with in_json=True)."""
        return StreamRestorer(self, in_json=in_json)


def _json_escaped(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


class StreamRestorer:
    """Restores tokens in a stream of text chunks, holding back a possible token cut at the end of a chunk."""

    def __init__(self, session: MaskSession, *, in_json: bool = False) -> None:
        self._session = session
        self._restore = session.restore_json if in_json else session.restore
        self._held = ""

    def feed(self, chunk: str) -> str:
        """What can be emitted now: everything but a trailing prefix of one of the session's tokens."""
        text = self._held + chunk
        cut = self._partial_token_start(text)
        self._held = text[cut:]
        return self._restore(text[:cut])

    def flush(self) -> str:
        """The end of the stream: what was held back (a partial token that never completed stays as it is)."""
        text, self._held = self._held, ""
        return self._restore(text)

    def _partial_token_start(self, text: str) -> int:
        at = text.rfind("<")
        if at < 0 or ">" in text[at:]:
            return len(text)
        return at if self._session.is_token_prefix(text[at:]) else len(text)
