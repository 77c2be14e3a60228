"""``lockgate_settings.metrics``: which key / team labels the metrics carry, and how many series at most.

```yaml
lockgate_settings:
  metrics:
    entities: [key, team]   # who gets remaining budget / rate-limit gauges and a spend label
                            # (key, team, user, organization; [] = none)
    key_label: alias        # alias: the key's alias, else a hash prefix; hash: always the hash prefix
    max_series: 1000        # per family; past it, series are left out (and counted) or summed as __other__
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENTITIES = ("key", "team", "user", "organization")
HASH_CHARS = 12  # a key's label without an alias: the first characters of its sha256, never the key


@dataclass(frozen=True)
class MetricsOptions:
    entities: frozenset[str] = field(default_factory=lambda: frozenset(("key", "team")))
    key_label: str = "alias"
    max_series: int = 1000


def parse(raw: Any) -> MetricsOptions:
    """The section as written; ValueError names what is wrong."""
    if raw is None:
        return MetricsOptions()
    if not isinstance(raw, dict):
        raise ValueError("lockgate_settings.metrics must be a mapping")
    unknown = set(raw) - {"entities", "key_label", "max_series"}
    if unknown:
        raise ValueError(f"lockgate_settings.metrics: unknown keys {sorted(unknown)}")
    entities = raw.get("entities", ["key", "team"])
    if not isinstance(entities, list) or not all(e in ENTITIES for e in entities):
        raise ValueError(f"lockgate_settings.metrics.entities: a list of {', '.join(ENTITIES)}")
    key_label = raw.get("key_label", "alias")
    if key_label not in ("alias", "hash"):
        raise ValueError("lockgate_settings.metrics.key_label: alias or hash")
    max_series = raw.get("max_series", 1000)
    if not isinstance(max_series, int) or isinstance(max_series, bool) or max_series < 1:
        raise ValueError("lockgate_settings.metrics.max_series: a whole number of 1 or more")
    return MetricsOptions(frozenset(entities), key_label, max_series)


def key_name(options: MetricsOptions, alias: str | None, token_hash: str) -> str:
    """A key's label value: its alias (``key_label: alias``), else the first characters of its hash."""
    if alias and options.key_label == "alias":
        return alias
    return token_hash[:HASH_CHARS]


def spend_labels(options: MetricsOptions, principal: Any) -> tuple[str, str]:
    """``lockgate_spend_usd_total``'s key and team labels for a request's principal ("" when not a virtual
    key, or when ``entities`` leaves them out)."""
    key = getattr(principal, "key", None)
    if key is None:
        return "", ""
    entities = options.entities
    return (key_name(options, key.key_alias, key.token_hash) if "key" in entities else "",
            (key.team_id or "") if "team" in entities else "")
