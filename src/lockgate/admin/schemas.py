"""Request bodies and query strings of the management API (LiteLLM Proxy's field names), as msgspec
structs.  Unknown fields are ignored, as LiteLLM's scripts send many; every known field is validated and
a failure answers 400 naming it (``problem``).  The admin UI builds its forms from the same structs.

msgspec was chosen over pydantic for memory: importing pydantic and building these models cost ~12 MB of
the gateway's RSS, msgspec ~0.4 MB (docs/performance.md, session 11)."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from ..state import durations
from .auth import TEAM_ROLES, USER_ROLES

NonNegative = Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0)]
Name = Annotated[str, Meta(min_length=1)]
Ident = Annotated[str, Meta(min_length=1, max_length=255)]
Password = Annotated[str, Meta(min_length=8, max_length=1024)]  # UI sign-in (argon2id)
Page = Annotated[int, Meta(ge=1)]
PageSize = Annotated[int, Meta(ge=1, le=1000)]
NonEmpty = Annotated[list[str], Meta(min_length=1)]

S = TypeVar("S", bound="Body")


def invalid(field: str, message: str) -> ValueError:
    """A failed check of one field inside ``__post_init__`` (``problem`` finds the field again)."""
    return ValueError(f"field `{field}`: {message}")


def _check_duration(field: str, value: str | None) -> None:
    if value is not None:
        try:
            durations.parse(value)
        except ValueError as exc:
            raise invalid(field, str(exc)) from None


class Body(Struct, kw_only=True, dict=True):
    """A request body.  ``dict=True`` keeps the names the client actually sent beside the fields."""

    def given(self, *exclude: str) -> dict[str, Any]:
        """The fields the client actually sent (for updates), minus ``exclude``."""
        sent: frozenset[str] = self.__dict__.get("_sent", frozenset())
        return {k: getattr(self, k) for k in self.__struct_fields__ if k in sent and k not in exclude}

    def dump(self, *exclude: str) -> dict[str, Any]:
        """Every field, sent or defaulted, minus ``exclude``."""
        return {k: getattr(self, k) for k in self.__struct_fields__ if k not in exclude}

    def __repr__(self) -> str:  # never a password in a log line
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__struct_fields__ if k != "password")
        return f"{type(self).__name__}({shown})"


def decode(kind: type[S], raw: bytes) -> S:
    """A JSON body -> ``kind`` (an empty body is ``{}``).  Raises ``msgspec.ValidationError`` /
    ``msgspec.DecodeError``."""
    data = msgspec.json.decode(raw or b"{}")
    return validate(kind, data)


def validate(kind: type[S], data: object) -> S:
    """Python values (a decoded body, a form's values) -> ``kind``, remembering which names were sent."""
    if not isinstance(data, dict):
        raise msgspec.ValidationError("Expected `object`, got `" + type(data).__name__ + "`")
    body = msgspec.convert(data, kind, strict=False)
    body.__dict__["_sent"] = frozenset(data)
    return body


Q = TypeVar("Q", bound="Query")


class Query(Struct, kw_only=True):
    """A query string's parameters (strings converted to the declared types)."""


def query(kind: type[Q], params: dict[str, str]) -> Q:
    return msgspec.convert(params, kind, strict=False)


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_OWN = re.compile(r"^field `(?P<name>[^`]+)`: (?P<msg>.*)$", re.S)


def problem(exc: msgspec.ValidationError | msgspec.DecodeError) -> tuple[str, str]:
    """A validation or decoding error -> (the field it names, a message naming it)."""
    if not isinstance(exc, msgspec.ValidationError):  # (a ValidationError is a DecodeError too)
        return "body", "request body is not valid JSON"
    found = _AT.match(str(exc))
    message, path = (found["msg"], found["path"] or "") if found else (str(exc), "")
    parts = [p for p in re.split(r"\.|\[\d+\]", path) if p]
    missing = _MISSING.match(message)
    if missing:
        field = ".".join([*parts, missing["name"]])
        return field, f"missing required field '{field}'"
    own = _OWN.match(message)
    if own:
        parts.append(own["name"])
        message = own["msg"]
    field = ".".join(parts) or "body"
    message = message.replace("`", "")
    return field, f"field '{field}': {message[:1].lower()}{message[1:]}"


class LimitFields(Body, kw_only=True):
    max_budget: NonNegative | None = None
    budget_duration: str | None = None
    spend: NonNegative | None = None
    tpm_limit: Count | None = None
    rpm_limit: Count | None = None
    max_parallel_requests: Count | None = None
    soft_budget: NonNegative | None = None  # a budget alert, never a refusal (docs/alerts.md)
    models: list[str] | None = None
    blocked: bool | None = None
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_duration("budget_duration", self.budget_duration)


# fields LiteLLM takes at the top level of /key/* and /team/* and keeps in the object's metadata
METADATA_FIELDS = ("guardrails", "permissions")


def fold_into_metadata(fields: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """Move ``guardrails`` / ``permissions`` into ``metadata`` (merged with ``current``, the stored one)."""
    moved = {name: fields.pop(name) for name in METADATA_FIELDS if name in fields}
    if moved:
        given = fields.get("metadata")
        base: dict[str, Any] = given if isinstance(given, dict) else (current or {})
        fields["metadata"] = {**base, **moved}
    return fields


CacheControl = Literal["no-cache", "no-store", "ttl", "s-maxage", "namespace", "use-cache"]


class GuardedFields(LimitFields, kw_only=True):
    """Keys and teams also take the guardrails an admin attaches (kept in metadata: ``METADATA_FIELDS``)."""

    guardrails: list[str] | None = None  # applied to every request (docs/guardrails.md)
    permissions: dict[str, bool] | None = None  # modify_guardrails: the requests may switch guardrails off


class KeyFields(GuardedFields, kw_only=True):
    key_alias: Annotated[str, Meta(max_length=255)] | None = None
    duration: str | None = None
    expires: datetime | None = None
    team_id: str | None = None
    user_id: str | None = None
    organization_id: str | None = None
    model_max_budget: dict[str, float] | None = None
    model_rpm_limit: dict[str, int] | None = None
    model_tpm_limit: dict[str, int] | None = None
    allowed_routes: list[str] | None = None
    allowed_ips: list[str] | None = None
    allowed_cache_controls: list[CacheControl] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_duration("duration", self.duration)
        if self.allowed_ips is not None:
            self.allowed_ips = [_network(item) for item in self.allowed_ips]
        for name in ("model_max_budget", "model_rpm_limit", "model_tpm_limit"):
            value: dict[str, float] | None = getattr(self, name)
            if value and any(v < 0 for v in value.values()):
                raise invalid(name, "values must be >= 0")


def _network(item: str) -> str:
    try:
        return str(ipaddress.ip_network(item.strip(), strict=False))
    except ValueError:
        raise invalid("allowed_ips", f"{item!r} is not an IP address or CIDR network") from None


class KeyGenerate(KeyFields, kw_only=True):
    pass


class KeyUpdate(KeyFields, kw_only=True):
    key: Name


class KeyRef(Body, kw_only=True):
    key: Name


class KeyRegenerate(Body, kw_only=True):
    key: Name


class KeyDelete(Body, kw_only=True):
    keys: list[str] | None = None
    key_aliases: list[str] | None = None


class Member(Body, kw_only=True):
    user_id: Name
    role: str = "member"

    def __post_init__(self) -> None:
        if self.role not in TEAM_ROLES:
            raise invalid("role", f"must be one of {', '.join(TEAM_ROLES)}")


class TeamFields(GuardedFields, kw_only=True):
    team_alias: str | None = None
    organization_id: str | None = None


class TeamNew(TeamFields, kw_only=True):
    team_id: Ident | None = None
    members_with_roles: list[Member] | None = None


class TeamUpdate(TeamFields, kw_only=True):
    team_id: Name


class TeamDelete(Body, kw_only=True):
    team_ids: NonEmpty


class MemberAdd(Body, kw_only=True):
    team_id: Name
    member: Member | list[Member]


class MemberDelete(Body, kw_only=True):
    team_id: Name
    user_id: Name


class UserFields(LimitFields, kw_only=True):
    user_email: str | None = None
    user_alias: str | None = None
    user_role: str | None = None
    organization_id: str | None = None
    password: Password | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.user_role is not None and self.user_role not in USER_ROLES:
            raise invalid("user_role", f"must be one of {', '.join(USER_ROLES)}")


class UserNew(UserFields, kw_only=True):
    user_id: Ident | None = None
    teams: list[str] | None = None


class UserUpdate(UserFields, kw_only=True):
    user_id: Name


class UserDelete(Body, kw_only=True):
    user_ids: NonEmpty


class OrgNew(LimitFields, kw_only=True):
    organization_id: Ident | None = None
    organization_alias: str | None = None


class OrgUpdate(LimitFields, kw_only=True):
    organization_id: Name
    organization_alias: str | None = None


class OrgDelete(Body, kw_only=True):
    organization_ids: NonEmpty


class CustomerNew(LimitFields, kw_only=True):
    user_id: Ident
    alias: str | None = None


class CustomerUpdate(LimitFields, kw_only=True):
    user_id: Name
    alias: str | None = None


class CustomerIds(Body, kw_only=True):
    user_ids: NonEmpty


# ------------------------------------------------------------------ query strings

class Paged(Query, kw_only=True):
    page: Page = 1
    page_size: PageSize = 50


class KeyInfoQuery(Query, kw_only=True):
    key: str | None = None  # default: the calling key itself


class KeyListQuery(Paged, kw_only=True):
    size: PageSize | None = None  # LiteLLM's older name of page_size
    user_id: str | None = None
    team_id: str | None = None
    organization_id: str | None = None
    key_alias: str | None = None
    return_full_object: bool = False


class TeamInfoQuery(Query, kw_only=True):
    team_id: Name


class TeamListQuery(Paged, kw_only=True):
    organization_id: str | None = None


class UserInfoQuery(Query, kw_only=True):
    user_id: str | None = None  # default: the caller's own user


class UserListQuery(Paged, kw_only=True):
    role: str | None = None
    organization_id: str | None = None


class OrgInfoQuery(Query, kw_only=True):
    organization_id: Name


class CustomerInfoQuery(Query, kw_only=True):
    end_user_id: Name


class Dates(Query, kw_only=True):
    start_date: str | None = None  # YYYY-MM-DD or an ISO 8601 time
    end_date: str | None = None


class PagedDates(Paged, kw_only=True):
    start_date: str | None = None
    end_date: str | None = None


class SpendLogsQuery(PagedDates, kw_only=True):
    api_key: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    request_id: str | None = None


class SpendReportQuery(Dates, kw_only=True):
    group_by: Literal["day", "team", "key", "user", "model"] = "day"


class AuditLogsQuery(PagedDates, kw_only=True):
    changed_by: str | None = None
    action: str | None = None
    table_name: str | None = None
    object_id: str | None = None


class ServicesQuery(Query, kw_only=True):
    service: str | None = None
