"""Every setting and endpoint is documented: the keys config.py (and the modules it hands sections to)
accept are named in docs/configuration.md, so are the environment variables the package reads, and every
route the gateway serves is named in docs/endpoints.md.

The lists come from the code's own tables (the known-key sets behind the "not implemented yet, ignored"
warnings, the route tables of app.py, the management API's OpenAPI schema), so a new key or route fails
here until it is documented.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lockgate import config

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "lockgate"
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
ENDPOINTS = (ROOT / "docs" / "endpoints.md").read_text()

# environment variables the package reads that are not settings; each with its reason
ENV_EXEMPT = {
    "TIKTOKEN_CACHE_DIR": "set by lockgate/tokens.py itself to its bundled encodings before tiktoken reads it",
    "EXAMPLE_BANNED_WORDS": "read only by the example plugin lockgate/examples/custom_callbacks.py",
}


def section(text: str, heading: str) -> str:
    """From the line starting with ``heading`` to the next ``## `` heading."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(heading)]
    assert len(starts) == 1, f"docs/configuration.md needs exactly one heading {heading!r}"
    out = []
    for line in lines[starts[0] + 1:]:
        if line.startswith("## "):
            break
        out.append(line)
    return "\n".join(out)


def names_in(text: str) -> set[str]:
    """Every identifier written inside backticks (`litellm_params.rpm`, `tpm`, `SMTP_HOST`, ...)."""
    return {word for span in re.findall(r"`([^`\n]+)`", text) for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


def _cache_keys() -> set[str]:
    from lockgate.cache import settings as cache_settings

    return set(cache_settings.KNOWN_PARAMS)


def _guardrail_keys() -> set[str]:
    from lockgate.guardrails import config as guardrail_config

    return set(guardrail_config.COMMON)


def _metrics_keys() -> set[str]:
    import dataclasses

    from lockgate.observability.options import MetricsOptions

    return {f.name for f in dataclasses.fields(MetricsOptions)}


# (heading of the section in docs/configuration.md, the keys the code accepts there)
SECTIONS = [
    ("## `model_list`", lambda: config.KNOWN_PARAMS | config.KNOWN_MODEL_INFO),
    ("## `general_settings`", lambda: config.KNOWN_GENERAL),
    ("## `litellm_settings`", lambda: config.KNOWN_LITELLM | _cache_keys()),
    ("## `router_settings`", lambda: config.KNOWN_ROUTER),
    ("## `lockgate_settings`", lambda: config.KNOWN_LOCKGATE | _metrics_keys()),
    ("## `guardrails`", _guardrail_keys),
]


@pytest.mark.parametrize(("heading", "keys"), SECTIONS, ids=[h.strip("#` ") for h, _ in SECTIONS])
def test_every_accepted_key_is_in_its_section(heading, keys):
    missing = sorted(set(keys()) - names_in(section(CONFIGURATION, heading)))
    assert not missing, f"docs/configuration.md ({heading}) does not mention: {missing}"


def _nested() -> list[tuple[str, set[str]]]:
    from lockgate.alerts import settings as alert_settings
    from lockgate.auth import settings as auth_settings

    return [("alerts.md", set(alert_settings.ARGS) | set(alert_settings.ALERT_TYPES) | set(alert_settings.CHANNELS)),
            ("sso.md", set(auth_settings.JWT_FIELDS) | set(auth_settings.SSO_FIELDS))]


def test_nested_keys_are_in_the_page_configuration_md_links_to():
    """``alerting_args``, ``alert_types``, ``litellm_jwtauth`` and ``sso`` have one-line entries in
    docs/configuration.md; their own keys are listed on the linked page."""
    for page, keys in _nested():
        assert f"]({page}" in CONFIGURATION, f"docs/configuration.md does not link to {page}"
        missing = sorted(keys - names_in((ROOT / "docs" / page).read_text()))
        assert not missing, f"docs/{page} does not mention: {missing}"


def test_every_top_level_section_has_a_heading():
    missing = [name for name in sorted(config.KNOWN_TOP)
               if not re.search(rf"^## `{re.escape(name)}`", CONFIGURATION, re.MULTILINE)]
    assert not missing, f"docs/configuration.md has no '## `<name>`' heading for: {missing}"


ENV_READ = re.compile(r"""(?:\benviron\.get\(|\benviron\[|\benv\.get\(|\bgetenv\()\s*["']([A-Z][A-Z0-9_]*)["']""")


def environment_variables() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        found.update(ENV_READ.findall(path.read_text()))
    return found


def test_every_environment_variable_is_documented():
    read = environment_variables()
    assert {"SLACK_WEBHOOK_URL", "SMTP_HOST", "REDIS_URL", "DATABASE_URL"} <= read  # the scan does see them
    stale = sorted(set(ENV_EXEMPT) - read)
    assert not stale, f"ENV_EXEMPT names variables nothing reads any more: {stale}"
    missing = sorted(read - set(ENV_EXEMPT) - names_in(section(CONFIGURATION, "## Environment variables")))
    assert not missing, f"docs/configuration.md (## Environment variables) does not mention: {missing}"


def served_paths() -> set[str]:
    from lockgate import app
    from lockgate.admin import api, docs

    paths = set(app.MODEL_ROUTES) | {path for _, path in app.OTHER_ROUTES}
    paths |= set(docs.openapi(api.all_routes())["paths"])  # the management API
    try:
        from lockgate.auth import oidc
    except ImportError:  # pragma: no cover - the SSO module is part of the package
        pass
    else:
        paths |= {oidc.START_PATH, oidc.CALLBACK_PATH}
    try:
        from lockgate.ui.pages import load_pages
    except ImportError:  # pragma: no cover - the UI is part of the package
        pass
    else:
        paths |= {"/ui/login", "/ui/logout"} | {f"/ui/{page.slug}" for page in load_pages()}
    return paths


def test_every_route_is_in_endpoints_md():
    paths = served_paths()
    assert {"/chat/completions", "/metrics", "/key/generate", "/health/services"} <= paths
    missing = sorted(p for p in paths
                     if not re.search(r"(?<![\w/])(?:/v1)?" + re.escape(p) + r"(?![\w/-])", ENDPOINTS))
    assert not missing, f"docs/endpoints.md does not mention: {missing}"
