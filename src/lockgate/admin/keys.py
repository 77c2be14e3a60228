"""``/key/*``: virtual keys.  Raw keys are ``sk-`` + 43 url-safe characters from ``secrets``; only
their sha256 is stored and the raw key is returned once, by /key/generate and /key/regenerate."""

from __future__ import annotations

import secrets
from datetime import UTC
from typing import Any

from ..errors import BadRequest, NotFound
from ..state import durations
from .auth import INTERNAL_USER, Caller, hash_key, token_hash_of
from .call import Call, Route
from .common import audit_of, notify, paging, public, reset_spend
from .schemas import (
    METADATA_FIELDS,
    KeyDelete,
    KeyFields,
    KeyGenerate,
    KeyInfoQuery,
    KeyListQuery,
    KeyRef,
    KeyRegenerate,
    KeyUpdate,
    fold_into_metadata,
)


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


async def _load(call: Call, value: str) -> dict[str, Any]:
    row = await call.store.get("key", token_hash_of(value))
    if row is None:
        raise NotFound("key not found", code="key_not_found")
    return row


async def _check_links(call: Call, caller: Caller, fields: dict[str, Any]) -> None:
    """Referenced user, team and organization exist, and a non-admin only links keys to themselves and
    to teams they belong to."""
    store = call.store
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


async def _alias_free(call: Call, alias: str | None, own_hash: str | None = None) -> None:
    if alias is None:
        return
    for row in await call.store.find("key", key_alias=alias):
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


async def generate(call: Call, caller: Caller, body: KeyGenerate) -> dict[str, Any]:
    fields = fold_into_metadata(body.given(), None)
    if not caller.is_admin:
        caller.require(caller.role == INTERNAL_USER or caller.team_admin_of(fields.get("team_id")),
                       "generate keys")
        fields.setdefault("user_id", caller.user_id)
        caller.require("permissions" not in (fields.get("metadata") or {}), "give a key permissions")
    await _check_links(call, caller, fields)
    await _alias_free(call, fields.get("key_alias"))
    raw = new_raw_key()
    token_hash = hash_key(raw)
    values = {**KeyFields().dump("duration", "expires", *METADATA_FIELDS), **_columns(fields)}
    values = _columns(values)
    values.update(token_hash=token_hash, key_name=masked(raw))
    store = call.store
    row = await store.create("key", values, audit_of(call, caller))
    await notify(call, "key", token_hash)
    return {**key_view(row), "key": raw, "token_id": token_hash}


async def update_key(call: Call, caller: Caller, body: KeyUpdate) -> dict[str, Any]:
    row = await _load(call, body.key)
    caller.require(caller.can_manage_key(row), "update this key")
    fields = fold_into_metadata(body.given("key"), row.get("metadata"))
    caller.require(caller.is_admin or "permissions" not in (fields.get("metadata") or {})
                   or (fields["metadata"]["permissions"] == (row.get("metadata") or {}).get("permissions")),
                   "change a key's permissions")
    await _check_links(call, caller, fields)
    await _alias_free(call, fields.get("key_alias"), row["token_hash"])
    store = call.store
    result = await store.update("key", row["token_hash"], _columns(fields), audit_of(call, caller))
    if result is None:
        raise NotFound("key not found", code="key_not_found")
    if "spend" in fields:
        await reset_spend(call, "key", row["token_hash"], result[1])
    await notify(call, "key", row["token_hash"])
    return key_view(result[1])


async def delete_keys(call: Call, caller: Caller, body: KeyDelete) -> dict[str, Any]:
    store = call.store
    if not body.keys and not body.key_aliases:
        raise BadRequest("send 'keys' (keys or token hashes) or 'key_aliases'", param="keys")
    rows: dict[str, dict[str, Any]] = {}
    for value in body.keys or []:
        row = await _load(call, value)
        rows[row["token_hash"]] = row
    for alias in body.key_aliases or []:
        found = await store.find("key", key_alias=alias)
        if not found:
            raise NotFound(f"no key with alias {alias!r}", code="key_not_found")
        rows.update({r["token_hash"]: r for r in found})
    for row in rows.values():
        caller.require(caller.can_manage_key(row), "delete this key")
    deleted = await store.delete("key", list(rows), audit_of(call, caller))
    for row in deleted:
        await notify(call, "key", row["token_hash"])
    return {"deleted_keys": [r["token_hash"] for r in deleted]}


async def key_info(call: Call, caller: Caller, query: KeyInfoQuery) -> dict[str, Any]:
    """A key's settings and spend (default: the calling key's own)."""
    key = query.key
    if key is None:
        if caller.token_hash is None:
            raise BadRequest("missing query parameter 'key'", param="key")
        key = caller.token_hash
    row = await _load(call, key)
    caller.require(caller.can_read_key(row), "read this key")
    model_spend = await call.store.key_model_spend(row["token_hash"])
    return {"key": row["token_hash"], "info": key_view(row, model_spend)}


def list_scope(caller: Caller) -> dict[str, list[str]] | None:
    """The keys a caller may list (None: every key): their own, and their teams' as a team admin.
    The admin UI's key list uses it too."""
    if caller.reads_all:
        return None
    caller.require(caller.user_id is not None, "list keys")
    return {"user_id": [caller.user_id or ""], "team_id": caller.admin_teams}


async def key_list(call: Call, caller: Caller, query: KeyListQuery) -> dict[str, Any]:
    """Token hashes of the keys the caller may see (``return_full_object=true``: the keys themselves)."""
    page, per_page = query.page, query.size or query.page_size
    filters = {"user_id": query.user_id, "team_id": query.team_id, "organization_id": query.organization_id,
               "key_alias": query.key_alias}
    scope = list_scope(caller)
    rows, total = await call.store.list("key", filters, page, per_page, any_of=scope)
    keys = [key_view(r) for r in rows] if query.return_full_object else [r["token_hash"] for r in rows]
    return {"keys": keys, **paging(page, per_page, total)}


async def regenerate(call: Call, caller: Caller, body: KeyRegenerate) -> dict[str, Any]:
    row = await _load(call, body.key)
    caller.require(caller.can_manage_key(row), "regenerate this key")
    raw = new_raw_key()
    token_hash = hash_key(raw)
    store = call.store
    after = await store.replace_key_hash(row["token_hash"], token_hash, masked(raw), {}, audit_of(call, caller))
    if after is None:
        raise NotFound("key not found", code="key_not_found")
    await notify(call, "key", row["token_hash"])
    await notify(call, "key", token_hash)
    return {**key_view(after), "key": raw, "token_id": token_hash}


async def _set_blocked(body: KeyRef, call: Call, caller: Caller, blocked: bool) -> dict[str, Any]:
    row = await _load(call, body.key)
    caller.require(caller.is_admin or caller.team_admin_of(row["team_id"]),
                   ("block" if blocked else "unblock") + " this key")
    store = call.store
    result = await store.update("key", row["token_hash"], {"blocked": blocked}, audit_of(call, caller),
                                action="blocked" if blocked else "unblocked")
    if result is None:
        raise NotFound("key not found", code="key_not_found")
    await notify(call, "key", row["token_hash"])
    return key_view(result[1])


async def block(call: Call, caller: Caller, body: KeyRef) -> dict[str, Any]:
    return await _set_blocked(body, call, caller, True)


async def unblock(call: Call, caller: Caller, body: KeyRef) -> dict[str, Any]:
    return await _set_blocked(body, call, caller, False)


ROUTES = (
    Route("POST", "/key/generate", generate, "keys", body=KeyGenerate),
    Route("POST", "/key/update", update_key, "keys", body=KeyUpdate),
    Route("POST", "/key/delete", delete_keys, "keys", body=KeyDelete),
    Route("GET", "/key/info", key_info, "keys", query=KeyInfoQuery),
    Route("GET", "/key/list", key_list, "keys", query=KeyListQuery),
    Route("POST", "/key/regenerate", regenerate, "keys", body=KeyRegenerate),
    Route("POST", "/key/block", block, "keys", body=KeyRef),
    Route("POST", "/key/unblock", unblock, "keys", body=KeyRef),
)
