"""Opaque keyset cursors: the sort key of the last row of a page, as URL-safe text (never an OFFSET)."""

from __future__ import annotations

import base64
from datetime import datetime

import orjson

from ...errors import BadRequest


def encode(moment: datetime, ident: str) -> str:
    raw = orjson.dumps([moment.replace(tzinfo=None).isoformat(), ident])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str) -> tuple[datetime, str]:
    """The (naive UTC time, id) a cursor holds; a 400 for anything else."""
    try:
        moment, ident = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(ident, str):
            raise TypeError(ident)
        return datetime.fromisoformat(moment), ident
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("invalid cursor (use the one the previous page returned)", param="cursor") from None
