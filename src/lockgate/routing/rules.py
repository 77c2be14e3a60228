"""Conditional routing (Lockgate's addition): choose a model group by request facts.

``lockgate_settings.routing_rules`` is an ordered list; the first rule whose
``when`` conditions all match replaces the requested model::

    routing_rules:
      - when: {header: {x-priority: high}}
        model: best-model
      - when: {team: support}
        model: cheap-model
      - when: {tags: [batch], model: "gpt-4*"}
        model: gpt-4o-mini

Conditions: ``model`` (requested name, glob), ``header`` (name -> value),
``metadata`` (key -> value in the body's ``metadata``), ``tags`` (any of the
request's tags: ``metadata.tags``, body ``tags`` or header ``x-lockgate-tags``,
comma separated), ``team``, ``user`` (ids) and ``key`` (key alias) of the caller.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..context import RequestContext

CONDITIONS = {"model", "header", "metadata", "tags", "team", "user", "key"}


@dataclass
class RoutingRule:
    model: str
    when: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> RoutingRule:
        from ..config import ConfigError

        if not isinstance(raw, dict) or not raw.get("model") or not isinstance(raw.get("when"), dict):
            raise ConfigError("lockgate_settings.routing_rules: each rule needs `when` (mapping) and `model`")
        unknown = set(raw["when"]) - CONDITIONS
        if unknown:
            raise ConfigError(f"routing_rules: unknown condition(s) {sorted(unknown)}; known: {sorted(CONDITIONS)}")
        when = dict(raw["when"])
        if "header" in when:
            when["header"] = {str(k).lower(): str(v) for k, v in when["header"].items()}
        if "tags" in when and isinstance(when["tags"], str):
            when["tags"] = [when["tags"]]
        return cls(model=str(raw["model"]), when=when)

    def matches(self, ctx: RequestContext) -> bool:
        return all(_CHECKS[name](ctx, expected) for name, expected in self.when.items())


def _model(ctx: RequestContext, pattern: str) -> bool:
    return fnmatch.fnmatchcase(ctx.model, pattern)


def _header(ctx: RequestContext, expected: dict[str, str]) -> bool:
    return all(ctx.headers.get(k) == v for k, v in expected.items())


def _metadata(ctx: RequestContext, expected: dict[str, Any]) -> bool:
    meta = ctx.body.get("metadata") or {}
    return isinstance(meta, dict) and all(meta.get(k) == v for k, v in expected.items())


def request_tags(ctx: RequestContext) -> set[str]:
    tags: set[str] = set()
    meta = ctx.body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("tags"), list):
        tags.update(map(str, meta["tags"]))
    if isinstance(ctx.body.get("tags"), list):
        tags.update(map(str, ctx.body["tags"]))
    header = ctx.headers.get("x-lockgate-tags")
    if header:
        tags.update(t.strip() for t in header.split(",") if t.strip())
    return tags


def _tags(ctx: RequestContext, expected: list[str]) -> bool:
    return bool(request_tags(ctx) & set(map(str, expected)))


def _principal_attr(ctx: RequestContext, *path: str) -> Any:
    value: Any = ctx.principal
    for name in path:
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def _team(ctx: RequestContext, expected: str) -> bool:
    return _principal_attr(ctx, "team", "id") == expected or _principal_attr(ctx, "key", "team_id") == expected


def _user(ctx: RequestContext, expected: str) -> bool:
    return _principal_attr(ctx, "key", "user_id") == expected


def _key(ctx: RequestContext, expected: str) -> bool:
    return _principal_attr(ctx, "key", "key_alias") == expected


_CHECKS: dict[str, Callable[[RequestContext, Any], bool]] = {"model": _model, "header": _header, "metadata": _metadata, "tags": _tags,
           "team": _team, "user": _user, "key": _key}
