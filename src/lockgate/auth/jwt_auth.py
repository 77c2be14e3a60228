"""JWT auth for API clients (LiteLLM's ``enable_jwt_auth`` / ``litellm_jwtauth``; docs/sso.md).

A bearer value shaped like a JWT (``eyJ...`` with three segments) is verified against the identity
provider's keys (``jwks.py``): signature (RSA, RSA-PSS, EC or EdDSA keys only: never a shared secret),
``exp`` (required), ``nbf`` / ``iat`` with ``leeway_seconds``, ``aud`` when JWT_AUDIENCE is set, ``iss`` when
JWT_ISSUER is set.  Its claims name who calls:

- the admin scope (``admin_jwt_scope`` in ``scope`` / ``scp``): a proxy admin, limited to
  ``admin_allowed_routes`` (LiteLLM's default: the management, spend and info routes);
- else a team (``team_id_jwt_field``, or the first existing team of ``team_ids_jwt_field``, else
  ``team_id_default``; an unknown team is refused with 403 unless ``team_id_upsert`` creates it), a user
  (``user_id_jwt_field``; created when ``user_id_upsert``), an organization and an end user.

The result is a ``Principal`` like a virtual key's, with a synthetic key record (no key limits; the spend
record's ``api_key`` stays NULL) under the team / user / organization it names: the request is
authorized, rate limited, budgeted and recorded exactly as one of that team's or user's keys would be.
A team's token may call ``team_allowed_routes`` only.

Hot path: a verified token is cached (bounded, until it expires or the key set is due for a refetch), its
principal in a ``TTLCache`` like the keys' (dropped on every management change).  With JWT auth off none
of this is imported.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from time import monotonic, time
from typing import TYPE_CHECKING, Any

import jwt
import orjson

from ..errors import AuthenticationError, PermissionDenied
from ..governance.cache import TTLCache
from ..governance.types import Entity, KeyRecord, Limits, Principal
from .jwks import MAX_JWKS_BYTES, JWKSCache
from .routes import management_allowed
from .settings import JWTSettings

if TYPE_CHECKING:
    from jwt.types import Options

    from ..gateway import Gateway

log = logging.getLogger("lockgate.auth")

PROXY_ADMIN = "proxy_admin"
# algorithms by key type: asymmetric only, so a token can never pick HMAC with a public key as its secret
ALGORITHMS = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
    "OKP": ("EdDSA",),
}
ALLOWED_ALGORITHMS = frozenset(a for algs in ALGORITHMS.values() for a in algs)
MAX_VERIFIED = 10_000  # verified tokens kept (least recently verified dropped first)
MAX_VERIFIED_SECONDS = 300.0
JWKS_TIMEOUT = 5.0  # seconds for one JWKS fetch


def looks_like_jwt(value: str) -> bool:
    """A compact JWS: ``eyJ`` (a base64url JSON header) and three segments; virtual keys are ``sk-...``."""
    return value.startswith("eyJ") and value.count(".") == 2


@dataclass(frozen=True, slots=True)
class Identity:
    """What a verified token says about its caller (claims already mapped through litellm_jwtauth)."""

    subject: str | None
    admin: bool
    user_id: str | None
    email: str | None
    team_ids: tuple[str, ...]  # candidates, in order
    org_id: str | None
    end_user: str | None
    role: str | None  # a Lockgate role mapped from roles_jwt_field / user_allowed_roles

    def cache_key(self) -> str:
        return orjson.dumps([self.subject, self.admin, self.user_id, self.email, self.team_ids, self.org_id,
                             self.end_user, self.role]).decode()

    @classmethod
    def from_key(cls, key: str) -> Identity:
        s, a, u, e, t, o, eu, r = orjson.loads(key)
        return cls(s, a, u, e, tuple(t), o, eu, r)


class JWTAuth:
    """Verifies bearer JWTs and resolves them to principals (``Governance.jwt``)."""

    def __init__(self, gw: Gateway, settings: JWTSettings, cache_ttl: float) -> None:
        self.gw = gw
        self.settings = settings
        self.jwks = JWKSCache(self._fetch, settings.jwks_urls, settings.public_key_ttl,
                              settings.jwks_refetch_seconds)
        self._verified: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()  # sha256(token) -> (until, who)
        self.principals: TTLCache[Principal] = TTLCache(self._load, cache_ttl)

    # ------------------------------------------------------------------ verification

    async def _fetch(self, url: str) -> bytes:
        reply = await self.gw.upstream.get(url, {"accept": "application/json"}, JWKS_TIMEOUT)
        if reply.status != 200:
            raise ValueError(f"HTTP {reply.status}")
        if len(reply.body) > MAX_JWKS_BYTES:
            raise ValueError("the answer is larger than 1 MB")
        return reply.body

    async def verify(self, token: str) -> Identity:
        """The token's identity, or 401 (invalid, expired, unknown key) / 403 (a refused claim) / 503 (no keys)."""
        digest = hashlib.sha256(token.encode()).digest()  # tokens can be kilobytes: 32 bytes kept per token
        hit = self._verified.get(digest)
        if hit is not None and hit[0] > monotonic():
            return hit[1]
        claims = await self.claims(token)
        identity = self.identity(claims)
        now = monotonic()
        until = min(now + float(claims["exp"]) + self.settings.leeway_seconds - time(), self.jwks.valid_until(),
                    now + MAX_VERIFIED_SECONDS)
        verified = self._verified
        verified[digest] = (until, identity)
        verified.move_to_end(digest)
        if len(verified) > MAX_VERIFIED:
            verified.popitem(last=False)
        return identity

    async def claims(self, token: str) -> dict[str, Any]:
        """Signature and registered claims checked; the payload."""
        alg, kid = header_of(token)
        s = self.settings
        return await decode(token, alg, kid, self.jwks, s.audience, s.issuer, s.leeway_seconds)

    def identity(self, claims: dict[str, Any]) -> Identity:
        """Map the claims through litellm_jwtauth (403 for a refused email domain or role)."""
        s = self.settings
        scopes = words(claims.get("scope")) + words(claims.get("scp"))
        email = _text(claim(claims, s.user_email_jwt_field))
        if s.user_allowed_email_domain is not None and not (
                email and email.lower().endswith("@" + s.user_allowed_email_domain)):
            raise PermissionDenied("the token's email is not in the allowed domain "
                                   "(litellm_jwtauth.user_allowed_email_domain)", code="email_domain_not_allowed")
        role = None
        if s.user_roles_jwt_field is not None and s.user_allowed_roles:
            roles = words(claim(claims, s.user_roles_jwt_field))
            if not set(roles) & set(s.user_allowed_roles):
                raise PermissionDenied("the token carries none of litellm_jwtauth.user_allowed_roles",
                                       code="role_not_allowed")
            role = "internal_user"
        if s.roles_jwt_field is not None:
            role = next((s.role_mappings[r] for r in words(claim(claims, s.roles_jwt_field))
                         if r in s.role_mappings), role)
        teams: list[str] = []
        single = _text(claim(claims, s.team_id_jwt_field))
        if single:
            teams.append(single)
        teams += [t for t in words(claim(claims, s.team_ids_jwt_field)) if t not in teams]
        if s.team_id_default and s.team_id_default not in teams:
            teams.append(s.team_id_default)
        return Identity(
            subject=_text(claims.get("sub")), admin=s.admin_jwt_scope in scopes,
            user_id=_text(claim(claims, s.user_id_jwt_field)), email=email, team_ids=tuple(teams),
            org_id=_text(claim(claims, s.org_id_jwt_field)), end_user=_text(claim(claims, s.end_user_id_jwt_field)),
            role=role,
        )

    # ------------------------------------------------------------------ principals

    async def principal(self, token: str) -> Principal:
        """The caller as governance sees it (401 / 403 / 503 as ``verify`` says; 403 for an unknown team)."""
        ident = await self.verify(token)
        if not (ident.admin or ident.user_id or ident.team_ids):
            raise PermissionDenied("the token names no team, no user and not the admin scope "
                                   "(general_settings.litellm_jwtauth)", code="jwt_no_identity")
        principal = await self.principals.get(ident.cache_key())
        if principal is None:
            raise PermissionDenied(f"the token's team {', '.join(map(repr, ident.team_ids))} does not exist on this "
                                   "gateway (create it, or set litellm_jwtauth.team_id_upsert)", code="team_not_found")
        return principal

    def check_management_path(self, principal: Principal, path: str) -> None:
        """admin_allowed_routes / team_allowed_routes on the management API (403 outside them)."""
        routes = principal.key.allowed_routes
        if routes and not management_allowed(tuple(routes), path):
            raise PermissionDenied(f"this token may not call {path} (litellm_jwtauth admin_allowed_routes / "
                                   "team_allowed_routes)", code="route_not_allowed")

    async def _load(self, key: str) -> Principal | None:
        ident = Identity.from_key(key)
        s = self.settings
        store = self.gw.store
        assert store is not None
        user = await store.get("user", ident.user_id) if ident.user_id else None
        if ident.admin:
            admin = _entity("user", user) if user is not None else Entity("user", ident.user_id or "jwt-admin")
            record = KeyRecord(token_hash=_pseudo_hash(key), user_id=ident.user_id if user is not None else None,
                               allowed_routes=list(s.admin_allowed_routes), metadata=_meta(ident))
            return Principal(key=record, user=replace(admin, role=PROXY_ADMIN), jwt=True)
        team = None
        for team_id in ident.team_ids:
            team = await store.get("team", team_id)
            if team is not None:
                break
        if ident.team_ids and team is None:
            if not s.team_id_upsert:
                return None
            team = await self._create("team", {"team_id": ident.team_ids[0], "team_alias": ident.team_ids[0]})
        if ident.user_id and user is None and s.user_id_upsert:
            user = await self._create("user", {"user_id": ident.user_id, "user_email": ident.email,
                                               "user_role": ident.role or "internal_user"})
        org_id = ident.org_id or (team or {}).get("organization_id") or (user or {}).get("organization_id")
        org = await store.get("organization", org_id) if org_id else None
        record = KeyRecord(
            token_hash=_pseudo_hash(key), user_id=ident.user_id, team_id=team["team_id"] if team else None,
            organization_id=org["organization_id"] if org else None,
            allowed_routes=list(s.team_allowed_routes) if team else [], metadata=_meta(ident),
        )
        return Principal(key=record, user=_entity("user", user) if user else None,
                         team=_entity("team", team) if team else None,
                         organization=_entity("organization", org) if org else None, jwt=True,
                         end_user=ident.end_user)

    async def _create(self, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        """Create a user / team named by a token; another instance creating it at the same time is fine."""
        from ..state import Audit

        store = self.gw.store
        assert store is not None
        ident = values[f"{kind}_id"]
        try:
            row = await store.create(kind, values, Audit(changed_by="jwt-auth"))
            log.info("created %s %r from a JWT (litellm_jwtauth.%s_id_upsert)", kind, ident, kind)
            return row
        except Exception:  # most likely created meanwhile (a unique violation): read it
            existing = await store.get(kind, ident)
            if existing is None:
                raise
            return existing

    def invalidate(self) -> None:
        """A management change (user, team, organization): principals are rebuilt on their next request."""
        self.principals.invalidate()


def header_of(token: str) -> tuple[str, str | None]:
    """The token's algorithm (asymmetric ones only) and key id, or 401."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise AuthenticationError("invalid token: not a well-formed JWT", code="invalid_token") from None
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise AuthenticationError(f"invalid token: algorithm {alg!r} is not accepted (asymmetric signatures only)",
                                  code="invalid_token")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AuthenticationError("invalid token: kid must be a string", code="invalid_token")
    return alg, kid


async def decode(token: str, alg: str, kid: str | None, jwks: JWKSCache, audience: tuple[str, ...],
                 issuer: str | None, leeway: float) -> dict[str, Any]:
    """Verify a token against a key set: signature, exp (required), nbf / iat, aud and iss when given; 401 else."""
    keys = await jwks.keys_for(kid)  # never from jku / x5u: the configured URLs only
    if not keys:
        raise AuthenticationError(f"invalid token: signing key {kid!r} is not among the identity provider's keys",
                                  code="invalid_token")
    options: Options = {"require": ["exp"], "verify_aud": bool(audience), "verify_iss": issuer is not None}
    for key in keys:
        if alg not in ALGORITHMS.get(str(key.key_type), ()):
            continue
        try:
            return jwt.decode(token, key.key, algorithms=[alg], audience=list(audience) or None, issuer=issuer,
                              leeway=leeway, options=options)
        except jwt.InvalidSignatureError:
            continue  # a token without kid: try the next key
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("invalid token: it has expired", code="token_expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("invalid token: it is not valid yet (nbf / iat)", code="invalid_token") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("invalid token: wrong audience", code="invalid_token") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("invalid token: wrong issuer", code="invalid_token") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"invalid token: {exc}", code="invalid_token") from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid token: {type(exc).__name__}", code="invalid_token") from None
    raise AuthenticationError("invalid token: the signature does not verify", code="invalid_token")


def claim(claims: dict[str, Any], name: str | None) -> Any:
    """A claim by name; a dotted name walks nested objects (``realm_access.roles``) unless it is a claim itself."""
    if not name:
        return None
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value) or None
    return None


def words(value: Any) -> list[str]:
    """A space-separated string or a list of strings (scopes, roles, groups)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int)) and not isinstance(v, bool)]
    return []


def _pseudo_hash(identity_key: str) -> str:
    """The synthetic key record's id: one per identity (it scopes the response cache like a key's hash);
    never a key in storage and never written to a spend record."""
    return "jwt:" + hashlib.sha256(identity_key.encode()).hexdigest()[:60]


def _meta(ident: Identity) -> dict[str, Any]:
    return {"auth": "jwt", "jwt_subject": ident.subject}


def _entity(kind: str, row: dict[str, Any]) -> Entity:
    """A management row (``store.get``) as enforcement sees it."""
    limits = Limits(max_budget=row.get("max_budget"), budget_duration=row.get("budget_duration"),
                    budget_reset_at=row.get("budget_reset_at"), spend=row.get("spend") or 0.0,
                    tpm_limit=row.get("tpm_limit"), rpm_limit=row.get("rpm_limit"),
                    max_parallel_requests=row.get("max_parallel_requests"))
    return Entity(kind=kind, id=row[f"{kind}_id"], models=list(row.get("models") or []), limits=limits,
                  blocked=bool(row.get("blocked")), role=row.get("user_role"), metadata=dict(row.get("metadata") or {}))
