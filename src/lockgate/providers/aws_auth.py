"""AWS region, credentials and SigV4 signing for Bedrock, with botocore.

Where credentials come from, per deployment (first match):

1. ``aws_access_key_id`` + ``aws_secret_access_key`` (+ ``aws_session_token``) in litellm_params;
2. ``aws_profile_name``: that profile of the shared config/credentials files;
3. botocore's default chain: environment (``AWS_ACCESS_KEY_ID``...), the default
   profile, web identity, container and instance metadata.

Cases 2 and 3 are resolved once per deployment, in a worker thread (botocore
reads files and may call STS or the metadata service), and kept on the
``AwsAuth`` object the provider owns.  Refreshable credentials (assumed roles,
SSO, instance roles) are re-read in a thread only when botocore says they are
about to expire; signing itself is CPU only.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, LockgateError

if TYPE_CHECKING:
    from ..config import Deployment


class AwsAuth:
    """Per-deployment region and credentials, resolved once and cached."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._regions: dict[str, str] = {}
        self._credentials: dict[str, Any] = {}
        self._lock: asyncio.Lock | None = None

    def region(self, dep: Deployment) -> str:
        region = self._regions.get(dep.id)
        if region is None:
            region = self._regions[dep.id] = _find_region(dep)
        return region

    async def sign(self, dep: Deployment, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        frozen = await self._frozen(dep)
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(frozen, self.service, self.region(dep)).add_auth(request)
        return dict(request.headers.items())

    async def _frozen(self, dep: Deployment) -> Any:
        creds = self._credentials.get(dep.id)
        if creds is None:
            creds = await self._resolve(dep)
        refresh_needed = getattr(creds, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            return await asyncio.to_thread(_call, dep, creds.get_frozen_credentials)
        return creds.get_frozen_credentials()

    async def _resolve(self, dep: Deployment) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one resolution per deployment, however many requests wait
            creds = self._credentials.get(dep.id)
            if creds is None:
                creds = self._credentials[dep.id] = await asyncio.to_thread(_call, dep, lambda: _find_credentials(dep))
            return creds


def _find_region(dep: Deployment) -> str:
    region = dep.extra.get("aws_region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        region = _call(dep, lambda: _session(dep).get_config_variable("region"))
    if not region:
        raise BadRequest(f"deployment of {dep.model_name!r} has no AWS region: set litellm_params.aws_region_name "
                         "or AWS_REGION")
    return str(region)


def _session(dep: Deployment) -> Any:
    import botocore.session

    return botocore.session.Session(profile=dep.extra.get("aws_profile_name") or None)


def _find_credentials(dep: Deployment) -> Any:
    from botocore.credentials import Credentials

    key, secret = dep.extra.get("aws_access_key_id"), dep.extra.get("aws_secret_access_key")
    if key and secret:
        return Credentials(key, secret, dep.extra.get("aws_session_token") or None)
    creds = _session(dep).get_credentials()
    if creds is None:
        raise LockgateError(f"no AWS credentials found for {dep.model_name!r}: set aws_access_key_id and "
                            "aws_secret_access_key, aws_profile_name, or the AWS environment variables",
                            code="provider_credentials")
    return creds


def _call(dep: Deployment, fn: Any) -> Any:
    """Run a botocore call; its failures become a clear error naming the kind only (never values)."""
    from botocore.exceptions import BotoCoreError

    try:
        return fn()
    except BotoCoreError as exc:
        raise LockgateError(f"AWS credentials for {dep.model_name!r} could not be loaded ({type(exc).__name__})",
                            code="provider_credentials") from None
