"""``GET /model/info`` (and ``/v1/model/info``): the deployments, their parameters and their prices.

LiteLLM's shape: ``{"data": [{"model_name", "litellm_params", "model_info"}]}``, one entry per
deployment.  ``litellm_params`` carries no secret: only the non-secret parameters are listed (never
``api_key``, AWS keys, Vertex credentials or Azure AD tokens) and credentials written into
``api_base`` (``user:password@``) are removed.  ``model_info`` adds the price Lockgate charges
(USD per token, ``null`` when the deployment has none) and ``priced``: false for a deployment that
is in neither the bundled price table nor priced by its ``model_info`` (its requests cost 0 and
escape budgets; see ``general_settings.reject_unpriced_for_budgets``).

The master key sees every deployment; a virtual key sees the deployments of the models it may call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .cost import is_priced, price_for

if TYPE_CHECKING:
    from ..config import Deployment

# litellm_params worth showing; everything else (api_key, aws_secret_access_key, vertex_credentials,
# azure_ad_token, aws_session_token, ...) is never listed
PUBLIC_EXTRA = ("aws_region_name", "aws_bedrock_runtime_endpoint", "vertex_project", "vertex_location")
PUBLIC_INFO = ("max_input_tokens", "max_output_tokens", "max_tokens", "mode", "base_model", "description",
               "access_groups")


def body(deployments: dict[str, list[Deployment]], may_use: Callable[[str], bool],
         model_id: str | None = None) -> dict[str, Any]:
    data = []
    for name, deps in deployments.items():
        if not may_use(name):
            continue
        for dep in deps:
            if model_id is None or dep.id == model_id:
                data.append(entry(dep))
    return {"data": data}


def entry(dep: Deployment) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"{dep.provider}/{dep.model}", "custom_llm_provider": dep.provider}
    if dep.api_base:
        params["api_base"] = without_credentials(dep.api_base)
    for name in ("api_version", "timeout", "stream_timeout", "rpm", "tpm", "order"):
        value = getattr(dep, name)
        if value is not None:
            params[name] = value
    if dep.weight != 1.0:
        params["weight"] = dep.weight
    params.update({k: dep.extra[k] for k in PUBLIC_EXTRA if dep.extra.get(k) is not None})
    priced = is_priced(dep)
    price = price_for(dep)
    info: dict[str, Any] = {k: dep.model_info[k] for k in PUBLIC_INFO if k in dep.model_info}
    info.update({
        "id": dep.id,
        "db_model": False,
        "litellm_provider": dep.provider,
        "priced": priced,
        "input_cost_per_token": price.input if priced else None,
        "output_cost_per_token": price.output if priced else None,
        "cache_read_input_token_cost": price.cache_read if priced else None,
        "cache_creation_input_token_cost": price.cache_write if priced else None,
    })
    return {"model_name": dep.model_name, "litellm_params": params, "model_info": info}


def without_credentials(url: str) -> str:
    """``https://user:secret@host/path?key=...`` -> ``https://host/path`` (user info and query removed)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable>"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
