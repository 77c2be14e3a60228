"""The tables (SQLAlchemy 2 typed declarative).  Changing one means adding an Alembic revision under
``migrations/versions``; ``tests/test_store.py`` checks that the migrations match these models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    event,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from . import rollup


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC on every backend, returned timezone-aware (UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


def _now() -> datetime:
    return datetime.now(UTC)


class LimitsMixin:
    """Budget and rate-limit columns shared by every level (the fields of ``governance.types.Limits``)."""

    max_budget: Mapped[float | None] = mapped_column(Float)
    budget_duration: Mapped[str | None] = mapped_column(String(16))
    budget_reset_at: Mapped[datetime | None]
    spend: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    max_parallel_requests: Mapped[int | None] = mapped_column(Integer)
    models: Mapped[list[Any]] = mapped_column(JSON, default=list)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)
    created_by: Mapped[str | None] = mapped_column(String(255))
    # migration 0005 (added last): spend that raises a budget alert, never blocks (docs/alerts.md)
    soft_budget: Mapped[float | None] = mapped_column(Float, sort_order=1001)


class Organization(LimitsMixin, Base):
    __tablename__ = "organizations"
    organization_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    organization_alias: Mapped[str | None] = mapped_column(String(255))


class Team(LimitsMixin, Base):
    __tablename__ = "teams"
    team_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    team_alias: Mapped[str | None] = mapped_column(String(255))
    organization_id: Mapped[str | None] = mapped_column(String(255), index=True)


class TeamMember(Base):
    __tablename__ = "team_members"
    team_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(32), default="member")  # "admin" | "member"
    created_at: Mapped[datetime] = mapped_column(default=_now)


class User(LimitsMixin, Base):
    __tablename__ = "users"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_email: Mapped[str | None] = mapped_column(String(255))
    user_alias: Mapped[str | None] = mapped_column(String(255))
    user_role: Mapped[str | None] = mapped_column(String(32))
    organization_id: Mapped[str | None] = mapped_column(String(255), index=True)


class Key(LimitsMixin, Base):
    __tablename__ = "keys"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the raw key
    key_name: Mapped[str] = mapped_column(String(32))  # masked: sk-...abcd
    key_alias: Mapped[str | None] = mapped_column(String(255), index=True)
    user_id: Mapped[str | None] = mapped_column(String(255), index=True)
    team_id: Mapped[str | None] = mapped_column(String(255), index=True)
    organization_id: Mapped[str | None] = mapped_column(String(255), index=True)
    model_max_budget: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_rpm_limit: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_tpm_limit: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    allowed_routes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    allowed_ips: Mapped[list[Any]] = mapped_column(JSON, default=list)
    expires: Mapped[datetime | None]
    # migration 0003 (added last, so a new database's column order is the migrated one's)
    allowed_cache_controls: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True, sort_order=1000)  # None/[]: any


class KeyModelSpend(Base):
    __tablename__ = "key_model_spend"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(255), primary_key=True)
    spend: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class Customer(LimitsMixin, Base):
    """End users: the ``user`` field of model requests."""

    __tablename__ = "customers"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    alias: Mapped[str | None] = mapped_column(String(255))


class SpendLog(Base):
    __tablename__ = "spend_logs"
    # one row per model request: the only secondary index is start_time (every other one cost ~1 µs
    # per request on the embedded database; migration 0002), queries filter by time as LiteLLM's do
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    api_key: Mapped[str | None] = mapped_column(String(64))  # token hash
    user_id: Mapped[str | None] = mapped_column(String(255))
    team_id: Mapped[str | None] = mapped_column(String(255))
    organization_id: Mapped[str | None] = mapped_column(String(255))
    end_user: Mapped[str | None] = mapped_column(String(255))
    model_group: Mapped[str] = mapped_column(String(255))
    model: Mapped[str | None] = mapped_column(String(255))
    deployment_id: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    spend: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[datetime] = mapped_column(index=True)
    end_time: Mapped[datetime]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class AuditLog(Base):
    __tablename__ = "audit_logs"
    __table_args__ = (Index("ix_audit_logs_table_object", "table_name", "object_id"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    changed_by: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(32))  # created | updated | deleted | blocked | ...
    table_name: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(255))
    before_value: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=_now, index=True)


class ProxyBudget(Base):
    """One row (id 1): the global budget of ``general_settings.max_budget`` / ``budget_duration``."""

    __tablename__ = "proxy_budget"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    max_budget: Mapped[float | None] = mapped_column(Float)
    budget_duration: Mapped[str | None] = mapped_column(String(16))
    budget_reset_at: Mapped[datetime | None]
    spend: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)


ENTITY_TABLES = {"organization": Organization, "team": Team, "user": User, "customer": Customer, "key": Key}


# the admin UI's key list (ui/keylist.py): newest first, and the blocked / active filter, at 100k keys
# (migration 0004)
Index("ix_keys_created_at_token_hash", Key.created_at, Key.token_hash)
Index("ix_keys_blocked_created_at", Key.blocked, Key.created_at, Key.token_hash)


class UISession(Base):
    """A signed-in admin UI session (ui/sessions.py); the cookie holds the token, the row its sha256."""

    __tablename__ = "ui_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's token
    user_id: Mapped[str | None] = mapped_column(String(255), index=True)  # None: the master key
    role: Mapped[str] = mapped_column(String(32))
    via: Mapped[str] = mapped_column(String(16))  # master_key | password | sso
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=_now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # a master-key session (migration 0007): HMAC-SHA256 of the master key it was opened with, keyed by the
    # cookie's token (the row alone cannot test guesses of the key); refused once the configured key differs
    master_key_check: Mapped[str | None] = mapped_column(String(64))


class UICredential(Base):
    """A local user's password (argon2id) and optional TOTP second factor, for the admin UI's sign-in."""

    __tablename__ = "ui_credentials"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    password_hash: Mapped[str | None] = mapped_column(Text)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    totp_last: Mapped[int | None] = mapped_column(Integer)  # the last accepted code's time step (no replay)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)


# the admin UI: an internal user's own rows, newest first (ui/data/, migration 0005)
Index("ix_spend_logs_user_id_start_time", SpendLog.user_id, SpendLog.start_time)


class SpendRollup(Base):
    """spend_logs summed per 15-minute UTC bucket and model group, kept by the spend writer (state/rollup.py)."""

    __tablename__ = "spend_rollup"
    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    model_group: Mapped[str] = mapped_column(String(255), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    spend: Mapped[float] = mapped_column(Float, default=0.0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)  # sum of end_time - start_time
    ttft_ms: Mapped[float] = mapped_column(Float, default=0.0)  # sum of metadata.ttft_ms where present
    ttft_count: Mapped[int] = mapped_column(BigInteger, default=0)


class SpendDaily(Base):
    """Closed local days of spend_logs summed per timezone, dimension and value, for the admin UI's usage by
    key, team, user or tag (ui/data/daily.py materialises them off the request path; dimension ``day`` with
    value ``''`` holds the day's totals, which the readers compare with spend_rollup before trusting a day)."""

    __tablename__ = "spend_daily"
    tz: Mapped[str] = mapped_column(String(64), primary_key=True)  # the IANA zone the days are counted in
    dimension: Mapped[str] = mapped_column(String(8), primary_key=True)  # day | key | team | user | tag
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # the local date, YYYY-MM-DD
    value: Mapped[str] = mapped_column(Text, primary_key=True)  # token hash, team id, user id or tag
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    spend: Mapped[float] = mapped_column(Float, default=0.0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class SpendWindow(Base):
    """The last ``days`` closed local days of spend_daily summed per key, for the admin UI's usage by key over
    the ranges that end today (ui/data/windows.py builds them off the request path; dimension ``day`` with
    value ``''`` holds the window's totals, which the readers compare with spend_rollup before trusting it)."""

    __tablename__ = "spend_window"
    tz: Mapped[str] = mapped_column(String(64), primary_key=True)  # the IANA zone the days are counted in
    days: Mapped[int] = mapped_column(Integer, primary_key=True)  # how many closed days are summed
    last_day: Mapped[str] = mapped_column(String(10), primary_key=True)  # the last of them, YYYY-MM-DD
    dimension: Mapped[str] = mapped_column(String(8), primary_key=True)  # day | key
    value: Mapped[str] = mapped_column(Text, primary_key=True)  # token hash ('' for the totals)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    spend: Mapped[float] = mapped_column(Float, default=0.0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


# the top keys of a window by spend: a walk of this index (migration 0009)
Index("ix_spend_window_rank", SpendWindow.tz, SpendWindow.days, SpendWindow.last_day, SpendWindow.dimension,
      SpendWindow.spend, SpendWindow.value)


event.listen(Base.metadata, "after_create", rollup.install)  # its DELETE trigger, on a database create_all builds
