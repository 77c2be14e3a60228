"""LiteLLM's route groups on the management paths (``admin_allowed_routes``, ``team_allowed_routes``).

Model routes are checked by ``governance.policy.route_allowed`` (the same names); this module answers
for the management API's paths.  An entry is a group name (``management_routes``, optionally spelled
``LiteLLMRoutes.management_routes``), an exact path, or a path ending in ``*`` (a prefix).
"""

from __future__ import annotations

from functools import lru_cache

MANAGEMENT_GROUPS: dict[str, tuple[str, ...]] = {
    # prefixes ending in "/" cover everything below them; other entries are exact paths
    "management_routes": ("/key/", "/team/", "/user/", "/organization/", "/customer/", "/cache/", "/guardrails/",
                          "/audit/"),
    "key_management_routes": ("/key/",),
    "spend_tracking_routes": ("/spend/", "/global/"),
    "global_spend_tracking_routes": ("/global/",),
    "info_routes": ("/key/info", "/key/list", "/team/info", "/team/list", "/user/info", "/organization/info",
                    "/organization/list", "/model/info", "/models", "/health"),
}


@lru_cache(maxsize=1024)
def management_allowed(entries: tuple[str, ...], path: str) -> bool:
    """Does one of ``entries`` allow the management ``path`` (``/key/generate``, ...)?"""
    for entry in entries:
        name = entry.removeprefix("LiteLLMRoutes.")
        group = MANAGEMENT_GROUPS.get(name)
        if group is not None:
            if any(path.startswith(p) if p.endswith("/") else path == p for p in group):
                return True
        elif name.endswith("*"):
            if path.startswith(name[:-1]):
                return True
        elif name == path or "/v1" + path == name:
            return True
    return False
