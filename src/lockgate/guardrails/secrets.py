"""LiteLLM's ``hide-secrets`` guardrail, on the ``detect-secrets`` package's plugins, offline.

``SecretsGuard(config).check(text) -> Verdict``.  Config (every key optional):

    action: MASK | BLOCK          default MASK
    mask_replacement: str         default "[REDACTED_{type}]"  ({type}: e.g. AWS_ACCESS_KEY; without {type}
                                  the string is used as it is, e.g. LiteLLM's "[REDACTED]")
    plugins: [name | {name, limit, keyword_exclude}]       the detect-secrets plugins to run (default below)
    detect_secrets_config: {plugins_used: [...]}           LiteLLM's spelling of the same list
    exclude_plugins: [name]                                 dropped from the default list

Default plugins: every plugin detect-secrets ships except ``IPPublicDetector`` (an address is not a secret):
AWS keys, Artifactory, Azure storage keys, basic-auth URLs (the password is masked), Cloudant, Discord,
GitHub, GitLab, IBM Cloud IAM and COS HMAC, JWTs, the secret-keyword detector (``password = "..."``),
Mailchimp, npm, OpenAI, private keys (the whole PEM block is masked), PyPI, SendGrid, Slack, SoftLayer,
Square, Stripe, Telegram, Twilio, and the two high-entropy string detectors.  LiteLLM's own extra plugin
files (``path:`` entries) are not loaded: such entries raise ValueError, as do unknown names.

How it scans (and why not ``scan_line``): the plugins' own compiled ``denylist`` regexes run over the text
with ``finditer`` so each finding has offsets; a plugin's own validation (the JWT's) is applied; plugins'
``verify`` (which calls the providers' APIs) is never called, and detect-secrets' global settings are not
touched, so checks are thread-safe and make no network calls.  Care for false positives:

* the secret-keyword detector runs per line with detect-secrets' quotes-required regexes and its heuristic
  filters (templated ``{x}``/``<x>``/``${x}``, ``$VAR``, indirect references like ``get_secret()``,
  sequential strings);
* the high-entropy detectors only look at quoted strings (detect-secrets' default), over its limits
  (base64 4.5, hex 3.0 bits per character); UUIDs and sequential strings are skipped; a hex string (a git
  SHA, a digest) counts only with a secret-sounding word (key, secret, token, password...) before it on its
  line; a base64 string needs a digit and is skipped when it is a lowercase path;
* when findings overlap, a specific plugin wins over the keyword and entropy detectors.

Cost: 0.5 to 1 ms per KB of mixed prose and code with the default plugins on the 2-core CI machine
(``tests/test_guardrail_checks.py`` prints the measurement), under 5 ms/KB, so the plugin list is not
limited.  The secret-keyword detector is the dearest (~0.5 ms/KB on long lines holding quotes and a
secret-sounding word; nothing on lines without), then base64 entropy (~0.1), Cloudant and IBM (~0.06 each).
Adversarial input stays linear (~1.5 ms/KB for 20 KB of ``api_key "x"`` repeated).  Importing detect-secrets
(and requests) takes ~0.2 s, once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import HexHighEntropyString, HighEntropyStringsPlugin
from detect_secrets.plugins.keyword import QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, KeywordDetector

from .types import Action, Detection, Verdict

DEFAULT_REPLACEMENT = "[REDACTED_{type}]"
NOT_DEFAULT = frozenset({"IPPublicDetector"})
_SECRET_WORD = re.compile(r"key|secret|token|passw|pwd|auth|credential|api", re.IGNORECASE)
_LINE = re.compile(r"[^\n]*")
_QUOTE = re.compile("[\"'`]")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*-----")
_JWT_TAIL = re.compile(r"[A-Za-z0-9_\-]*")
_PATH = re.compile(r"/?(?:[a-z0-9._-]+/)+[a-z0-9._-]*")
_TRIM = " \t\r\n=:\"'"
_SPECIFIC, _KEYWORD, _ENTROPY = 0, 1, 2  # priority when findings overlap


@dataclass(frozen=True, slots=True)
class _Finding:
    type: str  # e.g. AWS_ACCESS_KEY
    name: str  # detect-secrets' secret_type, e.g. "AWS Access Key"
    start: int
    end: int
    priority: int


def type_name(secret_type: str) -> str:
    """detect-secrets' "AWS Access Key" -> "AWS_ACCESS_KEY"."""
    return re.sub(r"[^A-Za-z0-9]+", "_", secret_type).strip("_").upper()


def _plugin_specs(config: Mapping[str, Any], names: list[str], errors: list[str]) -> list[dict[str, Any]]:
    listed = config.get("plugins")
    ds_config = config.get("detect_secrets_config")
    if listed is None and isinstance(ds_config, Mapping):
        listed = ds_config.get("plugins_used")
    if listed is None:
        excluded = set(config.get("exclude_plugins") or [])
        unknown = excluded - set(names)
        if unknown:
            errors.append(f"exclude_plugins: unknown plugin(s) {', '.join(sorted(unknown))}")
        return [{"name": n} for n in names if n not in NOT_DEFAULT and n not in excluded]
    if not isinstance(listed, list):
        errors.append("plugins must be a list of plugin names or {name: ...} mappings")
        return []
    specs: list[dict[str, Any]] = []
    for entry in listed:
        spec = {"name": entry} if isinstance(entry, str) else dict(entry) if isinstance(entry, Mapping) else {}
        if "path" in spec:
            errors.append(f"plugin {spec.get('name')!r}: custom plugin files (path) are not loaded")
        elif spec.get("name") not in names:
            errors.append(f"unknown detect-secrets plugin {spec.get('name')!r} (known: {', '.join(names)})")
        else:
            specs.append(spec)
    return specs


class SecretsGuard:
    """Finds secrets with detect-secrets' plugins and masks (default) or blocks them."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        config = dict(config or {})
        errors: list[str] = []
        action = str(config.get("action") or "MASK").upper()
        if action not in ("MASK", "BLOCK"):
            errors.append(f"action must be MASK or BLOCK, not {action!r}")
        self.action: Action = "block" if action == "BLOCK" else "mask"
        self.replacement = str(config.get("mask_replacement") or DEFAULT_REPLACEMENT)
        found: list[type[BasePlugin]] = list(get_mapping_from_secret_type_to_class().values())
        classes = {c.__name__: c for c in found}
        self.plugins: list[BasePlugin] = []
        for spec in _plugin_specs(config, sorted(classes), errors):
            cls = classes[spec.pop("name")]
            try:
                self.plugins.append(cls(**spec))
            except (TypeError, ValueError) as exc:
                errors.append(f"plugin {cls.__name__}: {exc}")
        if errors:
            raise ValueError("hide-secrets: " + "; ".join(errors))

    def check(self, text: str) -> Verdict:
        findings = self.find(text)
        if not findings:
            return Verdict("pass", text)
        detections = [Detection(f.type, f.start, f.end, 1.0, self.action) for f in findings]
        names = ", ".join(dict.fromkeys(f.name for f in findings))
        if self.action == "block":
            return Verdict("block", text, detections, f"secrets detected: {names}")
        pieces: list[str] = []
        pos = 0
        for f in findings:
            pieces += [text[pos : f.start], self.replacement.replace("{type}", f.type)]
            pos = f.end
        pieces.append(text[pos:])
        return Verdict("mask", "".join(pieces), detections, f"secrets masked: {names}")

    def find(self, text: str) -> list[_Finding]:
        """Non-overlapping findings in text order."""
        candidates: list[_Finding] = []
        for plugin in self.plugins:
            if isinstance(plugin, KeywordDetector):
                candidates += self._keyword(plugin, text)
            elif isinstance(plugin, HighEntropyStringsPlugin):
                candidates += self._entropy(plugin, text)
            elif isinstance(plugin, RegexBasedDetector):
                candidates += self._regex(plugin, text)
        kept: list[_Finding] = []
        for f in sorted(candidates, key=lambda f: (f.priority, f.start - f.end)):
            if not any(k.start < f.end and f.start < k.end for k in kept):
                kept.append(f)
        return sorted(kept, key=lambda f: f.start)

    # ---- per kind of plugin

    @staticmethod
    def _regex(plugin: RegexBasedDetector, text: str) -> Iterator[_Finding]:
        secret_type = str(plugin.secret_type)
        validates = type(plugin).analyze_string is not RegexBasedDetector.analyze_string
        for regex in plugin.denylist:
            for m in regex.finditer(text):
                groups = [g for g in range(1, (regex.groups or 0) + 1) if m.group(g)]
                if groups and len(m.group(groups[-1])) >= 8:  # the secret is captured after its context
                    start, end = m.span(groups[-1])
                else:  # the whole match, less the delimiters some regexes include
                    start, end = m.span()
                    while start < end and text[start] in _TRIM:
                        start += 1
                    while end > start and text[end - 1] in _TRIM:
                        end -= 1
                if start == end:
                    continue
                if validates and text[start:end] not in set(plugin.analyze_string(m.group())):
                    continue
                if secret_type == "Private Key":
                    start, end = _pem_block(text, start, end)
                elif secret_type == "JSON Web Token":
                    end = _JWT_TAIL.match(text, end).end()  # type: ignore[union-attr]  # always matches
                yield _Finding(type_name(secret_type), secret_type.lower(), start, end, _SPECIFIC)

    @staticmethod
    def _keyword(plugin: KeywordDetector, text: str) -> Iterator[_Finding]:
        exclude = plugin.keyword_exclude
        for line_match in _LINE.finditer(text):
            line = line_match.group()
            if not _QUOTE.search(line) or not _SECRET_WORD.search(line):  # its regexes all need a quote
                continue
            if exclude is not None and exclude.search(line):
                continue
            for regex, group in QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP.items():
                for m in regex.finditer(line):
                    secret = m.group(group)
                    if (
                        not secret
                        or heuristic.is_indirect_reference(m.group())  # on the match: O(n²) on a long line
                        or heuristic.is_templated_secret(secret)
                        or heuristic.is_prefixed_with_dollar_sign(secret)
                        or heuristic.is_sequential_string(secret)
                    ):
                        continue
                    start = line_match.start() + m.start(group)
                    yield _Finding("SECRET_KEYWORD", "secret keyword", start, start + len(secret), _KEYWORD)

    @staticmethod
    def _entropy(plugin: HighEntropyStringsPlugin, text: str) -> Iterator[_Finding]:
        secret_type = str(plugin.secret_type)
        is_hex = isinstance(plugin, HexHighEntropyString)
        for m in plugin.regex.finditer(text):
            secret = m.group(2)
            if plugin.calculate_shannon_entropy(secret) <= plugin.entropy_limit:
                continue
            if heuristic.is_potential_uuid(secret) or heuristic.is_sequential_string(secret):
                continue
            start, end = m.span(2)
            if is_hex:
                line_start = text.rfind("\n", 0, start) + 1
                if not _SECRET_WORD.search(text, line_start, start):
                    continue  # git SHAs, digests, ids: only with a secret-sounding word before them
            elif not any(c.isdigit() for c in secret) or _PATH.fullmatch(secret):
                continue
            yield _Finding(type_name(secret_type), secret_type.lower(), start, end, _ENTROPY)


def _pem_block(text: str, start: int, end: int) -> tuple[int, int]:
    """The whole ``-----BEGIN ... PRIVATE KEY-----`` ... ``-----END ...-----`` block around a header."""
    if text[max(0, start - 5) : start] == "-----":
        start -= 5
    tail = _PEM_END.search(text, end, end + 16384)
    if tail is not None:
        return start, tail.end()
    line_end = text.find("\n", end)
    return start, len(text) if line_end == -1 else line_end
