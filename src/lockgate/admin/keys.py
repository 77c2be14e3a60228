"""``/key/*``: virtual keys.  Raw keys are ``sk-`` + 43 url-safe characters from ``secrets``; only
their sha256 is stored and the raw key is returned once, by /key/generate and /key/regenerate."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from ..errors import BadRequest, NotFound
from ..state import durations
from .auth import INTERNAL_USER, Caller, authenticate, hash_key, token_hash_of
from .common import audit_of, notify, paging, public, reset_spend
from .schemas import (
    METADATA_FIELDS,
    KeyDelete,
    KeyFields,
    KeyGenerate,
    KeyRef,
    KeyRegenerate,
    KeyUpdate,
    fold_into_metadata,
)

router = APIRouter(tags=["keys"])


def new_raw_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


def masked(raw: str) -> str:
    return f"sk-...{raw[-4:]}"


def key_view(row: dict[str, Any], model_spend: dict[str, float] | None = None) -> dict[str, Any]:
    out = public(row)
    out["token"] = row["token_hash"]
    if model_spend is not None:
        out["model_spend"] = model_spend
    return out


async def _load(request: Request, value: str) -> dict[str, Any]:
    row = await request.app.state.gateway.store.get("key", token_hash_of(value))
    if row is None:
        raise NotFound("key not found", code="key_not_found")
    return row


async def _check_links(request: Request, caller: Caller, fields: dict[str, Any]) -> None:
    """Referenced user, team and organization exist, and a non-admin only links keys to themselves and
    to teams they belong to."""
    store = request.app.state.gateway.store
    for field, kind in (("user_id", "user"), ("team_id", "team"), ("organization_id", "organization")):
        if fields.get(field) is not None and await store.get(kind, fields[field]) is None:
            raise BadRequest(f"field '{field}': {kind} {fields[field]!r} does not exist", param=field)
    if caller.is_admin:
        return
    team_id = fields.get("team_id")
    if "user_id" in fields and fields["user_id"] != caller.user_id:
        caller.require(caller.team_admin_of(team_id), "create or move keys for another user")
    if team_id is not None:
        caller.require(team_id in caller.team_roles, f"use team {team_id!r}")
    caller.require("organization_id" not in fields or fields["organization_id"] is None,
                   "set organization_id")
    caller.require("spend" not in fields, "set spend")


async def _alias_free(request: Request, alias: str | None, own_hash: str | None = None) -> None:
    if alias is None:
        return
    for row in await request.app.state.gateway.store.find("key", key_alias=alias):
        if row["token_hash"] != own_hash:
            raise BadRequest(f"field 'key_alias': {alias!r} is already used by another key", param="key_alias")


def _columns(fields: dict[str, Any]) -> dict[str, Any]:
    """API fields -> key columns (``duration`` becomes ``expires``)."""
    out = dict(fields)
    if "duration" in out:
        if "expires" in fields and fields["expires"] is not None and out["duration"] is not None:
            raise BadRequest("send either 'duration' or 'expires', not both", param="duration")
        duration = out.pop("duration")
        if duration is not None or "expires" not in out:
            out["expires"] = durations.add(durations.utcnow(), duration) if duration else None
    if out.get("expires") is not None and out["expires"].tzinfo is None:
        out["expires"] = out["expires"].replace(tzinfo=UTC)
    for name in ("models", "allowed_routes", "allowed_ips"):
        if name in out and out[name] is None:
            out[name] = []
    for name in ("metadata", "model_max_budget", "model_rpm_limit", "model_tpm_limit"):
        if name in out and out[name] is None:
            out[name] = {}
    if "blocked" in out and out["blocked"] is None:
        out["blocked"] = False
    if "spend" in out and out["spend"] is None:
        out["spend"] = 0.0
    return out


@router.post("/key/generate")
async def generate(body: KeyGenerate, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    fields = fold_into_metadata(body.given(), None)
    if not caller.is_admin:
        caller.require(caller.role == INTERNAL_USER or caller.team_admin_of(fields.get("team_id")),
                       "generate keys")
        fields.setdefault("user_id", caller.user_id)
        caller.require("permissions" not in (fields.get("metadata") or {}), "give a key permissions")
    await _check_links(request, caller, fields)
    await _alias_free(request, fields.get("key_alias"))
    raw = new_raw_key()
    token_hash = hash_key(raw)
    values = {**KeyFields().model_dump(exclude={"duration", "expires", *METADATA_FIELDS}), **_columns(fields)}
    values = _columns(values)
    values.update(token_hash=token_hash, key_name=masked(raw))
    store = request.app.state.gateway.store
    row = await store.create("key", values, audit_of(request, caller))
    await notify(request, "key", token_hash)
    return {**key_view(row), "key": raw, "token_id": token_hash}


@router.post("/key/update")
async def update_key(body: KeyUpdate, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    row = await _load(request, body.key)
    caller.require(caller.can_manage_key(row), "update this key")
    fields = fold_into_metadata(body.given("key"), row.get("metadata"))
    caller.require(caller.is_admin or "permissions" not in (fields.get("metadata") or {})
                   or (fields["metadata"]["permissions"] == (row.get("metadata") or {}).get("permissions")),
                   "change a key's permissions")
    await _check_links(request, caller, fields)
    await _alias_free(request, fields.get("key_alias"), row["token_hash"])
    store = request.app.state.gateway.store
    result = await store.update("key", row["token_hash"], _columns(fields), audit_of(request, caller))
    if result is None:
        raise NotFound("key not found", code="key_not_found")
    if "spend" in fields:
        await reset_spend(request, "key", row["token_hash"], result[1])
    await notify(request, "key", row["token_hash"])
    return key_view(result[1])


@router.post("/key/delete")
async def delete_keys(body: KeyDelete, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    store = request.app.state.gateway.store
    if not body.keys and not body.key_aliases:
        raise BadRequest("send 'keys' (keys or token hashes) or 'key_aliases'", param="keys")
    rows: dict[str, dict[str, Any]] = {}
    for value in body.keys or []:
        row = await _load(request, value)
        rows[row["token_hash"]] = row
    for alias in body.key_aliases or []:
        found = await store.find("key", key_alias=alias)
        if not found:
            raise NotFound(f"no key with alias {alias!r}", code="key_not_found")
        rows.update({r["token_hash"]: r for r in found})
    for row in rows.values():
        caller.require(caller.can_manage_key(row), "delete this key")
    deleted = await store.delete("key", list(rows), audit_of(request, caller))
    for row in deleted:
        await notify(request, "key", row["token_hash"])
    return {"deleted_keys": [r["token_hash"] for r in deleted]}


@router.get("/key/info")
async def key_info(request: Request, key: str | None = None, caller: Caller = Depends(authenticate)
                   ) -> dict[str, Any]:
    if key is None:
        if caller.token_hash is None:
            raise BadRequest("missing query parameter 'key'", param="key")
        key = caller.token_hash
    row = await _load(request, key)
    caller.require(caller.can_read_key(row), "read this key")
    model_spend = await request.app.state.gateway.store.key_model_spend(row["token_hash"])
    return {"key": row["token_hash"], "info": key_view(row, model_spend)}


def list_scope(caller: Caller) -> dict[str, list[str]] | None:
    """The keys a caller may list (None: every key): their own, and their teams' as a team admin.
    The admin UI's key list uses it too."""
    if caller.reads_all:
        return None
    caller.require(caller.user_id is not None, "list keys")
    return {"user_id": [caller.user_id or ""], "team_id": caller.admin_teams}


@router.get("/key/list")
async def key_list(
    request: Request,
    page: int = Query(1, ge=1),
    size: int | None = Query(None, ge=1, le=1000),
    page_size: int = Query(50, ge=1, le=1000),
    user_id: str | None = None,
    team_id: str | None = None,
    organization_id: str | None = None,
    key_alias: str | None = None,
    return_full_object: bool = False,
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    per_page = size or page_size
    filters = {"user_id": user_id, "team_id": team_id, "organization_id": organization_id, "key_alias": key_alias}
    scope = list_scope(caller)
    rows, total = await request.app.state.gateway.store.list("key", filters, page, per_page, any_of=scope)
    keys = [key_view(r) for r in rows] if return_full_object else [r["token_hash"] for r in rows]
    return {"keys": keys, **paging(page, per_page, total)}


@router.post("/key/regenerate")
async def regenerate(body: KeyRegenerate, request: Request, caller: Caller = Depends(authenticate)
                     ) -> dict[str, Any]:
    row = await _load(request, body.key)
    caller.require(caller.can_manage_key(row), "regenerate this key")
    raw = new_raw_key()
    token_hash = hash_key(raw)
    store = request.app.state.gateway.store
    after = await store.replace_key_hash(row["token_hash"], token_hash, masked(raw), {}, audit_of(request, caller))
    if after is None:
        raise NotFound("key not found", code="key_not_found")
    await notify(request, "key", row["token_hash"])
    await notify(request, "key", token_hash)
    return {**key_view(after), "key": raw, "token_id": token_hash}


async def _set_blocked(body: KeyRef, request: Request, caller: Caller, blocked: bool) -> dict[str, Any]:
    row = await _load(request, body.key)
    caller.require(caller.is_admin or caller.team_admin_of(row["team_id"]),
                   ("block" if blocked else "unblock") + " this key")
    store = request.app.state.gateway.store
    result = await store.update("key", row["token_hash"], {"blocked": blocked}, audit_of(request, caller),
                                action="blocked" if blocked else "unblocked")
    if result is None:
        raise NotFound("key not found", code="key_not_found")
    await notify(request, "key", row["token_hash"])
    return key_view(result[1])


@router.post("/key/block")
async def block(body: KeyRef, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    return await _set_blocked(body, request, caller, True)


@router.post("/key/unblock")
async def unblock(body: KeyRef, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    return await _set_blocked(body, request, caller, False)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
