"""Request bodies of the management API (LiteLLM Proxy's field names).  Unknown fields are ignored, as
LiteLLM's scripts send many; every known field is validated and a failure answers 400 naming it."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..state import durations
from .auth import TEAM_ROLES, USER_ROLES


def _duration(value: str | None) -> str | None:
    if value is None:
        return None
    durations.parse(value)  # ValueError -> 400 naming the field
    return value


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def given(self, *exclude: str) -> dict[str, Any]:
        """The fields the client actually sent (for updates), minus ``exclude``."""
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k not in exclude}


class LimitFields(Body):
    max_budget: float | None = Field(default=None, ge=0)
    budget_duration: str | None = None
    spend: float | None = Field(default=None, ge=0)
    tpm_limit: int | None = Field(default=None, ge=0)
    rpm_limit: int | None = Field(default=None, ge=0)
    max_parallel_requests: int | None = Field(default=None, ge=0)
    soft_budget: float | None = Field(default=None, ge=0)  # a budget alert, never a refusal (docs/alerts.md)
    models: list[str] | None = None
    blocked: bool | None = None
    metadata: dict[str, Any] | None = None

    _check_duration = field_validator("budget_duration")(lambda cls, v: _duration(v))


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


class GuardrailFields(Body):
    guardrails: list[str] | None = None  # attached by an admin: applied to every request (docs/guardrails.md)
    permissions: dict[str, bool] | None = None  # modify_guardrails: the key's requests may switch guardrails off


class KeyFields(LimitFields, GuardrailFields):
    key_alias: str | None = Field(default=None, max_length=255)
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
    allowed_cache_controls: list[Literal["no-cache", "no-store", "ttl", "s-maxage", "namespace", "use-cache"]] | None = None

    _check_key_duration = field_validator("duration")(lambda cls, v: _duration(v))

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return out

    @field_validator("model_max_budget", "model_rpm_limit", "model_tpm_limit")
    @classmethod
    def _non_negative(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value and any(v < 0 for v in value.values()):
            raise ValueError("values must be >= 0")
        return value


class KeyGenerate(KeyFields):
    pass


class KeyUpdate(KeyFields):
    key: str = Field(min_length=1)


class KeyRef(Body):
    key: str = Field(min_length=1)


class KeyRegenerate(Body):
    key: str = Field(min_length=1)


class KeyDelete(Body):
    keys: list[str] | None = None
    key_aliases: list[str] | None = None


class Member(Body):
    user_id: str = Field(min_length=1)
    role: str = "member"

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in TEAM_ROLES:
            raise ValueError(f"must be one of {', '.join(TEAM_ROLES)}")
        return value


class TeamNew(LimitFields, GuardrailFields):
    team_id: str | None = Field(default=None, min_length=1, max_length=255)
    team_alias: str | None = None
    organization_id: str | None = None
    members_with_roles: list[Member] | None = None


class TeamUpdate(LimitFields, GuardrailFields):
    team_id: str = Field(min_length=1)
    team_alias: str | None = None
    organization_id: str | None = None


class TeamDelete(Body):
    team_ids: list[str] = Field(min_length=1)


class MemberAdd(Body):
    team_id: str = Field(min_length=1)
    member: Member | list[Member]


class MemberDelete(Body):
    team_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)


def _user_role(value: str | None) -> str | None:
    if value is not None and value not in USER_ROLES:
        raise ValueError(f"must be one of {', '.join(USER_ROLES)}")
    return value


class UserNew(LimitFields):
    user_id: str | None = Field(default=None, min_length=1, max_length=255)
    user_email: str | None = None
    user_alias: str | None = None
    user_role: str | None = None
    organization_id: str | None = None
    teams: list[str] | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024, repr=False)  # UI sign-in (argon2id)

    _check_role = field_validator("user_role")(lambda cls, v: _user_role(v))


class UserUpdate(LimitFields):
    user_id: str = Field(min_length=1)
    user_email: str | None = None
    user_alias: str | None = None
    user_role: str | None = None
    organization_id: str | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024, repr=False)  # UI sign-in (argon2id)

    _check_role = field_validator("user_role")(lambda cls, v: _user_role(v))


class UserDelete(Body):
    user_ids: list[str] = Field(min_length=1)


class OrgNew(LimitFields):
    organization_id: str | None = Field(default=None, min_length=1, max_length=255)
    organization_alias: str | None = None


class OrgUpdate(LimitFields):
    organization_id: str = Field(min_length=1)
    organization_alias: str | None = None


class OrgDelete(Body):
    organization_ids: list[str] = Field(min_length=1)


class CustomerNew(LimitFields):
    user_id: str = Field(min_length=1, max_length=255)
    alias: str | None = None


class CustomerUpdate(LimitFields):
    user_id: str = Field(min_length=1)
    alias: str | None = None


class CustomerIds(Body):
    user_ids: list[str] = Field(min_length=1)
