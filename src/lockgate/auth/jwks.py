"""An identity provider's signing keys (a JWKS), fetched from configured URLs only and cached.

The key set is fetched on first use and again once it is ``ttl`` seconds old.  A token whose ``kid`` is
not in the set triggers one refetch (the provider rotated its keys), but unknown key ids cause at most one
every ``refetch_interval`` seconds, so tokens with made-up key ids cannot make the gateway hammer the provider.
Fetches are coalesced (one in flight).  When a refetch fails the keys already known keep serving; with
none known the caller gets ``KeysUnavailable`` (503); after a failed fetch the next attempt waits
``max(refetch_interval, 1 s)``, so an outage of the provider is not met with a fetch per request.  URLs come from the configuration only: a token's
``jku`` / ``x5u`` headers are never followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

import orjson
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from ..errors import LockgateError

log = logging.getLogger("lockgate.auth")

MAX_JWKS_BYTES = 1024 * 1024

Fetch = Callable[[str], Awaitable[bytes]]


class KeysUnavailable(LockgateError):
    """The identity provider's keys could not be fetched and none are cached."""

    status = 503
    type = "api_error"
    code = "jwks_unavailable"

    def default_kind(self) -> str:
        return "auth_unavailable"


class JWKSCache:
    def __init__(self, fetch: Fetch, urls: tuple[str, ...], ttl: float, refetch_interval: float) -> None:
        self._fetch = fetch
        self.urls = urls
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self._by_kid: dict[str, PyJWK] = {}
        self._unnamed: list[PyJWK] = []  # keys without a kid
        self.fetched_at: float | None = None  # monotonic time of the last successful fetch
        self._unknown_at = -float("inf")  # the last refetch an unknown kid caused
        self._retry_at = -float("inf")  # after a failed fetch: no new attempt before this time
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0  # successful and failed, for tests and metrics

    async def keys_for(self, kid: str | None) -> list[PyJWK]:
        """The candidate keys for a token's ``kid`` (every key when it names none); [] when unknown."""
        now = monotonic()
        if (self.fetched_at is None or now - self.fetched_at >= self.ttl) and now >= self._retry_at:
            await self._refresh(stale_ok=self.fetched_at is not None)
        elif self.fetched_at is None:  # the last fetch failed moments ago: do not ask again yet
            raise KeysUnavailable("the identity provider's signing keys (JWKS) could not be fetched; try again later")
        found = self._lookup(kid)
        if not found and kid is not None and monotonic() - self._unknown_at >= self.refetch_interval:
            self._unknown_at = monotonic()
            await self._refresh(stale_ok=True)  # rotation: a key published since the last fetch
            found = self._lookup(kid)
        return found

    def valid_until(self) -> float:
        """Monotonic time until which the current key set is trusted without a refetch."""
        return (self.fetched_at or 0.0) + self.ttl

    def _lookup(self, kid: str | None) -> list[PyJWK]:
        if kid is None:
            return [*self._unnamed, *self._by_kid.values()]
        key = self._by_kid.get(kid)
        return [key] if key is not None else []

    async def _refresh(self, stale_ok: bool) -> None:
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._fetch_all())
            self._inflight.add_done_callback(_retrieve)
        try:
            await asyncio.shield(self._inflight)  # a request that goes away does not cancel the fetch
        except KeysUnavailable:
            if not stale_ok:
                raise

    async def _fetch_all(self) -> None:
        self.fetches += 1
        try:
            results = await asyncio.gather(*(self._fetch_one(url) for url in self.urls), return_exceptions=True)
        finally:
            self._inflight = None
        by_kid: dict[str, PyJWK] = {}
        unnamed: list[PyJWK] = []
        failures = []
        for url, result in zip(self.urls, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(f"{url}: {type(result).__name__}: {result}")
                continue
            for key in result:
                kid = key.key_id
                if kid is None:
                    unnamed.append(key)
                else:
                    by_kid.setdefault(kid, key)
        if failures and len(failures) == len(self.urls):
            self._retry_at = monotonic() + max(self.refetch_interval, 1.0)
            log.warning("could not fetch the identity provider's keys (%s)%s", "; ".join(failures),
                        ": the cached keys keep serving" if self.fetched_at is not None else "")
            raise KeysUnavailable("the identity provider's signing keys (JWKS) could not be fetched; try again later")
        if failures:
            log.warning("some JWKS URLs failed (%s): using the keys of the others", "; ".join(failures))
        self._by_kid, self._unnamed = by_kid, unnamed
        self.fetched_at = monotonic()

    async def _fetch_one(self, url: str) -> list[PyJWK]:
        body = await self._fetch(url)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("the key set is larger than 1 MB")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ValueError("not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError('no "keys" array')
        keys = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use") == "enc" or entry.get("kty") == "oct":
                continue  # encryption keys and shared secrets never verify a token here
            try:
                keys.append(PyJWK(entry))
            except PyJWKError as exc:  # an algorithm or curve this gateway does not support: skipped
                log.info("skipping JWKS key %s: %s", entry.get("kid"), exc)
        return keys


def parse_json(body: bytes, what: str) -> dict[str, Any]:
    """A JSON object from the identity provider, or ValueError naming ``what``."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise ValueError(f"{what} is not a JSON object")
    return document


def _retrieve(task: asyncio.Task[None]) -> None:
    """A fetch whose waiters all went away: its exception is retrieved here (no asyncio warning)."""
    if not task.cancelled():
        task.exception()
