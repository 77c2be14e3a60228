"""Who is calling the management API, and what their role lets them do.

Roles (``users.user_role``): ``proxy_admin`` (everything, like the master key), ``proxy_admin_viewer``
(reads everything, mutates nothing), ``internal_user`` (manages their own keys, reads their own user),
``internal_user_viewer`` (reads their own keys and user).  Team roles (``team_members.role``): a team
``admin`` manages the members and keys of that team; a ``member`` gets nothing beyond their own keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import AuthenticationError, PermissionDenied
from ..pipeline import presented_key

if TYPE_CHECKING:
    from ..auth.jwt_auth import JWTAuth
    from ..gateway import Gateway

PROXY_ADMIN = "proxy_admin"
PROXY_ADMIN_VIEWER = "proxy_admin_viewer"
INTERNAL_USER = "internal_user"
INTERNAL_USER_VIEWER = "internal_user_viewer"
USER_ROLES = (PROXY_ADMIN, PROXY_ADMIN_VIEWER, INTERNAL_USER, INTERNAL_USER_VIEWER)
TEAM_ROLES = ("admin", "member")

_HASH = re.compile(r"^[0-9a-f]{64}$")


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_hash_of(value: str) -> str:
    """A key as the API accepts it (the raw ``sk-`` key or its sha256 hex) -> its token hash."""
    return value if _HASH.match(value) and not value.startswith("sk-") else hash_key(value)


@dataclass
class Caller:
    id: str  # "master", or the caller's user id (or "key:<hash prefix>" for a key without user)
    role: str | None  # one of USER_ROLES (the master key counts as proxy_admin)
    user_id: str | None = None
    token_hash: str | None = None
    team_roles: dict[str, str] = field(default_factory=dict)  # team_id -> "admin" | "member"

    @property
    def is_admin(self) -> bool:
        return self.role == PROXY_ADMIN

    @property
    def reads_all(self) -> bool:
        return self.role in (PROXY_ADMIN, PROXY_ADMIN_VIEWER)

    @property
    def admin_teams(self) -> list[str]:
        return [t for t, r in self.team_roles.items() if r == "admin"]

    def team_admin_of(self, team_id: str | None) -> bool:
        return team_id is not None and self.team_roles.get(team_id) == "admin"

    # ---- keys

    def can_read_key(self, key: dict[str, Any]) -> bool:
        return (self.reads_all or (self.user_id is not None and key["user_id"] == self.user_id)
                or self.team_admin_of(key["team_id"])
                or (self.token_hash is not None and hmac.compare_digest(key["token_hash"], self.token_hash)))

    def can_manage_key(self, key: dict[str, Any]) -> bool:
        if self.is_admin or self.team_admin_of(key["team_id"]):
            return True
        return self.role == INTERNAL_USER and self.user_id is not None and key["user_id"] == self.user_id

    def require(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise PermissionDenied(f"{self.describe()} may not {what}", code="forbidden")

    def require_admin(self, what: str) -> None:
        self.require(self.is_admin, what)

    def require_reader(self, what: str) -> None:
        self.require(self.reads_all, what)

    def describe(self) -> str:
        if self.id == "master":
            return "the master key"
        return f"role {self.role or 'none'}"


async def authenticate(gateway: Gateway, headers: dict[str, str], path: str) -> Caller:
    """The caller of a management request, from its (lower-cased) headers."""
    master = gateway.settings.master_key
    key = presented_key(headers)
    if master is None and not key:
        return Caller(id="master", role=PROXY_ADMIN)  # no master key configured: the gateway is open
    if not key:
        raise AuthenticationError("no API key: send Authorization: Bearer <key> or x-api-key")
    if master is not None and hmac.compare_digest(key.encode(), master.encode()):
        return Caller(id="master", role=PROXY_ADMIN)
    jwt_auth = gateway.governance.jwt if gateway.governance is not None else None
    if jwt_auth is not None and key.startswith("eyJ") and key.count(".") == 2:  # a JWT (docs/sso.md)
        return await _jwt_caller(gateway, jwt_auth, key, path)
    store = gateway.store
    if store is None:
        raise AuthenticationError("invalid API key")
    token_hash = hash_key(key)
    principal = await store.principal_for_key(token_hash)
    if principal is None:
        if master is None:
            return Caller(id="master", role=PROXY_ADMIN)
        raise AuthenticationError("invalid API key")
    record = principal.key
    if record.blocked:
        raise AuthenticationError("this key is blocked", code="key_blocked")
    if record.expires is not None and record.expires <= datetime.now(UTC):
        raise AuthenticationError("this key has expired", code="key_expired")
    user = principal.user
    if user is not None and user.blocked:
        raise AuthenticationError("this key's user is blocked", code="user_blocked")
    role = user.role if user is not None else None
    team_roles = await store.memberships(user.id) if user is not None else {}
    return Caller(id=user.id if user is not None else f"key:{token_hash[:12]}", role=role,
                  user_id=user.id if user is not None else None, token_hash=token_hash, team_roles=team_roles)


async def _jwt_caller(gateway: Gateway, jwt_auth: JWTAuth, token: str, path: str) -> Caller:
    """A JWT on the management API: its admin scope makes a proxy admin, else the user it names (their role
    and team roles); admin_allowed_routes / team_allowed_routes bound the paths (auth/jwt_auth.py)."""
    principal = await jwt_auth.principal(token)
    jwt_auth.check_management_path(principal, path)
    user = principal.user
    if user is not None and user.blocked:
        raise AuthenticationError("this token's user is blocked", code="user_blocked")
    user_id = principal.key.user_id
    team_roles = await gateway.store.memberships(user_id) if user_id and gateway.store is not None else {}
    subject = principal.key.metadata.get("jwt_subject")
    return Caller(id=user_id or f"jwt:{subject or 'anonymous'}", role=user.role if user is not None else None,
                  user_id=user_id, team_roles=team_roles)
