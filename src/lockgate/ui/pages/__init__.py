"""The UI's pages: one module per page, each defining ``PAGE`` (``ui.page.Page``).

``NAMES`` is the registry: it orders the navigation, and the first page the signed-in caller may see
is where ``/ui/`` leads.  Adding a page: write ``pages/<name>.py`` (and its templates under
``templates/pages/``), then add its name here.
"""

from __future__ import annotations

import importlib

from ..page import Page

NAMES = [
    "keys",
    "teams",
    "users",
    "organizations",
    "models",
    "overview",  # the data pages (ui/data/): overview, usage, logs, audit, guardrails & cache, playground
    "usage",
    "logs",
    "audit",
    "guardrails_cache",
    "playground",
    "account",
]


def load_pages() -> list[Page]:
    return [importlib.import_module(f"{__name__}.{name}").PAGE for name in NAMES]
