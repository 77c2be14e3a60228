"""Effective policy = key ∩ user ∩ team ∩ organization (pure functions, no I/O).

Every level that is linked to the key and sets a rule must allow the request:
an empty ``models`` / ``allowed_routes`` / ``allowed_ips`` list means "no
restriction at this level".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import AuthenticationError, PermissionDenied
from .types import Entity, Principal

if TYPE_CHECKING:
    from ..config import Deployment

# model-list entries meaning "no restriction at this level" (LiteLLM's spellings)
ALL_MODELS = {"*", "all-proxy-models", "all-team-models", "all-org-models"}

# route name -> the paths that reach it (allowed_routes may name either, with or without /v1)
def _both(path: str) -> tuple[str, str]:
    return path, "/v1" + path


ROUTE_PATHS: dict[str, tuple[str, ...]] = {
    "chat": _both("/chat/completions"),
    "completions": _both("/completions"),
    "embeddings": _both("/embeddings"),
    "responses": _both("/responses"),
    "messages": _both("/messages"),
    "count_tokens": _both("/messages/count_tokens"),
    "models": _both("/models"),
}
# the Gemini front door's routes: the path names the model and the method
GEMINI_PREFIXES = ("/v1beta/models/", "/models/", "/v1/models/")
GEMINI_ROUTES = {"generate", "gemini_count_tokens"}

# LiteLLM's route groups (``LiteLLMRoutes``), as far as this gateway serves them; the groups of
# management and info paths are accepted names that allow no model route
_OPENAI = {"chat", "completions", "embeddings", "responses", "models"}
_ANTHROPIC = {"messages", "count_tokens"}
_GOOGLE = {"generate", "gemini_count_tokens"}
ROUTE_GROUPS: dict[str, frozenset[str]] = {
    "llm_api_routes": frozenset(_OPENAI | _ANTHROPIC | _GOOGLE),
    "openai_routes": frozenset(_OPENAI),
    "anthropic_routes": frozenset(_ANTHROPIC),
    "google_routes": frozenset(_GOOGLE),
    "info_routes": frozenset({"models"}),
    "management_routes": frozenset(),
    "key_management_routes": frozenset(),
    "spend_tracking_routes": frozenset(),
    "global_spend_tracking_routes": frozenset(),
    "public_routes": frozenset(),
}
ALL_ROUTE_GROUPS = set(ROUTE_GROUPS)


def request_paths(route: str, model: str = "", stream: bool = False) -> tuple[str, ...]:
    """Every path that reaches ``route`` (for a Gemini route: this model and method)."""
    if route in GEMINI_ROUTES:
        method = "countTokens" if route == "gemini_count_tokens" else (
            "streamGenerateContent" if stream else "generateContent")
        return tuple(f"{prefix}{model}:{method}" for prefix in GEMINI_PREFIXES)
    return ROUTE_PATHS.get(route, ())


@lru_cache(maxsize=1024)
def _path_pattern(entry: str) -> re.Pattern[str]:
    """``/v1beta/models/{model}:generateContent``: ``{name}`` is one path segment, ``{name:path}`` any text,
    a final ``*`` any rest."""
    out, pos = [], 0
    for m in re.finditer(r"\{[^{}]*\}", entry):
        out.append(re.escape(entry[pos:m.start()]))
        out.append(".+" if m.group().endswith(":path}") else "[^/]+")
        pos = m.end()
    tail = entry[pos:]
    star = tail.endswith("*")
    out.append(re.escape(tail[:-1] if star else tail) + (".*" if star else ""))
    return re.compile("".join(out))


@lru_cache(maxsize=4096)
def route_allowed(entries: tuple[str, ...], route: str, model: str = "", stream: bool = False) -> bool:
    """Does one of ``entries`` (route names, LiteLLM route groups, paths or path patterns) allow the request?"""
    paths = request_paths(route, model, stream)
    for entry in entries:
        name = entry.removeprefix("LiteLLMRoutes.")
        group = ROUTE_GROUPS.get(name)
        if group is not None:
            if route in group:
                return True
        elif name == route or name in paths:
            return True
        elif name.startswith("/") and ("{" in name or name.endswith("*")):
            pattern = _path_pattern(name)
            if any(pattern.fullmatch(path) for path in paths):
                return True
    return False


class ModelCatalog:
    """What model names and patterns mean: groups, wildcards, access groups."""

    def __init__(self, groups: dict[str, list[Deployment]]) -> None:
        self.access_groups: dict[str, set[str]] = {}
        self.upstream_ids: dict[str, set[str]] = {}
        for name, deps in groups.items():
            for dep in deps:
                self.upstream_ids.setdefault(name, set()).add(f"{dep.provider}/{dep.model}")
                for group in (dep.model_info or {}).get("access_groups") or []:
                    self.access_groups.setdefault(str(group), set()).add(name)

    def allows(self, allowed: Iterable[str], model: str) -> bool:
        """Does one level's ``models`` list allow ``model`` (a model group name)?"""
        for entry in allowed:
            if entry in ALL_MODELS or entry == model:
                return True
            if entry.endswith("*"):
                prefix = entry[:-1]
                if model.startswith(prefix) or any(u.startswith(prefix) for u in self.upstream_ids.get(model, ())):
                    return True
            members = self.access_groups.get(entry)
            if members is not None and model in members:
                return True
        return False


def levels(p: Principal) -> list[tuple[str, Any]]:
    """(label, record) for the key and every entity linked above it."""
    out: list[tuple[str, Any]] = [("key", p.key)]
    for label, ent in (("user", p.user), ("team", p.team), ("organization", p.organization)):
        if ent is not None:
            out.append((label, ent))
    return out


def check_key_state(p: Principal, now: datetime) -> None:
    """Blocked or expired anywhere -> refused (401 for the key itself, 403 above it)."""
    key = p.key
    if key.blocked:
        raise AuthenticationError("this API key is blocked", code="key_blocked")
    if key.expires is not None and _aware(key.expires) <= now:
        raise AuthenticationError("this API key has expired", code="key_expired")
    for label, ent in levels(p)[1:]:
        if ent.blocked:
            raise PermissionDenied(f"the {label} of this API key is blocked", code=f"{label}_blocked")


def check_model(p: Principal, catalog: ModelCatalog, model: str) -> None:
    for label, rec in levels(p):
        allowed = rec.models
        if allowed and not catalog.allows(allowed, model):
            raise PermissionDenied(
                f"this API key is not allowed to use model {model!r} ({label} model access)", code="model_access_denied"
            )


def check_route(p: Principal, route: str, model: str = "", stream: bool = False) -> None:
    routes = p.key.allowed_routes
    if routes and not route_allowed(tuple(routes), route, model, stream):
        raise PermissionDenied(f"this API key is not allowed to call the {route} route", code="route_not_allowed")


@lru_cache(maxsize=4096)
def _networks(entries: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries)


def ip_allowed(entries: Iterable[str], client_ip: str | None) -> bool:
    entries = tuple(entries)
    if not entries:
        return True
    if not client_ip:
        return False
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _networks(entries))


def check_ip(p: Principal, client_ip: str | None) -> None:
    for label, rec in levels(p):
        allowed = rec.allowed_ips if label == "key" else (rec.metadata or {}).get("allowed_ips") or []
        if not ip_allowed(allowed, client_ip):
            raise PermissionDenied(f"requests from this IP address are not allowed for this {label}", code="ip_not_allowed")


def check_customer(customer: Entity | None, end_user: str) -> None:
    if customer is not None and customer.blocked:
        raise PermissionDenied(f"end user {end_user!r} is blocked", code="end_user_blocked")


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
