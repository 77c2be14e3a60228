"""Identity from an identity provider: JWT auth for API clients and OpenID Connect sign-in (docs/sso.md).

``settings.py``  general_settings.enable_jwt_auth / litellm_jwtauth / sso and the JWT_* / GENERIC_*
                 environment variables -> ``JWTSettings`` / ``SSOSettings`` (light: read by config.py)
``jwks.py``      the identity provider's signing keys: fetched from a configured URL only, cached for
                 ``public_key_ttl``, refetched (at most every ``jwks_refetch_seconds``) for an unknown ``kid``
``jwt_auth.py``  bearer JWT -> verified claims -> the ``Principal`` of the team / user it names
``routes.py``    which management paths LiteLLM's route groups allow (admin_allowed_routes, ...)
``oidc.py``      the authorization code flow with PKCE: /sso/key/generate and /sso/callback

Nothing here is imported unless JWT auth or SSO is configured.
"""
