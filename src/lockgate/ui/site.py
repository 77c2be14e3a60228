"""Templates and static files: one Jinja2 environment over ``templates/`` and the files of ``static/``
(kept in memory, served with a content hash in their URL and a year-long immutable cache)."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from .page import segment

if TYPE_CHECKING:
    from .page import Page

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain; charset=utf-8",
                ".ico": "image/x-icon", ".woff2": "font/woff2"}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    version: str  # the first 12 hex digits of its sha256


def load_static(directory: Path = STATIC) -> dict[str, StaticFile]:
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            body = path.read_bytes()
            kind = STATIC_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            out[path.relative_to(directory).as_posix()] = StaticFile(body, kind, hashlib.sha256(body).hexdigest()[:12])
    return out


class Site:
    """What every page shares: the root path, the pages (navigation), templates and static files."""

    def __init__(self, root: str, pages: list[Page], sso: bool) -> None:
        self.root = root
        self.pages = pages
        self.sso = sso
        self.static = load_static()
        self.env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(url=self.url, static=self.static_url, site=self)
        self.env.filters["segment"] = segment  # an id in a URL path: {{ url('/teams/id/' ~ id|segment) }}

    def url(self, path: str = "") -> str:
        return f"{self.root}/ui{path}"

    def static_url(self, name: str) -> str:
        return f"{self.root}/ui/static/{name}?v={self.static[name].version}"

    def nav(self, caller: Any) -> list[Page]:
        return [p for p in self.pages if p.in_nav and caller is not None and p.visible(caller)]

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("caller", None)
        context.setdefault("session", None)
        context.setdefault("page", None)
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
