"""OAuth2 access tokens for Vertex AI, from google-auth credentials.

Where credentials come from, per deployment (first match):

1. ``vertex_credentials`` in litellm_params: a path to a credentials JSON file
   (service account, authorized user, external account), or that JSON itself;
2. the file named by ``GOOGLE_APPLICATION_CREDENTIALS``;
3. google-auth's default chain (gcloud user credentials, the metadata server).

The token (scope ``cloud-platform``) is cached on the ``GoogleAuth`` object the
provider owns.  google-auth refreshes are blocking HTTP calls, so they run in a
worker thread: in the background once the token has less than
``REFRESH_EARLY`` seconds left, and awaited only when there is no usable token
(first request, or a token about to expire).  The token endpoint is the
credentials' own ``token_uri``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import BadRequest, LockgateError, UpstreamError

if TYPE_CHECKING:
    from ..config import Deployment

log = logging.getLogger("lockgate")
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_EARLY = 300.0  # refresh in the background when less than this is left
MUST_REFRESH = 60.0  # below this, wait for a fresh token


class _Entry:
    __slots__ = ("credentials", "lock", "project", "refreshing", "transport")

    def __init__(self, credentials: Any, project: str | None) -> None:
        self.credentials = credentials
        self.project = project
        self.lock = asyncio.Lock()
        self.refreshing: asyncio.Task[None] | None = None
        self.transport: Any = None


class GoogleAuth:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def project(self, dep: Deployment) -> str:
        project = dep.extra.get("vertex_project") or self._entry(dep).project or _env_project()
        if not project:
            raise BadRequest(f"deployment of {dep.model_name!r} has no Google Cloud project: set "
                             "litellm_params.vertex_project (or GOOGLE_CLOUD_PROJECT)")
        return str(project)

    async def token(self, dep: Deployment) -> str:
        entry = self._entry(dep)
        if entry.credentials is None:
            async with entry.lock:
                if entry.credentials is None:
                    entry.credentials, entry.project = await asyncio.to_thread(_default, dep)
        left = _seconds_left(entry.credentials)
        if left > REFRESH_EARLY:
            return entry.credentials.token
        if left > MUST_REFRESH:
            if entry.refreshing is None or entry.refreshing.done():
                entry.refreshing = asyncio.create_task(self._refresh_quietly(dep, entry))
            return entry.credentials.token
        async with entry.lock:
            if _seconds_left(entry.credentials) <= MUST_REFRESH:
                await self._refresh(dep, entry)
        return entry.credentials.token

    def _entry(self, dep: Deployment) -> _Entry:
        """Deployments with the same credentials share one entry (and one token)."""
        key = _source_key(dep)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(*_load(dep))
        return entry

    async def _refresh(self, dep: Deployment, entry: _Entry) -> None:
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import Request

        if entry.transport is None:
            entry.transport = Request()
        try:
            await asyncio.to_thread(entry.credentials.refresh, entry.transport)
        except GoogleAuthError as exc:  # the message may quote the token endpoint's answer: not passed on
            raise UpstreamError(f"could not get a Google access token for {dep.model_name!r} "
                                f"({type(exc).__name__})", status=502, code="provider_credentials") from None

    async def _refresh_quietly(self, dep: Deployment, entry: _Entry) -> None:
        async with entry.lock:
            try:
                await self._refresh(dep, entry)
            except LockgateError as err:
                log.warning("background token refresh failed: %s", err.message)


def _seconds_left(credentials: Any) -> float:
    if not credentials.token or credentials.expiry is None:
        return 0.0 if not credentials.token else float("inf")
    now = datetime.now(UTC).replace(tzinfo=None)  # google-auth keeps naive UTC
    return (credentials.expiry - now).total_seconds()


def _source(dep: Deployment) -> Any:
    return dep.extra.get("vertex_credentials") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")


def _source_key(dep: Deployment) -> str:
    source = _source(dep)
    if source is None:
        return "default"
    return orjson.dumps(source, option=orjson.OPT_SORT_KEYS).decode() if isinstance(source, dict) else str(source)


def _env_project() -> str | None:
    return os.environ.get("VERTEXAI_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")


def _load(dep: Deployment) -> tuple[Any, str | None]:
    """Credentials from vertex_credentials or GOOGLE_APPLICATION_CREDENTIALS (read once);
    (None, None) means google-auth's default chain, resolved later in a thread."""
    import google.auth
    from google.auth.exceptions import GoogleAuthError

    source = _source(dep)
    if not source:
        return None, None
    try:
        if isinstance(source, dict):
            info = source
        elif str(source).lstrip().startswith("{"):
            info = orjson.loads(str(source))
        else:
            info = orjson.loads(Path(str(source)).expanduser().read_bytes())
        credentials, project = google.auth.load_credentials_from_dict(info, scopes=[SCOPE])
    except (OSError, ValueError, GoogleAuthError) as exc:
        raise LockgateError(f"Google credentials for {dep.model_name!r} could not be loaded "
                            f"({type(exc).__name__})", code="provider_credentials") from None
    return credentials, project or info.get("project_id")


def _default(dep: Deployment) -> tuple[Any, str | None]:
    import google.auth
    from google.auth.exceptions import GoogleAuthError

    try:
        return google.auth.default(scopes=[SCOPE])
    except GoogleAuthError as exc:
        raise LockgateError(f"no Google credentials found for {dep.model_name!r}: set vertex_credentials or "
                            f"GOOGLE_APPLICATION_CREDENTIALS ({type(exc).__name__})",
                            code="provider_credentials") from None
