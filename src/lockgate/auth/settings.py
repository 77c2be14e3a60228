"""JWT auth and SSO settings: LiteLLM's names (``general_settings.enable_jwt_auth``, ``litellm_jwtauth``,
the ``JWT_*`` and ``GENERIC_*`` environment variables) plus a few of Lockgate's own, all in docs/sso.md.

Plain parsing, no I/O and no heavy import: ``config.py`` calls ``jwt_settings`` and ``sso_settings`` at
load time; a ``ValueError`` names the bad setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer")

# LiteLLM's defaults (LiteLLM_JWTAuth)
ADMIN_ROUTES = ("management_routes", "spend_tracking_routes", "global_spend_tracking_routes", "info_routes")
TEAM_ROUTES = ("openai_routes", "info_routes")

JWT_FIELDS = {
    "admin_jwt_scope", "admin_allowed_routes", "team_id_jwt_field", "team_ids_jwt_field", "team_id_default",
    "team_id_upsert", "team_allowed_routes", "user_id_jwt_field", "user_email_jwt_field",
    "user_allowed_email_domain", "user_id_upsert", "org_id_jwt_field", "end_user_id_jwt_field",
    "user_roles_jwt_field", "user_allowed_roles", "roles_jwt_field", "role_mappings", "public_key_ttl",
    # Lockgate's own
    "jwks_refetch_seconds", "leeway_seconds",
}
SSO_FIELDS = {
    "client_id", "client_secret", "issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
    "jwks_uri", "scope", "user_id_attribute", "user_email_attribute", "user_role_attribute",
    "team_ids_attribute", "role_mappings", "default_role", "allowed_email_domains", "token_auth_method",
    "proxy_base_url", "state_ttl_seconds",
}


@dataclass(frozen=True)
class JWTSettings:
    """``general_settings.litellm_jwtauth`` and the JWT_* environment (enabled by ``enable_jwt_auth``)."""

    jwks_urls: tuple[str, ...]  # JWT_PUBLIC_KEY_URL (comma-separated): the only place keys come from
    audience: tuple[str, ...] = ()  # JWT_AUDIENCE (comma-separated); empty: aud not checked
    issuer: str | None = None  # JWT_ISSUER; None: iss not checked
    admin_jwt_scope: str = "litellm_proxy_admin"
    admin_allowed_routes: tuple[str, ...] = ADMIN_ROUTES
    team_id_jwt_field: str | None = None
    team_ids_jwt_field: str | None = None
    team_id_default: str | None = None
    team_id_upsert: bool = False
    team_allowed_routes: tuple[str, ...] = TEAM_ROUTES
    user_id_jwt_field: str | None = None
    user_email_jwt_field: str | None = None
    user_allowed_email_domain: str | None = None
    user_id_upsert: bool = False
    org_id_jwt_field: str | None = None
    end_user_id_jwt_field: str | None = None
    user_roles_jwt_field: str | None = None
    user_allowed_roles: tuple[str, ...] = ()
    roles_jwt_field: str | None = None
    role_mappings: Mapping[str, str] = field(default_factory=dict)  # the token's role -> a Lockgate role
    public_key_ttl: float = 600.0
    jwks_refetch_seconds: float = 10.0  # an unknown kid refetches the keys at most this often
    leeway_seconds: float = 30.0  # clock skew allowed on exp / nbf / iat


@dataclass(frozen=True)
class SSOSettings:
    """OpenID Connect sign-in: ``general_settings.sso`` or the GENERIC_* environment (the section wins)."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    issuer: str | None = None  # discovery: {issuer}/.well-known/openid-configuration
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    scope: str = "openid email profile"
    user_id_attribute: str = "sub"
    user_email_attribute: str = "email"
    user_role_attribute: str = "role"
    team_ids_attribute: str = "groups"
    role_mappings: Mapping[str, str] = field(default_factory=dict)  # the IdP's role value -> a Lockgate role
    default_role: str = "internal_user_viewer"
    allowed_email_domains: tuple[str, ...] = ()
    token_auth_method: str = "client_secret_post"  # or client_secret_basic
    proxy_base_url: str | None = None  # PROXY_BASE_URL: the redirect URI is {proxy_base_url}/sso/callback
    state_ttl_seconds: float = 600.0  # how long a sign-in may take between the redirect and the callback


def jwt_settings(general: dict[str, Any], warnings: list[str], env: Mapping[str, str] = os.environ
                 ) -> JWTSettings | None:
    if not _bool(general.get("enable_jwt_auth"), "general_settings.enable_jwt_auth"):
        if general.get("litellm_jwtauth"):
            warnings.append("general_settings.litellm_jwtauth is ignored: enable_jwt_auth is not true")
        return None
    raw = general.get("litellm_jwtauth") or {}
    if not isinstance(raw, dict):
        raise ValueError("general_settings.litellm_jwtauth must be a mapping")
    extra = sorted(set(raw) - JWT_FIELDS)
    if extra:
        warnings.append("not implemented yet, ignored: " + ", ".join("general_settings.litellm_jwtauth." + k
                                                                     for k in extra))
    urls = _csv(env.get("JWT_PUBLIC_KEY_URL"))
    if not urls:
        raise ValueError("general_settings.enable_jwt_auth needs JWT_PUBLIC_KEY_URL (the identity provider's "
                         "JWKS URL) in the environment")
    for url in urls:
        _http_url(url, "JWT_PUBLIC_KEY_URL")
    where = "general_settings.litellm_jwtauth."
    mappings = _role_map(raw.get("role_mappings"), where + "role_mappings", ("role", "internal_role"))
    return JWTSettings(
        jwks_urls=urls,
        audience=_csv(env.get("JWT_AUDIENCE")),
        issuer=env.get("JWT_ISSUER") or None,
        admin_jwt_scope=str(raw.get("admin_jwt_scope") or "litellm_proxy_admin"),
        admin_allowed_routes=_strings(raw, "admin_allowed_routes", ADMIN_ROUTES, where),
        team_id_jwt_field=_opt(raw, "team_id_jwt_field"),
        team_ids_jwt_field=_opt(raw, "team_ids_jwt_field"),
        team_id_default=_opt(raw, "team_id_default"),
        team_id_upsert=_bool(raw.get("team_id_upsert"), where + "team_id_upsert"),
        team_allowed_routes=_strings(raw, "team_allowed_routes", TEAM_ROUTES, where),
        user_id_jwt_field=_opt(raw, "user_id_jwt_field"),
        user_email_jwt_field=_opt(raw, "user_email_jwt_field"),
        user_allowed_email_domain=(_opt(raw, "user_allowed_email_domain") or "").lower().lstrip("@") or None,
        user_id_upsert=_bool(raw.get("user_id_upsert"), where + "user_id_upsert"),
        org_id_jwt_field=_opt(raw, "org_id_jwt_field"),
        end_user_id_jwt_field=_opt(raw, "end_user_id_jwt_field"),
        user_roles_jwt_field=_opt(raw, "user_roles_jwt_field"),
        user_allowed_roles=_strings(raw, "user_allowed_roles", (), where),
        roles_jwt_field=_opt(raw, "roles_jwt_field"),
        role_mappings=mappings,
        public_key_ttl=_positive(raw.get("public_key_ttl", 600), where + "public_key_ttl"),
        jwks_refetch_seconds=_positive(raw.get("jwks_refetch_seconds", 10), where + "jwks_refetch_seconds", zero=True),
        leeway_seconds=_positive(raw.get("leeway_seconds", 30), where + "leeway_seconds", zero=True),
    )


def sso_settings(general: dict[str, Any], litellm: dict[str, Any], warnings: list[str],
                 env: Mapping[str, str] = os.environ) -> SSOSettings | None:
    """The ``general_settings.sso`` section, else GENERIC_CLIENT_ID & co.; None when neither is there."""
    raw = general.get("sso")
    if raw is not None and not isinstance(raw, dict):
        raise ValueError("general_settings.sso must be a mapping")
    raw = dict(raw or {})
    where = "general_settings.sso."
    extra = sorted(set(raw) - SSO_FIELDS)
    if extra:
        warnings.append("not implemented yet, ignored: " + ", ".join(where + k for k in extra))
    from_env = {
        "client_id": env.get("GENERIC_CLIENT_ID"), "client_secret": env.get("GENERIC_CLIENT_SECRET"),
        "authorization_endpoint": env.get("GENERIC_AUTHORIZATION_ENDPOINT"),
        "token_endpoint": env.get("GENERIC_TOKEN_ENDPOINT"), "userinfo_endpoint": env.get("GENERIC_USERINFO_ENDPOINT"),
        "scope": env.get("GENERIC_SCOPE"), "user_id_attribute": env.get("GENERIC_USER_ID_ATTRIBUTE"),
        "user_email_attribute": env.get("GENERIC_USER_EMAIL_ATTRIBUTE"),
        "user_role_attribute": env.get("GENERIC_USER_ROLE_ATTRIBUTE"), "proxy_base_url": env.get("PROXY_BASE_URL"),
    }
    values = {k: v for k, v in from_env.items() if v}
    values.update({k: v for k, v in raw.items() if v is not None})
    if not values.get("client_id"):
        if raw:
            raise ValueError("general_settings.sso needs client_id (or GENERIC_CLIENT_ID)")
        return None
    if env.get("GENERIC_CLIENT_STATE"):
        warnings.append("GENERIC_CLIENT_STATE is not used: every sign-in gets a fresh random state")
    issuer = values.get("issuer")
    explicit = ("authorization_endpoint", "token_endpoint")
    if not issuer and not all(values.get(k) for k in explicit):
        raise ValueError("SSO needs general_settings.sso.issuer (discovery) or both the authorization and token "
                         "endpoints (GENERIC_AUTHORIZATION_ENDPOINT, GENERIC_TOKEN_ENDPOINT)")
    for name in ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "proxy_base_url"):
        if values.get(name):
            _http_url(str(values[name]), where + name)
    method = str(values.get("token_auth_method") or "client_secret_post")
    if method not in ("client_secret_post", "client_secret_basic"):
        raise ValueError(f"{where}token_auth_method must be client_secret_post or client_secret_basic")
    defaults = litellm.get("default_internal_user_params") or {}
    default_role = str(values.get("default_role") or (defaults.get("user_role") if isinstance(defaults, dict)
                                                       else None) or "internal_user_viewer")
    if default_role not in ROLES:
        raise ValueError(f"{where}default_role {default_role!r} is not one of {', '.join(ROLES)}")
    domains: Any = values.get("allowed_email_domains") or ()
    if isinstance(domains, str):
        domains = _csv(domains)
    return SSOSettings(
        client_id=str(values["client_id"]),
        client_secret=str(values["client_secret"]) if values.get("client_secret") else None,
        issuer=str(issuer).rstrip("/") if issuer else None,
        authorization_endpoint=values.get("authorization_endpoint"),
        token_endpoint=values.get("token_endpoint"),
        userinfo_endpoint=values.get("userinfo_endpoint"),
        jwks_uri=values.get("jwks_uri"),
        scope=str(values.get("scope") or "openid email profile"),
        user_id_attribute=str(values.get("user_id_attribute") or "sub"),
        user_email_attribute=str(values.get("user_email_attribute") or "email"),
        user_role_attribute=str(values.get("user_role_attribute") or "role"),
        team_ids_attribute=str(values.get("team_ids_attribute") or "groups"),
        role_mappings=_role_map(values.get("role_mappings"), where + "role_mappings", ("idp_role", "role")),
        default_role=default_role,
        allowed_email_domains=tuple(str(d).lower().lstrip("@") for d in domains),
        token_auth_method=method,
        proxy_base_url=str(values["proxy_base_url"]).rstrip("/") if values.get("proxy_base_url") else None,
        state_ttl_seconds=_positive(values.get("state_ttl_seconds", 600), where + "state_ttl_seconds"),
    )


def _role_map(value: Any, where: str, names: tuple[str, str]) -> dict[str, str]:
    """``{their_role: lockgate_role}`` or a list of ``{<names[0]>: ..., <names[1]>: ...}`` entries."""
    if value is None:
        return {}
    pairs: list[tuple[Any, Any]]
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(e, dict) for e in value):
        pairs = [(e.get(names[0]), e.get(names[1])) for e in value]
    else:
        raise ValueError(f"{where} must be a mapping or a list of {{{names[0]}, {names[1]}}} entries")
    out: dict[str, str] = {}
    for theirs, ours in pairs:
        if not theirs or ours not in ROLES:
            raise ValueError(f"{where}: {theirs!r} -> {ours!r}: the role must be one of {', '.join(ROLES)}")
        out[str(theirs)] = str(ours)
    return out


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _http_url(url: str, where: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{where}: {url!r} is not an http(s) URL")


def _opt(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    return str(value) if value not in (None, "") else None


def _strings(raw: dict[str, Any], name: str, default: tuple[str, ...], where: str) -> tuple[str, ...]:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}{name} must be a list of strings")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{where} must be true or false")


def _positive(value: Any, where: str, zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a number of seconds") from None
    if not (number >= 0 if zero else number > 0) or number == float("inf"):
        raise ValueError(f"{where} must be {'0 or more' if zero else 'more than 0'} seconds")
    return number
