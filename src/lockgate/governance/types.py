"""The shapes shared by storage (``lockgate.state``) and enforcement (``lockgate.governance``).

Storage returns these plain dataclasses; enforcement never touches ORM rows.
Field names follow LiteLLM Proxy's management API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol


@dataclass
class Limits:
    """Budget and rate-limit fields shared by keys, users, teams, organizations and customers."""

    max_budget: float | None = None
    budget_duration: str | None = None  # "30s", "1h", "1d", "7d", "30d", "1mo"
    budget_reset_at: datetime | None = None
    spend: float = 0.0
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_parallel_requests: int | None = None
    soft_budget: float | None = None  # alerts only (docs/alerts.md): never refuses a request


@dataclass
class Entity:
    """A user, team, organization or customer (end user) as enforcement sees it."""

    kind: str  # "user" | "team" | "organization" | "customer"
    id: str
    models: list[str] = field(default_factory=list)  # empty = all models
    limits: Limits = field(default_factory=Limits)
    blocked: bool = False
    role: str | None = None  # users: proxy_admin | proxy_admin_viewer | internal_user | internal_user_viewer
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class KeyRecord:
    token_hash: str  # sha256 hex of the raw key; the raw key is never stored
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    organization_id: str | None = None
    models: list[str] = field(default_factory=list)  # names, wildcards ("openai/*"), access groups; empty = all
    limits: Limits = field(default_factory=Limits)
    model_max_budget: dict[str, float] = field(default_factory=dict)
    model_rpm_limit: dict[str, int] = field(default_factory=dict)
    model_tpm_limit: dict[str, int] = field(default_factory=dict)
    model_spend: dict[str, float] = field(default_factory=dict)
    allowed_routes: list[str] = field(default_factory=list)  # empty = all model routes
    allowed_ips: list[str] = field(default_factory=list)  # IPs or CIDRs; empty = any
    allowed_cache_controls: list[str] | None = None  # per-request cache controls it may use; None = any
    expires: datetime | None = None
    blocked: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Principal:
    """Who is calling: the key and the entities above it (None where not linked)."""

    key: KeyRecord
    user: Entity | None = None
    team: Entity | None = None
    organization: Entity | None = None
    is_master: bool = False
    # authenticated by a JWT (auth/jwt_auth.py): ``key`` is synthetic (no key limits, no spend recorded on a key)
    jwt: bool = False
    end_user: str | None = None  # a JWT's end user (litellm_jwtauth.end_user_id_jwt_field) when the body names none
    # model -> admission plan (governance.enforcement: this principal's counters for that model, cached
    # for the life of this snapshot, until a budget period ends)
    plans: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


class SpendRecord(NamedTuple):
    """One model request's accounting, journaled before the answer completes.

    The ``spend_logs`` row itself, in column order and in the embedded database's own forms: times as
    UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``, SQLAlchemy's SQLite form), metadata as JSON text.  Cheap
    to build on the request path, journaled as one JSON array, bound to the SQLite insert as it is."""

    request_id: str
    api_key: str | None  # token hash, never the raw key
    user_id: str | None
    team_id: str | None
    organization_id: str | None
    end_user: str | None
    model_group: str
    model: str | None
    deployment_id: str | None
    provider: str | None
    route: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    spend: float
    status: int
    start_time: str
    end_time: str
    metadata: str = "{}"


class Store(Protocol):
    """What enforcement needs from storage (implemented by ``lockgate.state.store.SQLStore``)."""

    async def principal_for_key(self, token_hash: str) -> Principal | None: ...

    async def customer(self, end_user_id: str) -> Entity | None: ...

    async def apply_spend(self, records: list[SpendRecord], fresh: bool = False) -> int:
        """Insert spend logs (ignoring request ids already present) and add each new
        record's spend to its key (and per-model key spend), user, team, organization
        and customer in the same transaction.  Returns how many were new.  ``fresh``: the
        caller knows these records were never applied (a hint that may skip the id check)."""
        ...

    async def reset_due_budgets(self, now: datetime) -> int:
        """Set spend to 0 and advance budget_reset_at for every entity whose reset time passed; returns
        how many were reset."""
        ...
