"""The admin web UI at ``/ui`` (docs/ui.md): server-rendered pages over the management API's own functions.

``app.py`` sends the paths ``handles`` accepts to the app ``load(gateway)`` builds on the first UI
request (Starlette, Jinja2, the management API's modules: imported in a worker thread, like the
management API itself), so a gateway whose UI is enabled but unused does no extra work: the model
routes are matched before the UI's one prefix test.  ``general_settings.ui: false`` turns it off.

Under a path prefix (``SERVER_ROOT_PATH``, LiteLLM's name) the UI answers at ``{root}/ui`` as well as
at ``/ui`` (a proxy that strips the prefix), and every link it renders starts with ``{root}/ui``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

PREFIX = "/ui"


def root_path() -> str:
    """``SERVER_ROOT_PATH`` without its trailing slash ("" when unset)."""
    root = os.environ.get("SERVER_ROOT_PATH", "").strip().rstrip("/")
    return root if not root or root.startswith("/") else "/" + root


def handles(path: str) -> bool:
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return True
    root = root_path()
    if not root or not path.startswith(root):
        return False
    rest = path[len(root):]
    return rest == PREFIX or rest.startswith(PREFIX + "/")


async def first_admin(gateway: Any) -> None:
    """At start-up, with ``UI_USERNAME`` / ``UI_PASSWORD`` set: that user is a ``proxy_admin`` with that
    password (``credentials.ensure_first_admin``; its imports run in a worker thread)."""
    import importlib

    module = await asyncio.to_thread(importlib.import_module, "lockgate.ui.credentials")
    await module.ensure_first_admin(gateway)


async def load(gateway: Any) -> Any:
    """Import the UI off the event loop, then build it."""
    import importlib

    module = await asyncio.to_thread(importlib.import_module, "lockgate.ui.app")
    return await module.build(gateway)
