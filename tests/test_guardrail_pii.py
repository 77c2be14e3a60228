"""PII detection (Presidio's pattern recognizers, in process, offline) and request-scoped reversible masking.

Offline proof: `unshare -n sh -c 'ip link set lo up; cd /work/main && .venv/bin/python -m pytest -q -p no:cacheprovider
tests/test_guardrail_pii.py'` (no network namespace); test_no_network_and_no_cache_writes checks the same in process.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading

import pytest

from lockgate.guardrails.pii import MaskSession, PiiDetector, _Recognizer, _run, digit_windows
from lockgate.guardrails.types import Detection


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    found = PiiDetector(None)
    found.load()
    return found


def _found(detector: PiiDetector, text: str) -> list[tuple[str, str]]:
    return [(d.type, text[d.start : d.end]) for d in detector.analyze(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("Please forward the contract to maria.gonzalez@acme-corp.com by Friday.", "EMAIL_ADDRESS",
         "maria.gonzalez@acme-corp.com"),
        ("You can call me on 020 7946 0958 tomorrow morning.", "PHONE_NUMBER", "020 7946 0958"),
        ("Our US office: +1 (212) 555-0134, ask for Dan.", "PHONE_NUMBER", "+1 (212) 555-0134"),
        ("Charge it to my Visa 4539 5787 6362 1486, expiry 04/28.", "CREDIT_CARD", "4539 5787 6362 1486"),
        ("The refund goes to IBAN GB82 WEST 1234 5698 7654 32, thanks.", "IBAN_CODE", "GB82 WEST 1234 5698 7654 32"),
        ("For the tax form, my SSN is 536-22-1234.", "US_SSN", "536-22-1234"),
        ("The database lives on 10.20.30.40 behind the VPN.", "IP_ADDRESS", "10.20.30.40"),
        ("The host fe80::1ff:fe23:4567:890a stopped answering.", "IP_ADDRESS", "fe80::1ff:fe23:4567:890a"),
        ("Details are at https://intranet.example.org/hr/payroll?id=7 for staff.", "URL",
         "https://intranet.example.org/hr/payroll?id=7"),
        ("Send 0.1 BTC to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT when you can.", "CRYPTO",
         "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
        ("My checking account is 000123456789 at Chase bank.", "US_BANK_NUMBER", "000123456789"),
    ],
)
def test_each_entity_is_detected_in_realistic_text(detector: PiiDetector, text: str, entity: str, value: str) -> None:
    assert (entity, value) in _found(detector, text)


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("Charge it to card 4539 5787 6362 1487 please.", "CREDIT_CARD"),  # fails Luhn
        ("Paid with 4111111111111112 yesterday.", "CREDIT_CARD"),  # 16 digits, fails Luhn
        ("Fixed in commit 3f2b1c9d8e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c on main.", "CREDIT_CARD"),  # a git SHA
        ("Fixed in 4539578763621486aa0b9c8d7e6f5a4b3c2d1e0f on main.", "CREDIT_CARD"),  # SHA with a Luhn-valid prefix
        ("The refund goes to IBAN GB83 WEST 1234 5698 7654 32, thanks.", "IBAN_CODE"),  # bad mod-97 checksum
        ("Social security number 000-12-3456 on file.", "US_SSN"),  # area 000 is never issued
        ("Social security number 666-12-3456 on file.", "US_SSN"),  # neither is 666
        ("Write to bob@example.notarealtld for details.", "EMAIL_ADDRESS"),  # no such public suffix
        ("Send to 1BoatSLRHtKNngkdXEeobR76b53LETtpyX now.", "CRYPTO"),  # bad base58 checksum
    ],
)
def test_validators_reject_look_alikes(detector: PiiDetector, text: str, entity: str) -> None:
    assert entity not in {kind for kind, _ in _found(detector, text)}


def test_detections_do_not_overlap_and_are_sorted(detector: PiiDetector) -> None:
    text = "Mail john.doe@example.com (not example.com), ssn 536-22-1234, card 4539 5787 6362 1486 and 10.0.0.1."
    found = detector.analyze(text)
    assert [d.start for d in found] == sorted(d.start for d in found)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))
    assert ("EMAIL_ADDRESS", "john.doe@example.com") in _found(detector, text)  # not the URL inside it


def test_url_matches_cut_inside_a_word_are_dropped(detector: PiiDetector) -> None:
    assert _found(detector, "return ctx.body.get('model')") == []  # Presidio's pattern alone yields 'ctx.bo'
    assert _found(detector, "see example.com.") == [("URL", "example.com")]


def test_score_thresholds_per_entity_and_all() -> None:
    text = "See example.com or https://example.org/x, call 020 7946 0958."
    strict_urls = PiiDetector({"URL": "MASK", "PHONE_NUMBER": "MASK"}, thresholds={"URL": 0.6})
    assert _found(strict_urls, text) == [("URL", "https://example.org/x"), ("PHONE_NUMBER", "020 7946 0958")]
    everything = PiiDetector({"URL": "MASK", "PHONE_NUMBER": "MASK"}, thresholds={"ALL": 0.8})
    assert _found(everything, text) == []


def test_context_words_raise_the_score(detector: PiiDetector) -> None:
    with_context = detector.analyze("My checking account is 000123456789 at Chase.")
    without = detector.analyze("The value 000123456789 was logged.")
    assert [d.score for d in with_context if d.type == "US_BANK_NUMBER"] == [pytest.approx(0.4)]
    assert [d.score for d in without if d.type == "US_BANK_NUMBER"] == [pytest.approx(0.05)]


def test_only_configured_entities_with_their_actions() -> None:
    only = PiiDetector({"EMAIL_ADDRESS": "MASK", "CREDIT_CARD": "block"})
    text = "Mail a.b@example.com, card 4539 5787 6362 1486, ip 10.0.0.1"
    assert [(d.type, d.action) for d in only.analyze(text)] == [("EMAIL_ADDRESS", "mask"), ("CREDIT_CARD", "block")]


def test_unsupported_entities_and_actions_are_config_errors() -> None:
    with pytest.raises(ValueError, match=r"PERSON.*NER model"):
        PiiDetector({"PERSON": "MASK"})
    with pytest.raises(ValueError, match="MASK or BLOCK"):
        PiiDetector({"EMAIL_ADDRESS": "REDACT"})


def test_mask_replaces_values_with_numbered_tokens(detector: PiiDetector) -> None:
    session = MaskSession(detector)
    text = "Mail ann@example.com or bob@example.com; again ann@example.com. Card 4539 5787 6362 1486."
    verdict = session.mask(text)
    assert verdict.action == "mask"
    assert verdict.text == (
        "Mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>; again <EMAIL_ADDRESS_1>. Card <CREDIT_CARD_1>."
    )
    assert [d.type for d in verdict.detections] == ["EMAIL_ADDRESS"] * 3 + ["CREDIT_CARD"]
    assert session.restore(verdict.text) == text
    # a later turn: the same value keeps its token, the tokens already there are left alone, new values go on
    later = session.mask("Thanks <EMAIL_ADDRESS_1>! Also cc carl@example.com and ann@example.com.")
    assert later.text == "Thanks <EMAIL_ADDRESS_1>! Also cc <EMAIL_ADDRESS_3> and <EMAIL_ADDRESS_1>."
    assert session.restore("<EMAIL_ADDRESS_3> wrote to <EMAIL_ADDRESS_1>") == "carl@example.com wrote to ann@example.com"


def test_block_leaves_text_unchanged_and_names_the_types(detector: PiiDetector) -> None:
    blocking = PiiDetector({"EMAIL_ADDRESS": "MASK", "CREDIT_CARD": "BLOCK"})
    session = MaskSession(blocking)
    text = "Mail ann@example.com, card 4539 5787 6362 1486."
    verdict = session.mask(text)
    assert verdict.action == "block"
    assert verdict.text == text
    assert verdict.message is not None and "CREDIT_CARD" in verdict.message and "4539" not in verdict.message
    assert session.restore("<EMAIL_ADDRESS_1>") == "<EMAIL_ADDRESS_1>"  # nothing was masked
    assert session.mask("nothing to see here").action == "pass"


def test_restore_leaves_unknown_and_literal_tokens(detector: PiiDetector) -> None:
    session = MaskSession(detector)
    text = "The template says <EMAIL_ADDRESS_1>; mine is ann@example.com."
    verdict = session.mask(text)
    assert verdict.text == "The template says <EMAIL_ADDRESS_1>; mine is <EMAIL_ADDRESS_2>."
    assert session.restore(verdict.text) == text
    assert session.restore("<PHONE_NUMBER_9> <EMAIL_ADDRESS_2>") == "<PHONE_NUMBER_9> ann@example.com"


def test_stream_restorer_at_every_chunk_boundary(detector: PiiDetector) -> None:
    session = MaskSession(detector)
    original = "Reply to ann@example.com, cc bob@example.com, card 4539 5787 6362 1486 < 5 items <b>ok</b> <EMAIL"
    masked = session.mask(original).text
    assert "<EMAIL_ADDRESS_2>" in masked and "<CREDIT_CARD_1>" in masked
    for i in range(len(masked) + 1):
        for j in range(i, len(masked) + 1):
            restorer = session.restorer()
            out = restorer.feed(masked[:i]) + restorer.feed(masked[i:j]) + restorer.feed(masked[j:]) + restorer.flush()
            assert out == original, (i, j)
    restorer = session.restorer()
    pieces = [restorer.feed(ch) for ch in masked]
    assert "".join(pieces) + restorer.flush() == original
    assert all("<EMAIL_ADDRESS_" not in piece and "<CREDIT_CARD" not in piece for piece in pieces)


def test_stream_restorer_holds_back_only_prefixes_of_known_tokens(detector: PiiDetector) -> None:
    session = MaskSession(detector)
    session.mask("ann@example.com")
    restorer = session.restorer()
    assert restorer.feed("a <b") == "a <b"  # not the start of any token: emitted at once
    assert restorer.feed(" and <EMAIL_ADD") == " and "
    assert restorer.feed("RESS_1> done") == "ann@example.com done"
    assert restorer.feed("<EMAIL_ADDRESS_") == ""
    assert restorer.flush() == "<EMAIL_ADDRESS_"  # never completed: passed on as it was


def test_two_sessions_never_share_a_map(detector: PiiDetector) -> None:
    barrier = threading.Barrier(2)
    results: dict[str, tuple[str, str]] = {}

    def run(name: str, email: str) -> None:
        session = MaskSession(detector)
        barrier.wait()
        for _ in range(20):
            masked = session.mask(f"write to {email} now").text
        results[name] = (masked, session.restore("<EMAIL_ADDRESS_1> <EMAIL_ADDRESS_2>"))

    threads = [
        threading.Thread(target=run, args=("a", "ann@example.com")),
        threading.Thread(target=run, args=("b", "bob@example.org")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["a"] == ("write to <EMAIL_ADDRESS_1> now", "ann@example.com <EMAIL_ADDRESS_2>")
    assert results["b"] == ("write to <EMAIL_ADDRESS_1> now", "bob@example.org <EMAIL_ADDRESS_2>")


class _QuotedName(PiiDetector):
    """Detects the fixed value 'Jo "Jo" Smith\\' as a PERSON-like entity, to test JSON escaping."""

    value = 'Jo "Jo" Smith\\'

    def analyze(self, text: str) -> list[Detection]:
        at = text.find(self.value)
        return [] if at < 0 else [Detection("EMAIL_ADDRESS", at, at + len(self.value), 1.0, "mask")]


def test_restore_json_escapes_values_for_a_json_string() -> None:
    session = MaskSession(_QuotedName({"EMAIL_ADDRESS": "MASK"}))
    assert session.mask(f"send it to {_QuotedName.value} today").text == "send it to <EMAIL_ADDRESS_1> today"
    arguments = '{"to": "<EMAIL_ADDRESS_1>", "cc": ["<EMAIL_ADDRESS_1>", "<OTHER_1>"]}'
    restored = session.restore_json(arguments)
    assert json.loads(restored) == {"to": _QuotedName.value, "cc": [_QuotedName.value, "<OTHER_1>"]}
    restorer = session.restorer(in_json=True)
    streamed = "".join(restorer.feed(arguments[i : i + 3]) for i in range(0, len(arguments), 3)) + restorer.flush()
    assert streamed == restored


def test_restore_json_with_a_real_detection(detector: PiiDetector) -> None:
    session = MaskSession(detector)
    url = "https://files.example.com/share\\q1"  # a backslash is allowed in Presidio's URL path
    assert session.mask(f"open {url} now").text == "open <URL_1> now"
    assert json.loads(session.restore_json('{"path": "<URL_1>"}')) == {"path": url}


PHONE_CORPUS = [
    "Call 020 7946 0958 or +44 20 7946 0958 (office), ext. 204; fax 0161-496-0000.",
    "US: (415) 555-2671 x12, 1-800-555-0199, +1 212 555 0134; DE: +49 30 901820, 030 901820.",
    "Order 123456789012345 shipped on 2024-05-17 at 10:32; ref 4539 5787 6362 1486; 1.2.3.4",
    "Numbers in code: retries=3, timeout=30000, port 8080, sha 3f2b1c9d8e7a, id=5550134212.",
    "Mobile+33 6 12 34 56 78,tel:+972-3-555-1234;India 098765 43210 and 91 98765 43210 here.",
    "x" * 50 + "4155552671" + "y" * 50 + " 415 555 2671" + " z" * 40 + "(415)5552671",
]


@pytest.mark.parametrize("text", PHONE_CORPUS)
def test_phone_windows_find_what_the_whole_text_run_finds(detector: PiiDetector, text: str) -> None:
    phone = next(r for r in detector._loaded() if r.entity == "PHONE_NUMBER")
    whole = sorted((r.start, r.end) for r in phone.impl.analyze(text, ["PHONE_NUMBER"], None))  # type: ignore[arg-type]
    windowed = sorted((start, end) for start, end, _ in _run(phone, text))
    assert windowed == whole
    assert isinstance(phone, _Recognizer) and phone.min_digits >= 4


def test_digit_windows_skip_short_runs_and_merge() -> None:
    assert digit_windows("version 1.2 of 3 apps", 4) == []
    text = "call 020 7946 0958 or 020 7946 0959 please"
    assert digit_windows(text, 4) == [(0, len(text))]


def test_no_network_and_no_cache_writes(tmp_path, monkeypatch) -> None:
    """A fresh detector loads and validates e-mails (tldextract) with sockets refused and an empty cache home."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TLDEXTRACT_CACHE", raising=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fresh = PiiDetector(None)
    assert ("EMAIL_ADDRESS", "li.wei@example.co.uk") in _found(fresh, "Write to li.wei@example.co.uk today.")
    assert list(tmp_path.iterdir()) == []
