"""``SQLStore``: the ``governance.types.Store`` protocol plus the CRUD of the management API.

Every method opens its own short transaction.  Management mutations write their audit record in the
same transaction as the change.  Nothing here is called per model request except through the
enforcement side's caches and its batched spend writer (``apply_spend``).
"""

from __future__ import annotations

import builtins
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast, overload

import orjson
from sqlalchemy import CursorResult, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..governance.types import Entity, KeyRecord, Limits, Principal, SpendRecord
from . import durations, migrate, rollup, sqlite_spend
from .models import (
    AuditLog,
    Base,
    Customer,
    Key,
    KeyModelSpend,
    Organization,
    ProxyBudget,
    SpendLog,
    SpendRollup,
    Team,
    TeamMember,
    User,
)
from .timetext import parse_utc_text

# kind -> (model, primary-key attribute)
EntityRow = Key | User | Team | Organization | Customer
EntityModel = type[Key] | type[User] | type[Team] | type[Organization] | type[Customer]

KINDS: dict[str, tuple[EntityModel, str]] = {
    "key": (Key, "token_hash"),
    "user": (User, "user_id"),
    "team": (Team, "team_id"),
    "organization": (Organization, "organization_id"),
    "customer": (Customer, "user_id"),
}

SECRET_NAMES = ("key", "token", "api_key", "master_key", "password", "secret", "authorization", "new_key")
REDACTED = "[redacted]"


@dataclass
class Audit:
    """Who made a management change, recorded with it."""

    changed_by: str
    ip: str | None = None
    user_agent: str | None = None


def redact(value: Any) -> Any:
    """Copy of ``value`` with secret-looking fields and raw ``sk-`` strings replaced."""
    if isinstance(value, dict):
        out = {}
        for name, item in value.items():
            lowered = str(name).lower()
            if lowered in SECRET_NAMES or lowered.endswith(("_secret", "_password", "api_key")):
                out[name] = REDACTED if item is not None else None
            else:
                out[name] = redact(item)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and value.startswith("sk-") and len(value) > 12:
        return REDACTED
    return value


@overload
def row_dict(row: Base) -> dict[str, Any]: ...
@overload
def row_dict(row: None) -> None: ...
def row_dict(row: Base | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out: dict[str, Any] = {}
    for attr in row.__mapper__.column_attrs:
        out[attr.columns[0].name] = getattr(row, attr.key)
    return out


def _jsonable(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}


def _attr(name: str) -> str:
    return "metadata_" if name == "metadata" else name


def limits_of(row: Any) -> Limits:
    return Limits(
        max_budget=row.max_budget, budget_duration=row.budget_duration, budget_reset_at=row.budget_reset_at,
        spend=row.spend or 0.0, tpm_limit=row.tpm_limit, rpm_limit=row.rpm_limit,
        max_parallel_requests=row.max_parallel_requests, soft_budget=getattr(row, "soft_budget", None),
    )


def entity_of(kind: str, row: Any) -> Entity:
    return Entity(
        kind=kind, id=getattr(row, KINDS[kind][1]), models=list(row.models or []), limits=limits_of(row),
        blocked=bool(row.blocked), role=getattr(row, "user_role", None), metadata=dict(row.metadata_ or {}),
    )


def key_record_of(row: Key, model_spend: dict[str, float]) -> KeyRecord:
    return KeyRecord(
        token_hash=row.token_hash, key_alias=row.key_alias, user_id=row.user_id, team_id=row.team_id,
        organization_id=row.organization_id, models=list(row.models or []), limits=limits_of(row),
        model_max_budget=dict(row.model_max_budget or {}), model_rpm_limit=dict(row.model_rpm_limit or {}),
        model_tpm_limit=dict(row.model_tpm_limit or {}), model_spend=model_spend,
        allowed_routes=list(row.allowed_routes or []), allowed_ips=list(row.allowed_ips or []),
        allowed_cache_controls=list(row.allowed_cache_controls) if row.allowed_cache_controls else None,
        expires=row.expires, blocked=bool(row.blocked), metadata=dict(row.metadata_ or {}),
    )






TABLE_MODELS: dict[str, EntityModel] = {model.__tablename__: model for model, _pk in KINDS.values()}


@dataclass
class SpendTotals:
    """What a batch of new spend records adds where, in a fixed order (row locks taken in order)."""

    entities: list[tuple[str, str, str, float]]  # (table, primary key column, id, amount)
    key_models: list[tuple[str, str, float]]  # (token hash, model group, amount)
    customers: list[str]
    total: float
    now: datetime
    buckets: list[rollup.Bucket]  # the batch summed for spend_rollup (state/rollup.py)

    @classmethod
    def of(cls, new: list[SpendRecord]) -> SpendTotals:
        sums: dict[tuple[str, str], float] = defaultdict(float)
        model_sums: dict[tuple[str, str], float] = defaultdict(float)
        customers: set[str] = set()
        total = 0.0
        for r in new:
            if not r.spend:
                continue
            total += r.spend
            if r.api_key:
                sums[("key", r.api_key)] += r.spend
                model_sums[(r.api_key, r.model_group)] += r.spend
            if r.user_id:
                sums[("user", r.user_id)] += r.spend
            if r.team_id:
                sums[("team", r.team_id)] += r.spend
            if r.organization_id:
                sums[("organization", r.organization_id)] += r.spend
            if r.end_user:
                sums[("customer", r.end_user)] += r.spend
                customers.add(r.end_user)
        entities = sorted((KINDS[kind][0].__tablename__, KINDS[kind][1], ident, amount)
                          for (kind, ident), amount in sums.items())
        return cls(entities, sorted((k, m, a) for (k, m), a in model_sums.items()), sorted(customers), total,
                   durations.utcnow(), rollup.batch(new))


class SQLStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name  # "sqlite" | "postgresql"
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        database = engine.url.database
        self._sqlite_spend: sqlite_spend.SQLiteSpend | None = None
        if self.dialect == "sqlite" and database and database != ":memory:" and "mode=memory" not in str(engine.url):
            has_updated_at = {name: hasattr(m, "updated_at") for name, m in
                              [*TABLE_MODELS.items(), (ProxyBudget.__tablename__, ProxyBudget)]}
            self._sqlite_spend = sqlite_spend.SQLiteSpend(database, SpendTotals.of, has_updated_at)

    # ----------------------------------------------------------------- lifecycle

    async def migrate(self) -> None:
        await migrate.upgrade(self.engine)

    async def close(self) -> None:
        if self._sqlite_spend is not None:
            self._sqlite_spend.close()
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001
            return False

    async def configure_proxy_budget(self, max_budget: float | None, budget_duration: str | None,
                                     now: datetime | None = None) -> None:
        """Keep the single ``proxy_budget`` row in line with ``general_settings`` (its spend is kept)."""
        now = now or durations.utcnow()
        async with self.sessions.begin() as s:
            # the workers of ``serve --workers N`` start together: the first creates the row, none fails
            await s.execute(self._insert(ProxyBudget).values(id=1, spend=0.0).on_conflict_do_nothing(
                index_elements=["id"]))
            row = await s.get(ProxyBudget, 1, with_for_update=self.dialect == "postgresql")
            assert row is not None
            if row.budget_duration != budget_duration or (budget_duration and row.budget_reset_at is None):
                row.budget_reset_at = durations.add(now, budget_duration) if budget_duration else None
            row.max_budget = max_budget
            row.budget_duration = budget_duration

    async def proxy_budget(self) -> Limits:
        async with self.sessions() as s:
            row = await s.get(ProxyBudget, 1)
            if row is None:
                return Limits()
            return Limits(max_budget=row.max_budget, budget_duration=row.budget_duration,
                          budget_reset_at=row.budget_reset_at, spend=row.spend or 0.0)

    # ----------------------------------------------------------------- Store protocol

    async def principal_for_key(self, token_hash: str) -> Principal | None:
        async with self.sessions() as s:
            key = await s.get(Key, token_hash)
            if key is None:
                return None
            spend_rows = await s.execute(select(KeyModelSpend.model, KeyModelSpend.spend)
                                         .where(KeyModelSpend.token_hash == token_hash))
            principal = Principal(key=key_record_of(key, {m: v for m, v in spend_rows.all()}))
            if key.user_id:
                user = await s.get(User, key.user_id)
                principal.user = entity_of("user", user) if user else None
            team = await s.get(Team, key.team_id) if key.team_id else None
            principal.team = entity_of("team", team) if team else None
            org_id = key.organization_id or (team.organization_id if team else None)
            if org_id:
                org = await s.get(Organization, org_id)
                principal.organization = entity_of("organization", org) if org else None
            return principal

    async def customer(self, end_user_id: str) -> Entity | None:
        async with self.sessions() as s:
            row = await s.get(Customer, end_user_id)
            return entity_of("customer", row) if row else None

    async def _insert_spend_pg(self, s: AsyncSession, unique: dict[str, SpendRecord]) -> list[SpendRecord]:
        """One ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING``: no per-row SQL
        compilation or type processing (~10x cheaper than an ORM insert), and says which rows were new."""
        conn = await s.connection()
        columns = tuple(list(c) for c in zip(*(self._spend_row(r) for r in unique.values()), strict=True))
        result = await conn.exec_driver_sql(self._spend_sql_pg, columns)
        return [unique[rid] for rid in result.scalars()]

    async def _insert_spend_exact(self, s: AsyncSession, unique: dict[str, SpendRecord]) -> list[SpendRecord]:
        """SQLAlchemy's insert with RETURNING: says exactly which rows were new."""
        table = SpendLog.__table__
        stmt = self._insert(table).on_conflict_do_nothing(index_elements=["request_id"]).returning(table.c.request_id)
        rows = [{"request_id": r.request_id, "api_key": r.api_key, "user_id": r.user_id, "team_id": r.team_id,
                 "organization_id": r.organization_id, "end_user": r.end_user, "model_group": r.model_group,
                 "model": r.model, "deployment_id": r.deployment_id, "provider": r.provider, "route": r.route,
                 "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                 "cached_tokens": r.cached_tokens, "spend": r.spend, "status": r.status,
                 "start_time": parse_utc_text(r.start_time), "end_time": parse_utc_text(r.end_time),
                 "metadata": orjson.loads(r.metadata)} for r in unique.values()]
        inserted = set((await s.execute(stmt, rows)).scalars().all())
        return [unique[rid] for rid in inserted]

    _SPEND_COLUMNS = ("request_id", "api_key", "user_id", "team_id", "organization_id", "end_user", "model_group",
                      "model", "deployment_id", "provider", "route", "prompt_tokens", "completion_tokens",
                      "cached_tokens", "spend", "status", "start_time", "end_time", "metadata")

    _SPEND_PG_TYPES = ("varchar",) * 11 + ("int", "int", "int", "float8", "int", "timestamp", "timestamp", "json")
    _spend_sql_pg = (f"INSERT INTO spend_logs ({', '.join(_SPEND_COLUMNS)}) SELECT * FROM unnest("
                     + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_SPEND_PG_TYPES))
                     + ") ON CONFLICT (request_id) DO NOTHING RETURNING request_id")

    @staticmethod
    def _spend_row(r: SpendRecord) -> tuple[Any, ...]:
        """PostgreSQL's row: naive UTC times, as ``UTCDateTime`` stores them."""
        return (*r[:16], parse_utc_text(r.start_time), parse_utc_text(r.end_time), r.metadata)

    def _insert(self, model: Any) -> Any:
        # the dialect's own INSERT (ON CONFLICT); PostgreSQL's dialect (2 MB) is imported only when it is used
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(model)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(model)

    async def apply_spend(self, records: list[SpendRecord], fresh: bool = False) -> int:
        """Insert the spend logs and add their spend to every level, once per request id.

        ``fresh``: records handed over in memory by this process's writer, never applied before;
        the embedded SQLite path then inserts without looking the ids up first (and falls back to
        the lookup if one is there after all)."""
        if not records:
            return 0
        if self._sqlite_spend is not None:  # the embedded file: a plain sqlite3 thread (sqlite_spend.py)
            return await self._sqlite_spend.apply(records, fresh)
        unique: dict[str, SpendRecord] = {}
        for record in records:
            unique.setdefault(record.request_id, record)
        async with self.sessions.begin() as s:
            if self.dialect == "postgresql":
                new = await self._insert_spend_pg(s, unique)
            else:
                new = await self._insert_spend_exact(s, unique)
            totals = SpendTotals.of(new)
            if totals.customers:  # end users are created on first spend, as LiteLLM does
                await s.execute(self._insert(Customer).values(
                    [{"user_id": c, "spend": 0.0, "models": [], "metadata": {}, "blocked": False,
                      "created_at": totals.now, "updated_at": totals.now} for c in totals.customers]
                ).on_conflict_do_nothing(index_elements=["user_id"]))
            # fixed order of updates: concurrent writers take row locks in the same order (no deadlock)
            for table, _pk, ident, amount in totals.entities:
                model = TABLE_MODELS[table]
                pk = getattr(model, KINDS[_kind_of(model)][1])
                await s.execute(update(model).where(pk == ident).values(spend=model.spend + amount))
            for token_hash, model_name, amount in totals.key_models:
                stmt = self._insert(KeyModelSpend).values(token_hash=token_hash, model=model_name, spend=amount)
                stmt = stmt.on_conflict_do_update(index_elements=["token_hash", "model"],
                                                  set_={"spend": KeyModelSpend.spend + stmt.excluded.spend})
                await s.execute(stmt)
            if totals.total:
                await s.execute(update(ProxyBudget).where(ProxyBudget.id == 1)
                                .values(spend=ProxyBudget.spend + totals.total))
            if totals.buckets:
                stmt = self._insert(SpendRollup).values(
                    [dict(zip(rollup.COLUMNS, (parse_utc_text(b[0]), *b[1:]), strict=True)) for b in totals.buckets])
                stmt = stmt.on_conflict_do_update(
                    index_elements=["bucket", "model_group"],
                    set_={m: getattr(SpendRollup, m) + getattr(stmt.excluded, m) for m in rollup.MEASURES})
                await s.execute(stmt)
            return len(new)

    async def reset_due_budgets(self, now: datetime) -> int:
        """Reset every budget whose period ended; returns how many (keys, users, teams, ..., proxy) were reset."""
        done = 0
        async with self.sessions.begin() as s:
            for kind, (model, pk_name) in KINDS.items():
                pk = getattr(model, pk_name)
                due = await s.execute(select(pk, model.budget_duration, model.budget_reset_at).where(
                    model.budget_duration.is_not(None),
                    (model.budget_reset_at.is_(None)) | (model.budget_reset_at <= now)))
                for ident, duration, reset_at in due.all():
                    if not durations.is_valid(duration):
                        continue
                    nxt = (durations.next_reset_after(reset_at, duration, now) if reset_at
                           else durations.add(now, duration))
                    # guarded on the old reset time: two gateways resetting at once reset once
                    guard = model.budget_reset_at.is_(None) if reset_at is None else model.budget_reset_at == reset_at
                    res = await s.execute(update(model).where(pk == ident, guard)
                                          .values(spend=0.0, budget_reset_at=nxt))
                    reset = cast(CursorResult[Any], res).rowcount  # an UPDATE's result is a CursorResult
                    done += reset or 0
                    if kind == "key" and reset:
                        await s.execute(update(KeyModelSpend).where(KeyModelSpend.token_hash == ident)
                                        .values(spend=0.0))
            row = await s.get(ProxyBudget, 1)
            if row and row.budget_duration and durations.is_valid(row.budget_duration):
                if row.budget_reset_at is None:
                    row.budget_reset_at = durations.add(now, row.budget_duration)
                    done += 1
                elif row.budget_reset_at <= now:
                    row.spend = 0.0
                    row.budget_reset_at = durations.next_reset_after(row.budget_reset_at, row.budget_duration, now)
                    done += 1
        return done

    # ----------------------------------------------------------------- management CRUD

    async def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        model, _ = KINDS[kind]
        async with self.sessions() as s:
            return row_dict(await s.get(model, ident))

    async def get_many(self, kind: str, idents: list[str]) -> list[dict[str, Any]]:
        model, pk_name = KINDS[kind]
        if not idents:
            return []
        async with self.sessions() as s:
            rows = await s.scalars(select(model).where(getattr(model, pk_name).in_(idents)))
            return [row_dict(r) for r in rows]

    async def find(self, kind: str, **filters: Any) -> list[dict[str, Any]]:
        model, _ = KINDS[kind]
        async with self.sessions() as s:
            stmt = select(model)
            for name, value in filters.items():
                column = getattr(model, _attr(name))
                stmt = stmt.where(column.in_(value) if isinstance(value, (list, tuple, set)) else column == value)
            return [row_dict(r) for r in await s.scalars(stmt)]

    async def list(self, kind: str, filters: dict[str, Any], page: int = 1, page_size: int = 50,
                   any_of: dict[str, builtins.list[Any]] | None = None) -> tuple[builtins.list[dict[str, Any]], int]:
        """Rows matching every filter (None values are ignored) and, when ``any_of`` is given, at least
        one of its column IN values conditions; ordered by creation time."""
        model, pk_name = KINDS[kind]
        conditions = [getattr(model, _attr(n)) == v for n, v in filters.items() if v is not None]
        if any_of is not None:
            alternatives = [getattr(model, _attr(n)).in_(vals) for n, vals in any_of.items() if vals]
            if not alternatives:
                return [], 0
            from sqlalchemy import or_

            conditions.append(or_(*alternatives))
        async with self.sessions() as s:
            total = await s.scalar(select(func.count()).select_from(model).where(*conditions))
            rows = await s.scalars(select(model).where(*conditions)
                                   .order_by(model.created_at, getattr(model, pk_name))
                                   .offset((page - 1) * page_size).limit(page_size))
            return [row_dict(r) for r in rows], int(total or 0)

    @staticmethod
    def _prepare(model: type[Base], values: dict[str, Any], now: datetime) -> dict[str, Any]:
        out = {_attr(k): v for k, v in values.items()}
        if "budget_duration" in values:
            duration = values["budget_duration"]
            out["budget_reset_at"] = durations.add(now, duration) if duration else None
        return out

    async def _audit(self, s: AsyncSession, audit: Audit | None, action: str, table: str, object_id: str,
                     before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if audit is None:
            return
        s.add(AuditLog(
            id=uuid.uuid4().hex, changed_by=audit.changed_by, action=action, table_name=table,
            object_id=object_id, before_value=redact(_jsonable(before)), updated_values=redact(_jsonable(after)),
            ip=audit.ip, user_agent=audit.user_agent, created_at=durations.utcnow(),
        ))

    async def create(self, kind: str, values: dict[str, Any], audit: Audit | None = None) -> dict[str, Any]:
        model, pk_name = KINDS[kind]
        now = durations.utcnow()
        async with self.sessions.begin() as s:
            row = model(**self._prepare(model, values, now))
            row.created_at = row.updated_at = now
            if audit is not None:
                row.created_by = audit.changed_by
            s.add(row)
            await s.flush()
            after = row_dict(row)
            await self._audit(s, audit, "created", model.__tablename__, getattr(row, pk_name), None, after)
            return after

    async def update(self, kind: str, ident: str, values: dict[str, Any], audit: Audit | None = None,
                     action: str = "updated") -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Apply ``values``; returns (before, after) or None when the row does not exist."""
        model, _ = KINDS[kind]
        now = durations.utcnow()
        async with self.sessions.begin() as s:
            row: EntityRow | None = await s.get(model, ident, with_for_update=self.dialect == "postgresql")
            if row is None:
                return None
            before = row_dict(row)
            for name, value in self._prepare(model, values, now).items():
                setattr(row, name, value)
            row.updated_at = now
            await s.flush()
            after = row_dict(row)
            changed = {k: v for k, v in after.items() if before.get(k) != v}
            await self._audit(s, audit, action, model.__tablename__, ident, before, changed)
            return before, after

    async def delete(self, kind: str, idents: builtins.list[str], audit: Audit | None = None) -> builtins.list[dict[str, Any]]:
        """Delete rows (and what hangs on them: a key's per-model spend; a user's or team's keys and
        memberships).  Returns the deleted rows, including cascaded keys under ``"_keys"``."""
        model, pk_name = KINDS[kind]
        pk = getattr(model, pk_name)
        deleted: builtins.list[dict[str, Any]] = []
        async with self.sessions.begin() as s:
            for row in await s.scalars(select(model).where(pk.in_(idents))):
                before = row_dict(row)
                ident = getattr(row, pk_name)
                cascaded: builtins.list[dict[str, Any]] = []
                if kind in ("user", "team"):
                    owner = Key.user_id if kind == "user" else Key.team_id
                    for key in await s.scalars(select(Key).where(owner == ident)):
                        cascaded.append(row_dict(key))
                        await self._audit(s, audit, "deleted", "keys", key.token_hash, row_dict(key), None)
                        await s.delete(key)
                    member_col = TeamMember.user_id if kind == "user" else TeamMember.team_id
                    await s.execute(delete(TeamMember).where(member_col == ident))
                if kind == "key":
                    await s.execute(delete(KeyModelSpend).where(KeyModelSpend.token_hash == ident))
                await s.delete(row)
                await self._audit(s, audit, "deleted", model.__tablename__, ident, before, None)
                deleted.append({**before, "_keys": cascaded})
        return deleted

    async def replace_key_hash(self, old_hash: str, new_hash: str, key_name: str, values: dict[str, Any],
                               audit: Audit | None = None) -> dict[str, Any] | None:
        """``/key/regenerate``: the row keeps its settings and spend under a new token hash."""
        now = durations.utcnow()
        async with self.sessions.begin() as s:
            row = await s.get(Key, old_hash, with_for_update=self.dialect == "postgresql")
            if row is None:
                return None
            before = row_dict(row)
            await s.execute(update(Key).where(Key.token_hash == old_hash)
                            .values(token_hash=new_hash, key_name=key_name, updated_at=now,
                                    **self._prepare(Key, values, now)))
            await s.execute(update(KeyModelSpend).where(KeyModelSpend.token_hash == old_hash)
                            .values(token_hash=new_hash))
            s.expunge_all()
            after = row_dict(await s.get(Key, new_hash))
            await self._audit(s, audit, "regenerated", "keys", old_hash, before,
                              {"token_hash": new_hash, "key_name": key_name, **values})
            return after

    # team membership

    async def members(self, team_id: str) -> builtins.list[dict[str, Any]]:
        async with self.sessions() as s:
            rows = await s.scalars(select(TeamMember).where(TeamMember.team_id == team_id)
                                   .order_by(TeamMember.created_at, TeamMember.user_id))
            return [{"user_id": r.user_id, "role": r.role} for r in rows]

    async def memberships(self, user_id: str) -> dict[str, str]:
        """team_id -> role for one user."""
        async with self.sessions() as s:
            rows = await s.execute(select(TeamMember.team_id, TeamMember.role).where(TeamMember.user_id == user_id))
            return dict(rows.all())

    async def set_members(self, team_id: str, add: builtins.list[dict[str, str]], remove: builtins.list[str],
                          audit: Audit | None = None) -> builtins.list[dict[str, Any]]:
        async with self.sessions.begin() as s:
            before = [{"user_id": r.user_id, "role": r.role}
                      for r in await s.scalars(select(TeamMember).where(TeamMember.team_id == team_id))]
            if remove:
                await s.execute(delete(TeamMember).where(TeamMember.team_id == team_id,
                                                         TeamMember.user_id.in_(remove)))
            for member in add:
                existing = await s.get(TeamMember, (team_id, member["user_id"]))
                if existing is not None:
                    existing.role = member["role"]
                else:
                    s.add(TeamMember(team_id=team_id, user_id=member["user_id"], role=member["role"],
                                     created_at=durations.utcnow()))
            await s.flush()
            after = [{"user_id": r.user_id, "role": r.role}
                     for r in await s.scalars(select(TeamMember).where(TeamMember.team_id == team_id)
                                              .order_by(TeamMember.created_at, TeamMember.user_id))]
            action = "member_added" if add else "member_deleted"
            await self._audit(s, audit, action, "team_members", team_id, {"members": before}, {"members": after})
            return after

    async def key_model_spend(self, token_hash: str) -> dict[str, float]:
        async with self.sessions() as s:
            rows = await s.execute(select(KeyModelSpend.model, KeyModelSpend.spend)
                                   .where(KeyModelSpend.token_hash == token_hash))
            return {m: v for m, v in rows.all()}

    # spend and audit reads

    async def spend_logs(self, filters: dict[str, Any], start: datetime | None, end: datetime | None,
                         page: int = 1, page_size: int = 50) -> tuple[builtins.list[dict[str, Any]], int]:
        conditions = [getattr(SpendLog, n) == v for n, v in filters.items() if v is not None]
        if start is not None:
            conditions.append(SpendLog.start_time >= start)
        if end is not None:
            conditions.append(SpendLog.start_time < end)
        async with self.sessions() as s:
            total = await s.scalar(select(func.count()).select_from(SpendLog).where(*conditions))
            rows = await s.scalars(select(SpendLog).where(*conditions)
                                   .order_by(SpendLog.start_time.desc(), SpendLog.request_id)
                                   .offset((page - 1) * page_size).limit(page_size))
            return [row_dict(r) for r in rows], int(total or 0)

    async def spend_report(self, group_by: str, start: datetime | None, end: datetime | None
                           ) -> builtins.list[dict[str, Any]]:
        """Spend grouped by day and, unless ``group_by`` is ``day``, by team, key, user or model."""
        day = func.date(SpendLog.start_time).label("day")
        dimension = {"team": SpendLog.team_id, "key": SpendLog.api_key, "user": SpendLog.user_id,
                     "model": SpendLog.model_group, "day": None}[group_by]
        columns = [day] + ([dimension.label("group")] if dimension is not None else [])
        stmt = select(*columns, func.sum(SpendLog.spend), func.count(),
                      func.sum(SpendLog.prompt_tokens), func.sum(SpendLog.completion_tokens))
        if start is not None:
            stmt = stmt.where(SpendLog.start_time >= start)
        if end is not None:
            stmt = stmt.where(SpendLog.start_time < end)
        group_cols = [day] + ([dimension] if dimension is not None else [])
        stmt = stmt.group_by(*group_cols).order_by(*group_cols)
        out = []
        async with self.sessions() as s:
            for row in (await s.execute(stmt)).all():
                item: dict[str, Any] = {"day": str(row[0])}
                rest = row[1:]
                if dimension is not None:
                    item[group_by], rest = rest[0], rest[1:]
                item.update(spend=float(rest[0] or 0), requests=int(rest[1]), prompt_tokens=int(rest[2] or 0),
                            completion_tokens=int(rest[3] or 0))
                out.append(item)
        return out

    async def audit_logs(self, filters: dict[str, Any], start: datetime | None, end: datetime | None,
                         page: int = 1, page_size: int = 50) -> tuple[builtins.list[dict[str, Any]], int]:
        conditions = [getattr(AuditLog, n) == v for n, v in filters.items() if v is not None]
        if start is not None:
            conditions.append(AuditLog.created_at >= start)
        if end is not None:
            conditions.append(AuditLog.created_at < end)
        async with self.sessions() as s:
            total = await s.scalar(select(func.count()).select_from(AuditLog).where(*conditions))
            rows = await s.scalars(select(AuditLog).where(*conditions)
                                   .order_by(AuditLog.created_at.desc(), AuditLog.id)
                                   .offset((page - 1) * page_size).limit(page_size))
            return [row_dict(r) for r in rows], int(total or 0)


def _kind_of(model: type[Base]) -> str:
    for kind, (m, _) in KINDS.items():
        if m is model:
            return kind
    raise KeyError(model)
