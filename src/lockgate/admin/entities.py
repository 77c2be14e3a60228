"""``/team/*``, ``/user/*``, ``/organization/*`` and ``/customer/*``: the levels above keys, each with the
same budget and limit fields."""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import BadRequest, NotFound
from .auth import INTERNAL_USER, Caller
from .call import Call, Route
from .common import audit_of, notify, paging, public, reset_spend
from .schemas import (
    METADATA_FIELDS,
    CustomerIds,
    CustomerInfoQuery,
    CustomerNew,
    CustomerUpdate,
    MemberAdd,
    MemberDelete,
    OrgDelete,
    OrgInfoQuery,
    OrgNew,
    OrgUpdate,
    Paged,
    TeamDelete,
    TeamInfoQuery,
    TeamListQuery,
    TeamNew,
    TeamUpdate,
    UserDelete,
    UserInfoQuery,
    UserListQuery,
    UserNew,
    UserUpdate,
    fold_into_metadata,
)

LIST_DEFAULTS = {"models": [], "metadata": {}, "blocked": False, "spend": 0.0}


def _store(call: Call) -> Any:
    return call.store


def _columns(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (LIST_DEFAULTS[k] if v is None and k in LIST_DEFAULTS else v) for k, v in fields.items()}


async def _must_exist(call: Call, kind: str, ident: str | None, field: str) -> None:
    if ident is not None and await _store(call).get(kind, ident) is None:
        raise BadRequest(f"field '{field}': {kind} {ident!r} does not exist", param=field)


async def _get(call: Call, kind: str, ident: str) -> dict[str, Any]:
    row = await _store(call).get(kind, ident)
    if row is None:
        raise NotFound(f"{kind} {ident!r} not found", code=f"{kind}_not_found")
    return row


async def _create(call: Call, caller: Caller, kind: str, values: dict[str, Any]) -> dict[str, Any]:
    from ..state.store import KINDS

    pk = KINDS[kind][1]
    if await _store(call).get(kind, values[pk]) is not None:
        raise BadRequest(f"field '{pk}': {kind} {values[pk]!r} already exists", param=pk)
    row = await _store(call).create(kind, _columns({**LIST_DEFAULTS, **values}), audit_of(call, caller))
    await notify(call, kind, values[pk])
    return row


async def _update(call: Call, caller: Caller, kind: str, ident: str, fields: dict[str, Any],
                  action: str = "updated") -> dict[str, Any]:
    result = await _store(call).update(kind, ident, _columns(fields), audit_of(call, caller), action)
    if result is None:
        raise NotFound(f"{kind} {ident!r} not found", code=f"{kind}_not_found")
    if "spend" in fields:
        await reset_spend(call, kind, ident, result[1])
    await notify(call, kind, ident)
    return result[1]


async def _delete(call: Call, caller: Caller, kind: str, idents: list[str]) -> list[str]:
    rows = await _store(call).get_many(kind, idents)
    missing = sorted(set(idents) - {r[_pk(kind)] for r in rows})
    if missing:
        raise NotFound(f"{kind} {missing[0]!r} not found", code=f"{kind}_not_found")
    deleted = await _store(call).delete(kind, idents, audit_of(call, caller))
    for row in deleted:
        await notify(call, kind, row[_pk(kind)])
        for key in row.get("_keys", []):
            await notify(call, "key", key["token_hash"])
    return [row[_pk(kind)] for row in deleted]


def _pk(kind: str) -> str:
    from ..state.store import KINDS

    return KINDS[kind][1]


# ------------------------------------------------------------------ teams

async def team_new(call: Call, caller: Caller, body: TeamNew) -> dict[str, Any]:
    caller.require_admin("create teams")
    fields = fold_into_metadata(body.given("members_with_roles"), None)
    fields["team_id"] = fields.get("team_id") or str(uuid.uuid4())
    await _must_exist(call, "organization", fields.get("organization_id"), "organization_id")
    for i, member in enumerate(body.members_with_roles or []):
        await _must_exist(call, "user", member.user_id, f"members_with_roles[{i}].user_id")
    row = await _create(call, caller, "team", fields)
    members = []
    if body.members_with_roles:
        members = await _store(call).set_members(row["team_id"], [m.dump() for m in body.members_with_roles],
                                                    [], audit_of(call, caller))
    return {**public(row), "members_with_roles": members}


async def team_update(call: Call, caller: Caller, body: TeamUpdate) -> dict[str, Any]:
    caller.require_admin("update teams")
    fields = body.given("team_id")
    if any(name in fields for name in METADATA_FIELDS):
        fields = fold_into_metadata(fields, (await _get(call, "team", body.team_id)).get("metadata"))
    await _must_exist(call, "organization", fields.get("organization_id"), "organization_id")
    row = await _update(call, caller, "team", body.team_id, fields)
    return {**public(row), "members_with_roles": await _store(call).members(body.team_id)}


async def team_delete(call: Call, caller: Caller, body: TeamDelete) -> dict[str, Any]:
    caller.require_admin("delete teams")
    return {"deleted_teams": await _delete(call, caller, "team", body.team_ids)}


async def team_info(call: Call, caller: Caller, query: TeamInfoQuery) -> dict[str, Any]:
    team_id = query.team_id
    caller.require(caller.reads_all or team_id in caller.team_roles, "read this team")
    row = await _get(call, "team", team_id)
    keys, _ = await _store(call).list("key", {"team_id": team_id}, 1, 1000)
    return {"team_id": team_id, "team_info": {**public(row), "members_with_roles": await _store(call).members(team_id)},
            "keys": [k["token_hash"] for k in keys]}


async def team_list(call: Call, caller: Caller, query: TeamListQuery) -> dict[str, Any]:
    organization_id, page, page_size = query.organization_id, query.page, query.page_size
    caller.require(caller.reads_all or caller.user_id is not None, "list teams")
    scope = None if caller.reads_all else {"team_id": list(caller.team_roles)}
    rows, total = await _store(call).list("team", {"organization_id": organization_id}, page, page_size, scope)
    return {"teams": [public(r) for r in rows], **paging(page, page_size, total)}


async def member_add(call: Call, caller: Caller, body: MemberAdd) -> dict[str, Any]:
    caller.require(caller.is_admin or caller.team_admin_of(body.team_id), "add members to this team")
    await _get(call, "team", body.team_id)
    members = body.member if isinstance(body.member, list) else [body.member]
    for member in members:
        await _must_exist(call, "user", member.user_id, "member.user_id")
    after = await _store(call).set_members(body.team_id, [m.dump() for m in members], [],
                                              audit_of(call, caller))
    await notify(call, "team", body.team_id)
    for member in members:
        await notify(call, "user", member.user_id)
    return {"team_id": body.team_id, "members_with_roles": after}


async def member_delete(call: Call, caller: Caller, body: MemberDelete) -> dict[str, Any]:
    caller.require(caller.is_admin or caller.team_admin_of(body.team_id), "remove members from this team")
    await _get(call, "team", body.team_id)
    if body.user_id not in {m["user_id"] for m in await _store(call).members(body.team_id)}:
        raise NotFound(f"user {body.user_id!r} is not a member of team {body.team_id!r}", code="member_not_found")
    after = await _store(call).set_members(body.team_id, [], [body.user_id], audit_of(call, caller))
    await notify(call, "team", body.team_id)
    await notify(call, "user", body.user_id)
    return {"team_id": body.team_id, "members_with_roles": after}


# ------------------------------------------------------------------ users

async def user_new(call: Call, caller: Caller, body: UserNew) -> dict[str, Any]:
    caller.require_admin("create users")
    fields = body.given("teams", "password")
    fields["user_id"] = fields.get("user_id") or str(uuid.uuid4())
    fields["user_role"] = fields.get("user_role") or INTERNAL_USER
    await _must_exist(call, "organization", fields.get("organization_id"), "organization_id")
    for i, team_id in enumerate(body.teams or []):
        await _must_exist(call, "team", team_id, f"teams[{i}]")
    row = await _create(call, caller, "user", fields)
    for team_id in body.teams or []:
        await _store(call).set_members(team_id, [{"user_id": row["user_id"], "role": "member"}], [],
                                          audit_of(call, caller))
    if body.password:
        await _set_password(call, caller, row["user_id"], body.password)
    return {**public(row), "teams": list(body.teams or [])}


async def _set_password(call: Call, caller: Caller, user_id: str, password: str) -> None:
    """The user's admin-UI password (argon2id, ``ui/credentials.py``, audited); their UI sessions end."""
    from ..ui import credentials, sessions

    gateway = call.gateway
    await credentials.set_password(gateway, user_id, password, audit_of(call, caller))
    await sessions.revoke_user(gateway, user_id)


async def user_update(call: Call, caller: Caller, body: UserUpdate) -> dict[str, Any]:
    caller.require_admin("update users")
    fields = body.given("user_id", "password")
    if "user_role" in fields and fields["user_role"] is None:
        raise BadRequest("field 'user_role' must not be null", param="user_role")
    await _must_exist(call, "organization", fields.get("organization_id"), "organization_id")
    row = await _update(call, caller, "user", body.user_id, fields) if fields else \
        await _get(call, "user", body.user_id)
    if body.password:
        await _set_password(call, caller, body.user_id, body.password)
    return public(row)


async def user_delete(call: Call, caller: Caller, body: UserDelete) -> dict[str, Any]:
    caller.require_admin("delete users")
    return {"deleted_users": await _delete(call, caller, "user", body.user_ids)}


async def user_info(call: Call, caller: Caller, query: UserInfoQuery) -> dict[str, Any]:
    user_id = query.user_id or caller.user_id
    if user_id is None:
        raise BadRequest("missing query parameter 'user_id'", param="user_id")
    caller.require(caller.reads_all or user_id == caller.user_id, "read this user")
    row = await _get(call, "user", user_id)
    keys, _ = await _store(call).list("key", {"user_id": user_id}, 1, 1000)
    teams = await _store(call).memberships(user_id)
    return {"user_id": user_id, "user_info": public(row), "keys": [k["token_hash"] for k in keys],
            "teams": [{"team_id": t, "role": r} for t, r in sorted(teams.items())]}


async def user_list(call: Call, caller: Caller, query: UserListQuery) -> dict[str, Any]:
    role, organization_id, page, page_size = query.role, query.organization_id, query.page, query.page_size
    caller.require_reader("list users")
    rows, total = await _store(call).list("user", {"user_role": role, "organization_id": organization_id},
                                             page, page_size)
    return {"users": [public(r) for r in rows], **paging(page, page_size, total)}


# ------------------------------------------------------------------ organizations

async def org_new(call: Call, caller: Caller, body: OrgNew) -> dict[str, Any]:
    caller.require_admin("create organizations")
    fields = body.given()
    fields["organization_id"] = fields.get("organization_id") or str(uuid.uuid4())
    return public(await _create(call, caller, "organization", fields))


async def org_update(call: Call, caller: Caller, body: OrgUpdate) -> dict[str, Any]:
    caller.require_admin("update organizations")
    return public(await _update(call, caller, "organization", body.organization_id,
                                body.given("organization_id")))


async def org_delete(call: Call, caller: Caller, body: OrgDelete) -> dict[str, Any]:
    caller.require_admin("delete organizations")
    for org_id in body.organization_ids:
        for kind in ("team", "user", "key"):
            if await _store(call).find(kind, organization_id=org_id):
                raise BadRequest(f"organization {org_id!r} still has {kind}s: delete or move them first",
                                 param="organization_ids")
    return {"deleted_organizations": await _delete(call, caller, "organization", body.organization_ids)}


async def org_info(call: Call, caller: Caller, query: OrgInfoQuery) -> dict[str, Any]:
    organization_id = query.organization_id
    caller.require_reader("read organizations")
    row = await _get(call, "organization", organization_id)
    teams = await _store(call).find("team", organization_id=organization_id)
    return {**public(row), "teams": [t["team_id"] for t in teams]}


async def org_list(call: Call, caller: Caller, query: Paged) -> dict[str, Any]:
    page, page_size = query.page, query.page_size
    caller.require_reader("list organizations")
    rows, total = await _store(call).list("organization", {}, page, page_size)
    return {"organizations": [public(r) for r in rows], **paging(page, page_size, total)}


# ------------------------------------------------------------------ customers (end users)

async def customer_new(call: Call, caller: Caller, body: CustomerNew) -> dict[str, Any]:
    caller.require_admin("create customers")
    return public(await _create(call, caller, "customer", body.given()))


async def customer_update(call: Call, caller: Caller, body: CustomerUpdate) -> dict[str, Any]:
    caller.require_admin("update customers")
    return public(await _update(call, caller, "customer", body.user_id, body.given("user_id")))


async def customer_delete(call: Call, caller: Caller, body: CustomerIds) -> dict[str, Any]:
    caller.require_admin("delete customers")
    return {"deleted_customers": await _delete(call, caller, "customer", body.user_ids)}


async def _customers_blocked(body: CustomerIds, call: Call, caller: Caller, blocked: bool) -> dict[str, Any]:
    caller.require_admin(("block" if blocked else "unblock") + " customers")
    for user_id in body.user_ids:
        await _get(call, "customer", user_id)
    for user_id in body.user_ids:
        await _update(call, caller, "customer", user_id, {"blocked": blocked},
                      "blocked" if blocked else "unblocked")
    return {"blocked" if blocked else "unblocked": body.user_ids}


async def customer_block(call: Call, caller: Caller, body: CustomerIds) -> dict[str, Any]:
    return await _customers_blocked(body, call, caller, True)


async def customer_unblock(call: Call, caller: Caller, body: CustomerIds) -> dict[str, Any]:
    return await _customers_blocked(body, call, caller, False)


async def customer_info(call: Call, caller: Caller, query: CustomerInfoQuery) -> dict[str, Any]:
    caller.require_reader("read customers")
    return public(await _get(call, "customer", query.end_user_id))


async def customer_list(call: Call, caller: Caller, query: Paged) -> dict[str, Any]:
    page, page_size = query.page, query.page_size
    caller.require_reader("list customers")
    rows, total = await _store(call).list("customer", {}, page, page_size)
    return {"customers": [public(r) for r in rows], **paging(page, page_size, total)}


ROUTES = (
    Route("POST", "/team/new", team_new, "teams", body=TeamNew),
    Route("POST", "/team/update", team_update, "teams", body=TeamUpdate),
    Route("POST", "/team/delete", team_delete, "teams", body=TeamDelete),
    Route("GET", "/team/info", team_info, "teams", query=TeamInfoQuery),
    Route("GET", "/team/list", team_list, "teams", query=TeamListQuery),
    Route("POST", "/team/member_add", member_add, "teams", body=MemberAdd),
    Route("POST", "/team/member_delete", member_delete, "teams", body=MemberDelete),
    Route("POST", "/user/new", user_new, "users", body=UserNew),
    Route("POST", "/user/update", user_update, "users", body=UserUpdate),
    Route("POST", "/user/delete", user_delete, "users", body=UserDelete),
    Route("GET", "/user/info", user_info, "users", query=UserInfoQuery),
    Route("GET", "/user/list", user_list, "users", query=UserListQuery),
    Route("POST", "/organization/new", org_new, "organizations", body=OrgNew),
    Route("POST", "/organization/update", org_update, "organizations", body=OrgUpdate),
    Route("POST", "/organization/delete", org_delete, "organizations", body=OrgDelete),
    Route("GET", "/organization/info", org_info, "organizations", query=OrgInfoQuery),
    Route("GET", "/organization/list", org_list, "organizations", query=Paged),
    Route("POST", "/customer/new", customer_new, "customers", body=CustomerNew),
    Route("POST", "/customer/update", customer_update, "customers", body=CustomerUpdate),
    Route("POST", "/customer/delete", customer_delete, "customers", body=CustomerIds),
    Route("POST", "/customer/block", customer_block, "customers", body=CustomerIds),
    Route("POST", "/customer/unblock", customer_unblock, "customers", body=CustomerIds),
    Route("GET", "/customer/info", customer_info, "customers", query=CustomerInfoQuery),
    Route("GET", "/customer/list", customer_list, "customers", query=Paged),
)
