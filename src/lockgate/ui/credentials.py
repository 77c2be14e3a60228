"""Local users' sign-in: argon2id password hashes and the optional TOTP second factor (``ui_credentials``).

A local user is a row of ``users`` (the management API's users) plus a password here; the user name
at sign-in is the ``user_id``.  ``UI_USERNAME`` / ``UI_PASSWORD`` (LiteLLM's names) create that user as a
``proxy_admin`` (or set its password again) when the gateway starts.  Hashing runs in a worker
thread: argon2 costs ~50 ms of CPU by design and must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..admin.auth import PROXY_ADMIN
from ..errors import BadRequest
from ..state import Audit
from ..state.models import UICredential

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("lockgate.ui")

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
ISSUER = "Lockgate"
# a hash of a random password: a sign-in for an unknown user costs the same time as for a known one
_DUMMY = "$argon2id$v=19$m=65536,t=3,p=4$/xmy411fSBq0Wk8hyTnqxA$xvhdQiaBZU1CGiPIELflUtkfrZyh/L2FWzX0InqN9xs"


def check_new_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters", param="password")


def _verify(stored: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def get(gw: Gateway, user_id: str) -> UICredential | None:
    assert gw.store is not None
    async with gw.store.sessions() as s:
        return await s.get(UICredential, user_id)


async def record(gw: Gateway, user_id: str, action: str, audit: Audit | None) -> None:
    """An audit record on the user (``password_set``, ``totp_enabled``, ``totp_disabled``): who, when, from where."""
    if audit is not None and gw.store is not None:
        await gw.store.update("user", user_id, {}, audit, action=action)


async def set_password(gw: Gateway, user_id: str, password: str, audit: Audit | None = None) -> None:
    check_new_password(password)
    hashed = await asyncio.to_thread(PasswordHasher().hash, password)
    assert gw.store is not None
    async with gw.store.sessions() as s, s.begin():
        row = await s.get(UICredential, user_id)
        if row is None:
            s.add(UICredential(user_id=user_id, password_hash=hashed, totp_enabled=False))
        else:
            row.password_hash = hashed
    await record(gw, user_id, "password_set", audit)


async def check_password(gw: Gateway, user_id: str, password: str) -> UICredential | None:
    """The user's credentials when ``password`` is theirs (and the user exists and is not blocked)."""
    row = await get(gw, user_id) if len(password) <= MAX_PASSWORD else None
    stored = row.password_hash if row is not None and row.password_hash else None
    ok = await asyncio.to_thread(_verify, stored or _DUMMY, password)
    if not ok or stored is None or row is None:
        return None
    assert gw.store is not None
    user = await gw.store.get("user", user_id)
    if user is None or user.get("blocked"):
        return None
    return row


def totp_uri(secret: str, user_id: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user_id, issuer_name=ISSUER)


QR_ERROR = "m"  # error correction: ~15 % of the code may be unreadable
QR_SCALE = 4  # pixels per module
QR_BORDER = 4  # the quiet zone the standard asks for, in modules


def totp_qr(uri: str) -> str:
    """The QR code of an ``otpauth://`` URI as an SVG ``data:`` URI, made here (segno, no service, no
    script): for an ``<img>``, which the CSP allows (``img-src 'self' data:``) and which runs nothing."""
    import segno  # only when a user sets up two-factor sign-in

    return segno.make(uri, error=QR_ERROR, micro=False).svg_data_uri(
        scale=QR_SCALE, border=QR_BORDER, dark="#000")  # light: transparent, ui.css gives img.qr white


async def totp_begin(gw: Gateway, user_id: str) -> str:
    """A new (not yet enabled) TOTP secret for ``user_id``; the user confirms it with a first code."""
    secret = pyotp.random_base32()
    assert gw.store is not None
    async with gw.store.sessions() as s, s.begin():
        row = await s.get(UICredential, user_id)
        if row is None:
            s.add(UICredential(user_id=user_id, totp_secret=secret, totp_enabled=False))
        else:
            row.totp_secret, row.totp_enabled, row.totp_last = secret, False, None
    return secret


async def totp_accept(gw: Gateway, user_id: str, code: str, enable: bool = False, audit: Audit | None = None
                      ) -> bool:
    """True when ``code`` is the current code of the user's secret (±30 s) and was not used before."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return False
    assert gw.store is not None
    async with gw.store.sessions() as s, s.begin():
        row = await s.get(UICredential, user_id, with_for_update=True)
        if row is None or not row.totp_secret or (not enable and not row.totp_enabled):
            return False
        totp = pyotp.TOTP(row.totp_secret)
        now = time.time()
        for offset in (0, -30, 30):
            step = totp.timecode(datetime.fromtimestamp(now + offset, UTC))
            if totp.verify(code, for_time=now + offset, valid_window=0) and (row.totp_last or -1) < step:
                row.totp_last = step
                if enable:
                    row.totp_enabled = True
                break
        else:
            return False
    if enable:
        await record(gw, user_id, "totp_enabled", audit)
    return True


async def totp_disable(gw: Gateway, user_id: str, audit: Audit | None = None) -> None:
    assert gw.store is not None
    async with gw.store.sessions() as s, s.begin():
        row = await s.get(UICredential, user_id)
        if row is not None:
            row.totp_secret, row.totp_enabled, row.totp_last = None, False, None
    await record(gw, user_id, "totp_disabled", audit)


async def ensure_first_admin(gw: Gateway) -> None:
    """``UI_USERNAME`` / ``UI_PASSWORD``: that user exists as a ``proxy_admin`` and has that password."""
    username, password = os.environ.get("UI_USERNAME"), os.environ.get("UI_PASSWORD")
    if not username or not password:
        return
    assert gw.store is not None
    if len(password) < MIN_PASSWORD:
        log.warning("UI_PASSWORD has fewer than %d characters: the UI_USERNAME user was not set up", MIN_PASSWORD)
        return
    audit = Audit(changed_by="UI_USERNAME")
    user = await gw.store.get("user", username)
    if user is None:
        try:
            await gw.store.create("user", {"user_id": username, "user_role": PROXY_ADMIN, "models": [],
                                           "metadata": {}, "blocked": False, "spend": 0.0}, audit)
        except Exception:
            if await gw.store.get("user", username) is None:  # not another worker starting at the same moment
                raise
    elif user.get("user_role") != PROXY_ADMIN:
        await gw.store.update("user", username, {"user_role": PROXY_ADMIN}, audit)
    row = await get(gw, username)
    if row is None or not row.password_hash or not await asyncio.to_thread(_verify, row.password_hash, password):
        await set_password(gw, username, password, audit)
