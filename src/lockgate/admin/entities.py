"""``/team/*``, ``/user/*``, ``/organization/*`` and ``/customer/*``: the levels above keys, each with the
same budget and limit fields."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from ..errors import BadRequest, NotFound
from .auth import INTERNAL_USER, Caller, authenticate
from .common import audit_of, notify, paging, public, reset_spend
from .schemas import (
    METADATA_FIELDS,
    CustomerIds,
    CustomerNew,
    CustomerUpdate,
    MemberAdd,
    MemberDelete,
    OrgDelete,
    OrgNew,
    OrgUpdate,
    TeamDelete,
    TeamNew,
    TeamUpdate,
    UserDelete,
    UserNew,
    UserUpdate,
    fold_into_metadata,
)

router = APIRouter()

LIST_DEFAULTS = {"models": [], "metadata": {}, "blocked": False, "spend": 0.0}


def _store(request: Request) -> Any:
    return request.app.state.gateway.store


def _columns(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (LIST_DEFAULTS[k] if v is None and k in LIST_DEFAULTS else v) for k, v in fields.items()}


async def _must_exist(request: Request, kind: str, ident: str | None, field: str) -> None:
    if ident is not None and await _store(request).get(kind, ident) is None:
        raise BadRequest(f"field '{field}': {kind} {ident!r} does not exist", param=field)


async def _get(request: Request, kind: str, ident: str) -> dict[str, Any]:
    row = await _store(request).get(kind, ident)
    if row is None:
        raise NotFound(f"{kind} {ident!r} not found", code=f"{kind}_not_found")
    return row


async def _create(request: Request, caller: Caller, kind: str, values: dict[str, Any]) -> dict[str, Any]:
    from ..state.store import KINDS

    pk = KINDS[kind][1]
    if await _store(request).get(kind, values[pk]) is not None:
        raise BadRequest(f"field '{pk}': {kind} {values[pk]!r} already exists", param=pk)
    row = await _store(request).create(kind, _columns({**LIST_DEFAULTS, **values}), audit_of(request, caller))
    await notify(request, kind, values[pk])
    return row


async def _update(request: Request, caller: Caller, kind: str, ident: str, fields: dict[str, Any],
                  action: str = "updated") -> dict[str, Any]:
    result = await _store(request).update(kind, ident, _columns(fields), audit_of(request, caller), action)
    if result is None:
        raise NotFound(f"{kind} {ident!r} not found", code=f"{kind}_not_found")
    if "spend" in fields:
        await reset_spend(request, kind, ident, result[1])
    await notify(request, kind, ident)
    return result[1]


async def _delete(request: Request, caller: Caller, kind: str, idents: list[str]) -> list[str]:
    rows = await _store(request).get_many(kind, idents)
    missing = sorted(set(idents) - {r[_pk(kind)] for r in rows})
    if missing:
        raise NotFound(f"{kind} {missing[0]!r} not found", code=f"{kind}_not_found")
    deleted = await _store(request).delete(kind, idents, audit_of(request, caller))
    for row in deleted:
        await notify(request, kind, row[_pk(kind)])
        for key in row.get("_keys", []):
            await notify(request, "key", key["token_hash"])
    return [row[_pk(kind)] for row in deleted]


def _pk(kind: str) -> str:
    from ..state.store import KINDS

    return KINDS[kind][1]


Page = Query(1, ge=1)
PageSize = Query(50, ge=1, le=1000)


# ------------------------------------------------------------------ teams

@router.post("/team/new", tags=["teams"])
async def team_new(body: TeamNew, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("create teams")
    fields = fold_into_metadata(body.given("members_with_roles"), None)
    fields["team_id"] = fields.get("team_id") or str(uuid.uuid4())
    await _must_exist(request, "organization", fields.get("organization_id"), "organization_id")
    for i, member in enumerate(body.members_with_roles or []):
        await _must_exist(request, "user", member.user_id, f"members_with_roles[{i}].user_id")
    row = await _create(request, caller, "team", fields)
    members = []
    if body.members_with_roles:
        members = await _store(request).set_members(row["team_id"], [m.model_dump() for m in body.members_with_roles],
                                                    [], audit_of(request, caller))
    return {**public(row), "members_with_roles": members}


@router.post("/team/update", tags=["teams"])
async def team_update(body: TeamUpdate, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("update teams")
    fields = body.given("team_id")
    if any(name in fields for name in METADATA_FIELDS):
        fields = fold_into_metadata(fields, (await _get(request, "team", body.team_id)).get("metadata"))
    await _must_exist(request, "organization", fields.get("organization_id"), "organization_id")
    row = await _update(request, caller, "team", body.team_id, fields)
    return {**public(row), "members_with_roles": await _store(request).members(body.team_id)}


@router.post("/team/delete", tags=["teams"])
async def team_delete(body: TeamDelete, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("delete teams")
    return {"deleted_teams": await _delete(request, caller, "team", body.team_ids)}


@router.get("/team/info", tags=["teams"])
async def team_info(request: Request, team_id: str = Query(min_length=1), caller: Caller = Depends(authenticate)
                    ) -> dict[str, Any]:
    caller.require(caller.reads_all or team_id in caller.team_roles, "read this team")
    row = await _get(request, "team", team_id)
    keys, _ = await _store(request).list("key", {"team_id": team_id}, 1, 1000)
    return {"team_id": team_id, "team_info": {**public(row), "members_with_roles": await _store(request).members(team_id)},
            "keys": [k["token_hash"] for k in keys]}


@router.get("/team/list", tags=["teams"])
async def team_list(request: Request, organization_id: str | None = None, page: int = Page,
                    page_size: int = PageSize, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require(caller.reads_all or caller.user_id is not None, "list teams")
    scope = None if caller.reads_all else {"team_id": list(caller.team_roles)}
    rows, total = await _store(request).list("team", {"organization_id": organization_id}, page, page_size, scope)
    return {"teams": [public(r) for r in rows], **paging(page, page_size, total)}


@router.post("/team/member_add", tags=["teams"])
async def member_add(body: MemberAdd, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require(caller.is_admin or caller.team_admin_of(body.team_id), "add members to this team")
    await _get(request, "team", body.team_id)
    members = body.member if isinstance(body.member, list) else [body.member]
    for member in members:
        await _must_exist(request, "user", member.user_id, "member.user_id")
    after = await _store(request).set_members(body.team_id, [m.model_dump() for m in members], [],
                                              audit_of(request, caller))
    await notify(request, "team", body.team_id)
    for member in members:
        await notify(request, "user", member.user_id)
    return {"team_id": body.team_id, "members_with_roles": after}


@router.post("/team/member_delete", tags=["teams"])
async def member_delete(body: MemberDelete, request: Request, caller: Caller = Depends(authenticate)
                        ) -> dict[str, Any]:
    caller.require(caller.is_admin or caller.team_admin_of(body.team_id), "remove members from this team")
    await _get(request, "team", body.team_id)
    if body.user_id not in {m["user_id"] for m in await _store(request).members(body.team_id)}:
        raise NotFound(f"user {body.user_id!r} is not a member of team {body.team_id!r}", code="member_not_found")
    after = await _store(request).set_members(body.team_id, [], [body.user_id], audit_of(request, caller))
    await notify(request, "team", body.team_id)
    await notify(request, "user", body.user_id)
    return {"team_id": body.team_id, "members_with_roles": after}


# ------------------------------------------------------------------ users

@router.post("/user/new", tags=["users"])
async def user_new(body: UserNew, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("create users")
    fields = body.given("teams", "password")
    fields["user_id"] = fields.get("user_id") or str(uuid.uuid4())
    fields["user_role"] = fields.get("user_role") or INTERNAL_USER
    await _must_exist(request, "organization", fields.get("organization_id"), "organization_id")
    for i, team_id in enumerate(body.teams or []):
        await _must_exist(request, "team", team_id, f"teams[{i}]")
    row = await _create(request, caller, "user", fields)
    for team_id in body.teams or []:
        await _store(request).set_members(team_id, [{"user_id": row["user_id"], "role": "member"}], [],
                                          audit_of(request, caller))
    if body.password:
        await _set_password(request, caller, row["user_id"], body.password)
    return {**public(row), "teams": list(body.teams or [])}


async def _set_password(request: Request, caller: Caller, user_id: str, password: str) -> None:
    """The user's admin-UI password (argon2id, ``ui/credentials.py``, audited); their UI sessions end."""
    from ..ui import credentials, sessions

    gateway = request.app.state.gateway
    await credentials.set_password(gateway, user_id, password, audit_of(request, caller))
    await sessions.revoke_user(gateway, user_id)


@router.post("/user/update", tags=["users"])
async def user_update(body: UserUpdate, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("update users")
    fields = body.given("user_id", "password")
    if "user_role" in fields and fields["user_role"] is None:
        raise BadRequest("field 'user_role' must not be null", param="user_role")
    await _must_exist(request, "organization", fields.get("organization_id"), "organization_id")
    row = await _update(request, caller, "user", body.user_id, fields) if fields else \
        await _get(request, "user", body.user_id)
    if body.password:
        await _set_password(request, caller, body.user_id, body.password)
    return public(row)


@router.post("/user/delete", tags=["users"])
async def user_delete(body: UserDelete, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("delete users")
    return {"deleted_users": await _delete(request, caller, "user", body.user_ids)}


@router.get("/user/info", tags=["users"])
async def user_info(request: Request, user_id: str | None = None, caller: Caller = Depends(authenticate)
                    ) -> dict[str, Any]:
    user_id = user_id or caller.user_id
    if user_id is None:
        raise BadRequest("missing query parameter 'user_id'", param="user_id")
    caller.require(caller.reads_all or user_id == caller.user_id, "read this user")
    row = await _get(request, "user", user_id)
    keys, _ = await _store(request).list("key", {"user_id": user_id}, 1, 1000)
    teams = await _store(request).memberships(user_id)
    return {"user_id": user_id, "user_info": public(row), "keys": [k["token_hash"] for k in keys],
            "teams": [{"team_id": t, "role": r} for t, r in sorted(teams.items())]}


@router.get("/user/list", tags=["users"])
async def user_list(request: Request, role: str | None = None, organization_id: str | None = None,
                    page: int = Page, page_size: int = PageSize, caller: Caller = Depends(authenticate)
                    ) -> dict[str, Any]:
    caller.require_reader("list users")
    rows, total = await _store(request).list("user", {"user_role": role, "organization_id": organization_id},
                                             page, page_size)
    return {"users": [public(r) for r in rows], **paging(page, page_size, total)}


# ------------------------------------------------------------------ organizations

@router.post("/organization/new", tags=["organizations"])
async def org_new(body: OrgNew, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("create organizations")
    fields = body.given()
    fields["organization_id"] = fields.get("organization_id") or str(uuid.uuid4())
    return public(await _create(request, caller, "organization", fields))


@router.post("/organization/update", tags=["organizations"])
async def org_update(body: OrgUpdate, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("update organizations")
    return public(await _update(request, caller, "organization", body.organization_id,
                                body.given("organization_id")))


@router.post("/organization/delete", tags=["organizations"])
async def org_delete(body: OrgDelete, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_admin("delete organizations")
    for org_id in body.organization_ids:
        for kind in ("team", "user", "key"):
            if await _store(request).find(kind, organization_id=org_id):
                raise BadRequest(f"organization {org_id!r} still has {kind}s: delete or move them first",
                                 param="organization_ids")
    return {"deleted_organizations": await _delete(request, caller, "organization", body.organization_ids)}


@router.get("/organization/info", tags=["organizations"])
async def org_info(request: Request, organization_id: str = Query(min_length=1),
                   caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_reader("read organizations")
    row = await _get(request, "organization", organization_id)
    teams = await _store(request).find("team", organization_id=organization_id)
    return {**public(row), "teams": [t["team_id"] for t in teams]}


@router.get("/organization/list", tags=["organizations"])
async def org_list(request: Request, page: int = Page, page_size: int = PageSize,
                   caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_reader("list organizations")
    rows, total = await _store(request).list("organization", {}, page, page_size)
    return {"organizations": [public(r) for r in rows], **paging(page, page_size, total)}


# ------------------------------------------------------------------ customers (end users)

@router.post("/customer/new", tags=["customers"])
async def customer_new(body: CustomerNew, request: Request, caller: Caller = Depends(authenticate)
                       ) -> dict[str, Any]:
    caller.require_admin("create customers")
    return public(await _create(request, caller, "customer", body.given()))


@router.post("/customer/update", tags=["customers"])
async def customer_update(body: CustomerUpdate, request: Request, caller: Caller = Depends(authenticate)
                          ) -> dict[str, Any]:
    caller.require_admin("update customers")
    return public(await _update(request, caller, "customer", body.user_id, body.given("user_id")))


@router.post("/customer/delete", tags=["customers"])
async def customer_delete(body: CustomerIds, request: Request, caller: Caller = Depends(authenticate)
                          ) -> dict[str, Any]:
    caller.require_admin("delete customers")
    return {"deleted_customers": await _delete(request, caller, "customer", body.user_ids)}


async def _customers_blocked(body: CustomerIds, request: Request, caller: Caller, blocked: bool) -> dict[str, Any]:
    caller.require_admin(("block" if blocked else "unblock") + " customers")
    for user_id in body.user_ids:
        await _get(request, "customer", user_id)
    for user_id in body.user_ids:
        await _update(request, caller, "customer", user_id, {"blocked": blocked},
                      "blocked" if blocked else "unblocked")
    return {"blocked" if blocked else "unblocked": body.user_ids}


@router.post("/customer/block", tags=["customers"])
async def customer_block(body: CustomerIds, request: Request, caller: Caller = Depends(authenticate)
                         ) -> dict[str, Any]:
    return await _customers_blocked(body, request, caller, True)


@router.post("/customer/unblock", tags=["customers"])
async def customer_unblock(body: CustomerIds, request: Request, caller: Caller = Depends(authenticate)
                           ) -> dict[str, Any]:
    return await _customers_blocked(body, request, caller, False)


@router.get("/customer/info", tags=["customers"])
async def customer_info(request: Request, end_user_id: str = Query(min_length=1),
                        caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_reader("read customers")
    return public(await _get(request, "customer", end_user_id))


@router.get("/customer/list", tags=["customers"])
async def customer_list(request: Request, page: int = Page, page_size: int = PageSize,
                        caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    caller.require_reader("list customers")
    rows, total = await _store(request).list("customer", {}, page, page_size)
    return {"customers": [public(r) for r in rows], **paging(page, page_size, total)}
