"""The key list's query: one page of keys, newest first, with the management API's visibility
(``admin.keys.list_scope``), search and filters; never more than ``MAX_PAGE_SIZE`` rows.

At 100k keys a page reads one range of ``ix_keys_created_at_token_hash`` (migration 0004) plus a count;
docs/ui.md has the measured times."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, false, func, or_, select, true

from ..admin.auth import Caller
from ..admin.keys import list_scope
from ..state.models import Key
from ..state.store import row_dict

if TYPE_CHECKING:
    from ..gateway import Gateway

MAX_PAGE_SIZE = 100
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
_HEX = re.compile(r"^[0-9a-f]{4,64}$")


@dataclass
class KeyQuery:
    search: str = ""
    team_id: str = ""
    user_id: str = ""
    status: str = ""  # "" | "blocked" | "active"
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    capped: bool = False  # the page size asked for was over MAX_PAGE_SIZE

    @classmethod
    def of(cls, params: Any) -> KeyQuery:
        def number(name: str, default: int) -> int:
            text = str(params.get(name, "") or "").strip()
            return int(text) if text.isdigit() and 0 < int(text) < 10**9 else default

        size = number("page_size", DEFAULT_PAGE_SIZE)
        status = str(params.get("status", "") or "")
        return cls(search=str(params.get("q", "") or "").strip()[:255],
                   team_id=str(params.get("team_id", "") or "").strip()[:255],
                   user_id=str(params.get("user_id", "") or "").strip()[:255],
                   status=status if status in ("blocked", "active") else "",
                   page=number("page", 1), page_size=min(size, MAX_PAGE_SIZE), capped=size > MAX_PAGE_SIZE)

    def params(self, **change: Any) -> dict[str, Any]:
        out = {"q": self.search, "team_id": self.team_id, "user_id": self.user_id, "status": self.status,
               "page": self.page, "page_size": self.page_size, **change}
        return {k: v for k, v in out.items() if v not in ("", None)}


def conditions(caller: Caller, query: KeyQuery) -> list[Any] | None:
    """The WHERE clause (None: the caller may see no key at all)."""
    out: list[Any] = []
    scope = list_scope(caller)
    if scope is not None:
        alternatives = [getattr(Key, name).in_(values) for name, values in scope.items() if values]
        if not alternatives:
            return None
        out.append(or_(*alternatives))
    if query.team_id:
        out.append(Key.team_id == query.team_id)
    if query.user_id:
        out.append(Key.user_id == query.user_id)
    if query.status == "blocked":
        out.append(Key.blocked == true())
    elif query.status == "active":
        out.append(Key.blocked == false())
    if query.search:
        alias = _prefix(Key.key_alias, query.search)
        out.append(or_(alias, _prefix(Key.token_hash, query.search)) if _HEX.match(query.search) else alias)
    return out


def _prefix(column: Any, text: str) -> Any:
    """``column`` starts with ``text`` (case-sensitive): a range of the column's index, then the exact test."""
    upper = text[:-1] + chr(ord(text[-1]) + 1)
    return and_(column >= text, column < upper, func.substr(column, 1, len(text)) == text)


async def page_of_keys(gw: Gateway, caller: Caller, query: KeyQuery) -> tuple[list[dict[str, Any]], int]:
    where = conditions(caller, query)
    if where is None:
        return [], 0
    assert gw.store is not None
    async with gw.store.sessions() as s:
        total = int(await s.scalar(select(func.count()).select_from(Key).where(*where)) or 0)
        last_page = max(1, -(-total // query.page_size))
        query.page = min(query.page, last_page)
        rows = await s.scalars(select(Key).where(*where).order_by(Key.created_at.desc(), Key.token_hash.desc())
                               .offset((query.page - 1) * query.page_size).limit(query.page_size))
        return [row_dict(r) for r in rows], total
