"""Forms built from the management API's own request models (``admin/schemas.py``): every field of
``/key/generate`` (or ``/team/new``, ...) gets a control chosen from its type, so a field added to the API
appears in the UI.  ``parse`` turns the posted strings back into the API's JSON values; the API's struct
then validates them (a failure names the field)."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from ..admin import schemas
from ..errors import BadRequest

LABELS: dict[str, tuple[str, str]] = {
    "key_alias": ("Alias", "a name for the key, unique"),
    "team_id": ("Team ID", ""),
    "user_id": ("User ID", "the user who owns the key"),
    "organization_id": ("Organization ID", ""),
    "models": ("Models", "model groups this may call; none selected: every model"),
    "max_budget": ("Max budget (USD)", "requests are refused once the spend reaches it"),
    "soft_budget": ("Soft budget (USD)", "an alert when the spend crosses it"),
    "budget_duration": ("Budget period", "the spend resets every period: 30s, 1h, 1d, 7d, 30d, 1mo"),
    "spend": ("Spend (USD)", "set the spend so far"),
    "tpm_limit": ("Tokens per minute", ""),
    "rpm_limit": ("Requests per minute", ""),
    "max_parallel_requests": ("Parallel requests", "at most this many at once"),
    "metadata": ("Metadata (JSON object)", ""),
    "tags": ("Tags", "comma-separated; stored in metadata.tags"),
    "guardrails": ("Guardrails", "applied to every request"),
    "permissions": ("May switch guardrails off", "its requests may turn guardrails off (modify_guardrails)"),
    "duration": ("Expires after", "e.g. 30d; empty: never"),
    "expires": ("Expires at (UTC)", ""),
    "model_max_budget": ("Budget per model (JSON)", 'e.g. {"gpt-4o": 10}'),
    "model_rpm_limit": ("Requests per minute per model (JSON)", 'e.g. {"gpt-4o": 60}'),
    "model_tpm_limit": ("Tokens per minute per model (JSON)", 'e.g. {"gpt-4o": 100000}'),
    "allowed_routes": ("Allowed routes", "comma-separated, e.g. /chat/completions; empty: all"),
    "allowed_ips": ("Allowed client IPs", "comma-separated addresses or CIDR networks; empty: any"),
    "allowed_cache_controls": ("Allowed cache controls", "per-request cache controls the key may use; none: any"),
    "team_alias": ("Team name", ""),
    "organization_alias": ("Organization name", ""),
    "user_email": ("Email", ""),
    "user_alias": ("Display name", ""),
    "user_role": ("Role", ""),
    "blocked": ("Blocked", ""),
    "password": ("Password", "for signing in to this UI; at least 8 characters (empty: unchanged)"),
}
GROUPS = (
    ("Identity", ("key_alias", "team_alias", "organization_alias", "user_email", "user_alias", "user_role",
                  "team_id", "user_id", "organization_id", "password")),
    ("Access", ("blocked", "models", "guardrails", "permissions", "allowed_routes", "allowed_ips",
                "allowed_cache_controls")),
    ("Budget", ("max_budget", "soft_budget", "budget_duration", "spend", "model_max_budget")),
    ("Rate limits", ("tpm_limit", "rpm_limit", "max_parallel_requests", "model_rpm_limit", "model_tpm_limit")),
    ("Lifetime", ("duration", "expires")),
    ("Metadata", ("tags", "metadata")),
)


@dataclass
class Field:
    name: str
    label: str
    kind: str  # text | number | integer | json | list | choice | choices | checkbox | datetime | select
    help: str = ""
    options: list[str] = field(default_factory=list)
    value: Any = None
    required: bool = False

    @property
    def id(self) -> str:
        return "f-" + self.name.replace("_", "-")

    def shown(self) -> str:
        """The value as the control shows it."""
        v = self.value
        if v is None:
            return ""
        if isinstance(v, str):  # as typed (a form sent back with its error)
            return v
        if self.kind == "json":
            return json.dumps(v, indent=1, sort_keys=True) if v else ""
        if self.kind == "list":
            return ", ".join(str(x) for x in v)
        if self.kind == "datetime" and isinstance(v, datetime):
            return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    def selected(self, option: str) -> bool:
        v = self.value
        return option in v if isinstance(v, (list, tuple, set)) else option == v


@dataclass
class Fieldset:
    legend: str
    fields: list[Field]


def validation_message(exc: msgspec.ValidationError) -> str:
    """The error of a request struct as "<field>: <message>" (the management API's 400 names it too)."""
    where, message = schemas.problem(exc)
    prefix = f"field '{where}': "
    return f"{'form' if where == 'body' else where}: {message.removeprefix(prefix)}"


def _plain(annotation: object) -> object:
    """``X | None`` and ``Annotated[X, Meta(...)]`` -> ``X``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _plain(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _plain(args[0]) if len(args) == 1 else annotation
    return annotation


def kind_of(annotation: object) -> tuple[str, list[str]]:
    plain = _plain(annotation)
    origin = typing.get_origin(plain)
    if plain is bool:
        return "checkbox", []
    if plain is int:
        return "integer", []
    if plain is float:
        return "number", []
    if plain is datetime:
        return "datetime", []
    if origin is list:
        (item,) = typing.get_args(plain) or (str,)
        item = _plain(item)
        if typing.get_origin(item) is Literal:
            return "choices", [str(a) for a in typing.get_args(item)]
        return "list", []
    if origin is dict or plain is dict:
        return "json", []
    return "text", []


def fields_of(model: type[msgspec.Struct], skip: tuple[str, ...] = (), extra: tuple[str, ...] = ()
              ) -> list[Field]:
    out = []
    for info in msgspec.structs.fields(model):
        name = info.name
        if name in skip:
            continue
        kind, options = kind_of(info.type)
        if name == "permissions":
            kind = "checkbox"
        elif name == "password":
            kind = "password"
        label, help_ = LABELS.get(name, (name.replace("_", " ").capitalize(), ""))
        out.append(Field(name, label, kind, help_, options, required=info.required))
    for name in extra:
        label, help_ = LABELS.get(name, (name, ""))
        out.append(Field(name, label, "list", help_))
    return out


def grouped(fields: list[Field]) -> list[Fieldset]:
    by_name = {f.name: f for f in fields}
    sets: list[Fieldset] = []
    placed: set[str] = set()
    for legend, names in GROUPS:
        members = [by_name[n] for n in names if n in by_name]
        placed.update(f.name for f in members)
        if members:
            sets.append(Fieldset(legend, members))
    rest = [f for f in fields if f.name not in placed]
    if rest:
        sets.append(Fieldset("Other", rest))
    return sets


def parse(fields: list[Field], form: dict[str, list[str]]) -> dict[str, Any]:
    """Posted strings -> API values (None for an empty control).  Raises ``BadRequest`` naming the field."""
    out: dict[str, Any] = {}
    for f in fields:
        raw = [v.strip() for v in form.get(f.name, [])]
        first = raw[0] if raw else ""
        try:
            out[f.name] = _value(f, raw, first)
        except ValueError as exc:
            raise BadRequest(f"{f.label}: {exc}", param=f.name) from None
    return out


def _value(f: Field, raw: list[str], first: str) -> Any:
    if f.kind == "checkbox":
        return first in ("on", "true", "1")
    if f.kind in ("choices", "select_many"):
        return [v for v in raw if v] or None
    if f.kind == "select":
        return first or None
    if not first:
        return None
    if f.kind == "integer":
        return int(first)
    if f.kind == "number":
        return float(first)
    if f.kind == "datetime":
        moment = datetime.fromisoformat(first)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if f.kind == "list":
        return [p.strip() for p in first.replace("\n", ",").split(",") if p.strip()] or None
    if f.kind == "json":
        try:
            value = json.loads(first)
        except json.JSONDecodeError:
            raise ValueError("not valid JSON") from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        return value
    return first
