"""UI sessions: server-side rows (``ui_sessions``, shared by every instance), the cookie, CSRF tokens,
the security headers and the sign-in rate limit.

The cookie holds a random token (256 bits); the database keeps only its sha256, so a copy of the table
opens no session.  Each session has its own CSRF token, sent back by every mutation: in the
``X-CSRF-Token`` header (htmx requests, set by ``static/ui.js`` from a ``<meta>`` tag) or in the
``csrf_token`` field of a form.  Sessions end at ``general_settings.ui_session_duration`` (12h by
default) or when their user signs out (the row is deleted: the cookie opens nothing afterwards).  A
session opened with the master key is bound to that key: its row keeps an HMAC of the key keyed by the
cookie's token (never the key; the row alone cannot test guesses of it), and once the configured master
key differs (rotated, or removed) the cookie opens nothing.

``Secure`` is added when the request came over TLS, as the ASGI server reports it (``scope["scheme"]``):
uvicorn takes ``X-Forwarded-Proto`` / ``X-Forwarded-For`` only from the addresses in
``FORWARDED_ALLOW_IPS`` (127.0.0.1 by default), so a client cannot claim TLS (or another address) itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete

from ..admin.auth import PROXY_ADMIN, Caller
from ..state import durations
from ..state.models import UISession
from . import root_path

if TYPE_CHECKING:
    from ..gateway import Gateway

COOKIE = "lockgate_session"
LOGIN_COOKIE = "lockgate_login"  # the sign-in form's CSRF token (double submit: cookie == form field)
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
)


@dataclass
class Session:
    id: str  # sha256 of the cookie's token
    user_id: str | None
    role: str
    via: str
    csrf: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _master_key_check(token: str, master_key: str) -> str:
    """What binds a master-key session to the key it was opened with (see the module's docstring)."""
    return hmac.new(token.encode(), b"lockgate-ui-master-key\0" + master_key.encode(), hashlib.sha256).hexdigest()


def _master_key_matches(gw: Gateway, token: str, check: str | None) -> bool:
    master = gw.settings.master_key
    return master is not None and check is not None \
        and hmac.compare_digest(_master_key_check(token, master).encode(), check.encode())


def cookie_path() -> str:
    return f"{root_path()}/ui"


def is_tls(scope: Mapping[str, Any]) -> bool:
    """The request came over TLS (directly, or from a trusted proxy that said so: see the docstring)."""
    return scope.get("scheme") in ("https", "wss")


def cookie(name: str, value: str, max_age: int, secure: bool) -> str:
    parts = [f"{name}={value}", f"Path={cookie_path()}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _lifetime(gw: Gateway, now: datetime) -> datetime:
    return durations.add(now, gw.settings.ui_session_duration)


async def open_session(gw: Gateway, *, user_id: str | None, role: str, via: str, secure: bool = False) -> str:
    """Create a session and return the value of its ``Set-Cookie`` header.

    ``via``: ``master_key``, ``password`` or ``sso``.  Pass ``secure=is_tls(scope)`` so the cookie gets
    ``Secure`` behind TLS."""
    assert gw.store is not None
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires = _lifetime(gw, now)
    check = None
    if via == "master_key":
        assert gw.settings.master_key is not None
        check = _master_key_check(token, gw.settings.master_key)
    async with gw.store.sessions() as s, s.begin():
        await s.execute(delete(UISession).where(UISession.expires_at < now))  # indexed: the expired few
        s.add(UISession(id=_digest(token), user_id=user_id, role=role, via=via, csrf=secrets.token_urlsafe(32),
                        master_key_check=check, created_at=now, expires_at=expires))
    return cookie(COOKIE, token, int((expires - now).total_seconds()), secure)


async def find(gw: Gateway, token: str | None) -> Session | None:
    """The live session of a cookie's token (None when unknown, revoked or expired, or opened with a master
    key that is no longer the configured one)."""
    if not token or len(token) > 128 or gw.store is None:
        return None
    async with gw.store.sessions() as s:
        row = await s.get(UISession, _digest(token))
        if row is None:
            return None
        if row.expires_at <= datetime.now(UTC):
            await s.delete(row)
            await s.commit()
            return None
        # the row stays: an instance still configured with the old key (a rolling change) may honour it
        if row.via == "master_key" and not _master_key_matches(gw, token, row.master_key_check):
            return None
        return Session(row.id, row.user_id, row.role, row.via, row.csrf, row.expires_at)


async def revoke(gw: Gateway, token: str | None) -> None:
    if not token or gw.store is None:
        return
    async with gw.store.sessions() as s, s.begin():
        await s.execute(delete(UISession).where(UISession.id == _digest(token)))


async def revoke_user(gw: Gateway, user_id: str, keep: str | None = None) -> None:
    """End every session of ``user_id`` (a new password), except the session ``keep`` (its row id)."""
    assert gw.store is not None
    async with gw.store.sessions() as s, s.begin():
        stmt = delete(UISession).where(UISession.user_id == user_id)
        if keep is not None:
            stmt = stmt.where(UISession.id != keep)
        await s.execute(stmt)


def csrf_ok(session_token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session_token.encode(), (presented or "").encode())


async def caller_of(gw: Gateway, session: Session) -> Caller | None:
    """The management API's ``Caller`` for a session, built as ``admin.auth.authenticate`` builds it for
    a user's key: the user's current role and team roles (None when the user is gone or blocked)."""
    if session.user_id is None:
        if session.via == "master_key":
            return Caller(id="master", role=PROXY_ADMIN)
        return Caller(id=session.via, role=session.role)
    assert gw.store is not None
    user = await gw.store.get("user", session.user_id)
    if user is None or user.get("blocked"):
        return None
    team_roles = await gw.store.memberships(session.user_id)
    return Caller(id=session.user_id, role=user.get("user_role"), user_id=session.user_id, team_roles=team_roles)


class LoginLimiter:
    """Failed sign-ins per client address and per user name in a sliding minute: over the limit, 429.

    With Redis configured the counts are shared by every instance (one INCR per failure); otherwise each
    process counts its own (bounded memory: old entries are dropped)."""

    WINDOW = 60.0
    PER_USER = 5
    PER_ADDRESS = 20
    MAX_TRACKED = 10_000

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.failures: dict[str, deque[float]] = {}

    def _keys(self, address: str | None, username: str | None) -> list[tuple[str, int]]:
        keys = [("ip:" + (address or "?"), self.PER_ADDRESS)]
        if username:
            keys.append(("user:" + hashlib.sha256(username.lower().encode()).hexdigest()[:32], self.PER_USER))
        return keys

    async def blocked(self, address: str | None, username: str | None) -> bool:
        for key, limit in self._keys(address, username):
            if await self._count(key) >= limit:
                return True
        return False

    async def fail(self, address: str | None, username: str | None) -> None:
        for key, _ in self._keys(address, username):
            await self._add(key)

    def _redis_keys(self, key: str) -> tuple[str, str, float]:
        """This minute's counter, the last minute's, and how much of the last one still counts: a
        sliding minute approximated from two fixed ones (a burst across a minute's end still counts
        whole; with one fixed minute it was split in two halves, each under the limit)."""
        prefix = self.gw.governance.prefix if self.gw.governance is not None else "lockgate:"
        now = time.time()
        slot = int(now // self.WINDOW)
        return (f"{prefix}ui:login:{key}:{slot}", f"{prefix}ui:login:{key}:{slot - 1}",
                1.0 - (now % self.WINDOW) / self.WINDOW)

    async def _count(self, key: str) -> int:
        if self.gw.redis is not None:
            current, previous, weight = self._redis_keys(key)
            now_count, last_count = await self.gw.redis.mget(current, previous)
            return int(now_count or 0) + round(int(last_count or 0) * weight)
        now = time.monotonic()
        stamps = self.failures.get(key)
        if not stamps:
            return 0
        while stamps and stamps[0] < now - self.WINDOW:
            stamps.popleft()
        return len(stamps)

    async def _add(self, key: str) -> None:
        if self.gw.redis is not None:
            name = self._redis_keys(key)[0]
            async with self.gw.redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, int(self.WINDOW) * 2)
                await pipe.execute()
            return
        if len(self.failures) >= self.MAX_TRACKED:
            cutoff = time.monotonic() - self.WINDOW
            for name in [k for k, v in self.failures.items() if not v or v[-1] < cutoff]:
                del self.failures[name]
            if len(self.failures) >= self.MAX_TRACKED:
                self.failures.pop(next(iter(self.failures)))
        self.failures.setdefault(key, deque()).append(time.monotonic())
